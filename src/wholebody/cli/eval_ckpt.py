"""``wholebody-eval-ckpt``: evaluate a checkpoint (Hydra entry point, config ``eval.yaml``).

    wholebody-eval-ckpt ckpt=outputs/zoomnet/latest/checkpoints/last.ckpt data.root=/data/coco
    wholebody-eval-ckpt ckpt=... data.root=... data.val_boxes=dets.json flip_test=false
    wholebody-eval-ckpt ckpt=... data.root=... oracle_boxes=true   (ground-truth persons and part boxes; not with val_boxes)
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from wholebody.cli.train import CONFIG_PATH


@hydra.main(config_path=CONFIG_PATH, config_name="eval", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    from wholebody.cli.errors import run_or_exit
    from wholebody.training.evaluate import evaluate
    from wholebody.training.signals import Stopped

    try:
        metrics = run_or_exit(evaluate, cfg)
    except Stopped as e:  # SIGTERM/SIGINT: one line, status 143/130, never 0
        if e.message:
            print(e.message, file=sys.stderr, flush=True)
        raise SystemExit(e.code) from None
    return metrics.get(cfg.optimized_metric)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
