"""``evaluate(cfg)``: the evaluation of a checkpoint as a plain function of a composed ``eval.yaml``
config (``wholebody-eval-ckpt`` is its thin ``@hydra.main`` wrapper).

The network is rebuilt from the model config stored in the checkpoint (``model_from_checkpoint``),
through the allow-list of :mod:`wholebody.models.allowlist`: only ``net``, ``loss`` and the crop
settings come from the file, the optimiser and scheduler stay the command's. The weights are read
once (``weights_only=True``) and loaded strictly into the network; then one validation pass with
the official protocol writes ``stats.json`` and ``results.json``, and ``evaluation.json``: the same
stats with how they were obtained (the persons: detections file or ground-truth boxes, the score
mode, the OKS-NMS threshold and how many rows it removed).

With detected persons (``data.val_boxes``) and ``also_gt_boxes=true`` a second pass evaluates the
same network on the ground-truth boxes (the oracle person boxes) into ``gt_boxes/`` (``stats.json``,
``results.json``, ``eval/``, ``report/``) and ``evaluation.json`` holds both.
"""

from __future__ import annotations

import copy
import logging
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig, open_dict

from wholebody.evaluation import STAT_NAMES
from wholebody.evaluation.metric_names import metric_dict
from wholebody.io_utils import write_json_atomic
from wholebody.training.callbacks import evaluation_callback
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
from wholebody.training.signals import SignalStop, Stopped, raise_if_signalled

if TYPE_CHECKING:
    from wholebody.inference.checkpoint import CheckpointInfo

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Evaluate the checkpoint ``cfg.ckpt_path`` (a file, or ``last`` of this run folder) on the
    configured validation data; returns the metrics (``cfg.optimized_metric`` among them).

    Writes ``stats.json``, ``results.json`` and ``evaluation.json`` into the run folder, or, when the
    run folder is the checkpoint's own training folder, into ``eval/<checkpoint stem>/`` there (the
    training's final files are kept); with ``also_gt_boxes`` the ground-truth-box pass below
    ``gt_boxes/`` (its metrics returned as ``gt_boxes/<part>/<stat>``).
    """
    with SignalStop() as stop:  # SIGTERM or Ctrl-C: one line and status 143/130 (Lightning's stop is status 0)
        try:
            return _evaluate(cfg)
        except SystemExit as e:
            signum = stop.stop_signal(e)
            if signum is None:
                raise
            raise Stopped(signum, f"stopped by {signal.Signals(signum).name} during the evaluation of {cfg.get('ckpt_path')}: "
                                  "its files are written whole or not at all; run the command again") from None


def _evaluate(cfg: DictConfig) -> dict[str, float]:
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
        raise_if_signalled(trainer)  # flagged after the loop's last check (the evaluation at its end)
        metrics = finish(cfg, trainer, {}, out_dir, "eval", time.perf_counter() - t0)
        record = {"checkpoint": str(ckpt_path), **_protocol(cfg, trainer, module)}
        if cfg.get("also_gt_boxes") and cfg.data.get("val_boxes"):
            oracle, stats = _evaluate_on_gt_boxes(cfg, tensors, ckpt_path, out_dir / "gt_boxes")
            record["gt_boxes"] = oracle
            metrics |= metric_dict(stats, "gt_boxes", STAT_NAMES)
        if trainer.is_global_zero:
            write_json_atomic(out_dir / "evaluation.json", record)
        return metrics


def _protocol(cfg: DictConfig, trainer, module) -> dict:
    """How the last validation of ``trainer`` was evaluated, and its stats (rank 0; else empty)."""
    evaluation = evaluation_callback(trainer)
    ev = evaluation.last_evaluator if evaluation is not None else None
    if ev is None:
        return {}
    boxes = cfg.data.get("val_boxes")
    return {
        "persons": f"detections: {boxes}" if boxes else "ground-truth boxes",
        "score_mode": module.score_mode,
        "nms_thr": ev.nms_thr,
        "rows": len(ev),
        "rows_removed_by_nms": ev.suppressed,
        "stats": evaluation.last_stats,
    }


def _evaluate_on_gt_boxes(cfg: DictConfig, tensors, ckpt_path: str, folder: Path) -> tuple[dict, dict]:
    """The same network on the ground-truth person boxes (the oracle), without loggers, into ``folder``:
    how it was evaluated (see :func:`_protocol`; rank 0, else empty) and its stats (every rank)."""
    from wholebody.inference.checkpoint import load_weights_strict

    gcfg = copy.deepcopy(cfg)
    with open_dict(gcfg):
        gcfg.data.val_boxes = None
        gcfg.logger = None
    _write_below(gcfg, folder, evaluation_subfolder="eval")
    datamodule, module, trainer = build(gcfg)
    load_weights_strict(module.net, tensors, ckpt_path)
    t0 = time.perf_counter()
    trainer.validate(module, datamodule=datamodule, verbose=False)
    finish(gcfg, trainer, {}, folder, "eval on ground-truth boxes: the oracle", time.perf_counter() - t0)
    return _protocol(gcfg, trainer, module), evaluation_callback(trainer).last_stats


def _write_below(cfg: DictConfig, folder: Path, evaluation_subfolder: str | None = None) -> None:
    """Point the loggers' folders and the evaluation callback's output at ``folder`` (or at its
    ``evaluation_subfolder``), the report at ``folder/report`` (so an evaluation in a training folder
    never replaces the training's metrics logs)."""
    with open_dict(cfg):
        for node in (cfg.get("logger") or {}).values():
            if node is not None and "save_dir" in node:
                node.save_dir = str(folder)
        evaluation = (cfg.get("callbacks") or {}).get("evaluation")
        if evaluation is not None and "output_dir" in evaluation:
            evaluation.output_dir = str(folder / evaluation_subfolder if evaluation_subfolder else folder)
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
