"""``wholebody-train``: Hydra entry point around :func:`wholebody.training.run.train`.

    wholebody-train                                   # zoomnet_tiny on the synthetic set (CPU)
    wholebody-train +experiment=zoomnet data.root=/data/coco trainer=ddp trainer.devices=8
    wholebody-train -m model.optimizer.lr=1e-3,5e-4 seed=1,2   # outputs/multirun/<name>/<timestamp>/<job>
    wholebody-train +hparams_search=zoomnet_tiny_optuna       # an Optuna search (wholebody[search])
    wholebody-train ckpt_path=last                    # resume the newest run (or, with -m, sweep) of this name
    wholebody-train +experiment=zoomnet_staged data.root=/data/coco   # the paper's three stages in one job

Evaluating a checkpoint is ``wholebody-eval-ckpt`` (:func:`wholebody.training.evaluate.evaluate`).
"""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

import wholebody.conf  # noqa: F401  (registers the configs' resolvers, also in a remote launcher's job process)

CONFIG_PATH = "pkg://wholebody.conf"


@hydra.main(config_path=CONFIG_PATH, config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    from wholebody.cli.errors import run_or_exit
    from wholebody.training.run import train
    from wholebody.training.signals import Stopped
    from wholebody.training.staged import train_staged

    try:
        metrics = run_or_exit(train_staged if cfg.get("staged") else train, cfg)
    except Stopped as e:  # SIGTERM/SIGINT: one line (what was saved, how to resume), status 143/130, never 0;
        if e.message:    # in a sweep it ends the sweep: the remaining jobs do not run
            print(e.message, file=sys.stderr, flush=True)
        raise SystemExit(e.code) from None
    return metrics.get(cfg.optimized_metric)  # the sweeper's objective


if __name__ == "__main__":  # pragma: no cover
    logging.captureWarnings(True)
    sys.exit(main())
