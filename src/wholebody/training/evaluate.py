"""``evaluate(cfg)``: the evaluation of a checkpoint as a plain function of a composed ``eval.yaml``
config (``wholebody-eval-ckpt`` is its thin ``@hydra.main`` wrapper).

The network is rebuilt from the model config stored in the checkpoint (``model_from_checkpoint``),
through the allow-list of :mod:`wholebody.models.allowlist`: only ``net``, ``loss`` and the crop
settings come from the file, the optimiser and scheduler stay the command's. The weights are read
once (``weights_only=True``) and loaded strictly into the network; then one validation pass with
the official protocol writes ``stats.json`` and ``results.json``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig, open_dict

from wholebody.training.run import (
    ConfigError,
    build,
    checkpoint_dir,
    finish,
    prepare,
    resolve_ckpt_path,
    run_folder,
    save_run_config,
)

if TYPE_CHECKING:
    from wholebody.inference.checkpoint import CheckpointInfo

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Evaluate the checkpoint ``cfg.ckpt_path`` (a file, or ``last`` of this run folder) on the
    configured validation data; returns the metrics (``cfg.optimized_metric`` among them).

    Writes ``stats.json`` and ``results.json`` into the run folder, or, when the run folder is the
    checkpoint's own training folder, into ``eval/<checkpoint stem>/`` there (the training's final
    files are kept).
    """
    from wholebody.inference.checkpoint import load_weights_strict, read_checkpoint

    if not cfg.get("ckpt_path"):
        raise ConfigError("evaluation needs ckpt=<file.ckpt> (or ckpt=last in a training folder)")
    with run_folder(cfg) as run_dir:
        ckpt_path = resolve_ckpt_path(cfg)
        tensors, info = read_checkpoint(ckpt_path)
        if cfg.get("model_from_checkpoint", True):
            use_checkpoint_model(cfg, info)
        out_dir = run_dir
        if checkpoint_dir(cfg).is_dir():  # the training's folder: everything this run writes goes below eval/
            out_dir = run_dir / "eval" / Path(ckpt_path).stem
            log.info("evaluating in a training folder: stats, results and logs go to %s", out_dir)
            _write_below(cfg, out_dir)
        prepare(cfg)
        save_run_config(cfg, out_dir)
        datamodule, module, trainer = build(cfg)
        load_weights_strict(module.net, tensors, ckpt_path)
        t0 = time.perf_counter()
        trainer.validate(module, datamodule=datamodule, verbose=False)
        return finish(cfg, trainer, {}, out_dir, "eval", time.perf_counter() - t0)


def _write_below(cfg: DictConfig, folder: Path) -> None:
    """Point the loggers' folders and the evaluation callback's output at ``folder`` (so an evaluation
    in a training folder never replaces the training's metrics logs)."""
    with open_dict(cfg):
        for node in (cfg.get("logger") or {}).values():
            if node is not None and "save_dir" in node:
                node.save_dir = str(folder)
        evaluation = (cfg.get("callbacks") or {}).get("evaluation")
        if evaluation is not None and "output_dir" in evaluation:
            evaluation.output_dir = str(folder)
        report = (cfg.get("callbacks") or {}).get("report")
        if report is not None and "output_dir" in report:
            report.output_dir = str(folder / "report")


def use_checkpoint_model(cfg: DictConfig, info: CheckpointInfo) -> None:
    """Take the network, loss and crop settings of ``cfg.model`` from a checkpoint's checked model
    config (:class:`~wholebody.inference.checkpoint.CheckpointInfo`; ``flip_test``/``refine`` keep the
    values given on the command line when not null). Only those nodes replace the command's own."""
    from wholebody.inference.checkpoint import CheckpointError

    if "loss" not in info.model_config:
        raise CheckpointError(f"{info.path}: its model config has no loss node (model_config.loss)")
    with open_dict(cfg):
        for key, value in info.model_config.items():
            cfg.model[key] = value
        for key in ("flip_test", "refine"):
            if cfg.get(key) is not None:
                cfg.model[key] = cfg[key]
