"""Callbacks that wire the evaluator and the prediction panel into Lightning, and keep
``last.ckpt`` current.

The evaluator itself (``wholebody.evaluation``) knows nothing of Lightning; these classes only
collect results rows per batch, gather them across ranks, evaluate on rank 0, log and write files.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_only

from wholebody.evaluation import WholeBodyEvaluator
from wholebody.evaluation.distributed import gather_results
from wholebody.evaluation.metric_names import metric_name
from wholebody.io_utils import link_atomic, write_json_atomic
from wholebody.keypoints import BOX_PARTS, EVAL_PARTS
from wholebody.viz import draw_results, image_grid

#: The stats logged to the loggers per part (all ten go to the stats JSON and the final report's table).
LOGGED_STATS = ("AP", "AP50", "AP75", "AR")
#: The part-box stats logged per box part (``{stage}/boxes/{face,lefthand,righthand}/AP``; paper Table 8).
LOGGED_BOX_STATS = ("AP",)
#: ``{stage}/heads/{AP,AR}``: the mean over the parts the zoomed-in heads predict (what the heads'
#: pre-training stage monitors: its BodyNet is not trained, so the whole-body numbers say little).
HEAD_PARTS = BOX_PARTS


class EvaluationCallback(Callback):
    """Evaluate validation/test predictions with the COCO-WholeBody protocol.

    Collects the ``rows`` each validation/test step returns, gathers them from every rank (dropping
    the duplicates a padded distributed sampler produces), runs :class:`WholeBodyEvaluator` on rank 0
    against the datamodule's ground truth (its ``val_ann_file``, or ``test_ann_file`` when testing),
    logs ``{stage}/{part}/{AP,AP50,AP75,AR}``, ``{stage}/heads/{AP,AR}`` and, when the rows carry part
    boxes, ``{stage}/boxes/{face,lefthand,righthand}/AP`` on every rank, and writes
    ``{output_dir}/{stage}_epoch{E:03d}_results.json`` (compact JSON, once per validation) and
    ``..._stats.json`` atomically, plus ``{stage}_latest_*.json`` links to them.

    Args:
        output_dir: folder for the results and stats files.
        ann_file: ground-truth annotation file; default: the datamodule's (see above).
        save_results: also write the results rows (they can be large on the full val set).
        nms_thr: OKS-NMS of detected persons' rows per image before the evaluation (mmpose's 0.9; None
            or 0: none); rows of ground-truth persons (``ann_id``) are never suppressed
            (:class:`~wholebody.evaluation.WholeBodyEvaluator`).
    """

    def __init__(self, output_dir: str | Path, ann_file: str | Path | None = None, save_results: bool = True,
                 nms_thr: float | None = None) -> None:
        if nms_thr is not None and (isinstance(nms_thr, bool) or not isinstance(nms_thr, (int, float))
                                    or not 0 <= nms_thr <= 1):  # checked here, not at the first validation
            raise ValueError(f"nms_thr must be a number in [0, 1] or None (no NMS), got {nms_thr!r}")
        self.output_dir = Path(output_dir)
        self.nms_thr = nms_thr
        self.ann_file = Path(ann_file) if ann_file else None
        self.save_results = save_results
        self.rows: list[dict[str, Any]] = []
        self.last_rows: list[dict[str, Any]] = []
        self.last_stats: dict[str, dict[str, float]] | None = None
        self._evaluators: dict[Path, WholeBodyEvaluator] = {}
        #: rank 0: the evaluator holding the last evaluation's rows (for :class:`EvaluationReport`)
        self.last_evaluator: WholeBodyEvaluator | None = None

    def _gt_file(self, trainer: L.Trainer, stage: str) -> Path:
        if self.ann_file is not None:
            return self.ann_file
        dm = trainer.datamodule
        path = getattr(dm, f"{stage}_ann_file", None) or getattr(dm, "val_ann_file", None)
        if path is None:
            raise RuntimeError("EvaluationCallback needs ann_file= or a datamodule with a val_ann_file attribute")
        return Path(path)

    def _evaluator_for(self, trainer: L.Trainer, stage: str) -> WholeBodyEvaluator:
        path = self._gt_file(trainer, stage)
        if path not in self._evaluators:
            # the datamodule's columns of the file when it loaded it (mapped from its cache): no second read
            loaded = getattr(trainer.datamodule, "loaded_columns", None)
            columns = loaded(path) if callable(loaded) else None
            gt = columns if columns is not None else path
            self._evaluators[path] = WholeBodyEvaluator(gt, nms_thr=self.nms_thr)
        return self._evaluators[path]

    # ------------------------------------------------------------------ collection
    def _start(self) -> None:
        self.rows = []

    def _collect(self, outputs: Any) -> None:
        if isinstance(outputs, dict) and "rows" in outputs:
            self.rows.extend(outputs["rows"])

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start()

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(outputs)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(outputs)

    # ------------------------------------------------------------------ evaluation
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self._finish(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._finish(trainer, pl_module, "test")

    def _finish(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        rows = gather_results(self.rows)  # rank 0: every rank's rows, de-duplicated and sorted; others: []
        stats = boxes = None
        if trainer.is_global_zero:
            evaluator = self._evaluator_for(trainer, stage)
            evaluator.reset()
            evaluator.process(rows)
            stats = evaluator.evaluate()
            boxes = evaluator.evaluate_boxes()
            if self.nms_thr:  # the results file holds the rows the stats describe (after OKS-NMS)
                rows = [rows[i] for i in evaluator.kept_index]
            self._write(stage, trainer.current_epoch, rows, stats)
            self.last_rows = rows
            self.last_evaluator = evaluator
        stats, boxes = trainer.strategy.broadcast((stats, boxes), src=0)
        self.last_stats = stats
        metrics = {metric_name(part, k, stage): float(stats[part][k]) for part in EVAL_PARTS for k in LOGGED_STATS}
        for k in ("AP", "AR"):
            metrics[metric_name("heads", k, stage)] = sum(float(stats[p][k]) for p in HEAD_PARTS) / len(HEAD_PARTS)
        for part, st in boxes.items():
            metrics |= {metric_name(part, k, f"{stage}/boxes"): float(st[k]) for k in LOGGED_BOX_STATS}
        for name, value in metrics.items():
            pl_module.log(name, value, sync_dist=False, rank_zero_only=False)
        self.rows = []

    @rank_zero_only
    def _write(self, stage: str, epoch: int, rows: list[dict[str, Any]], stats: dict[str, Any]) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        tag = f"{stage}_epoch{epoch:03d}"
        files = {"stats": write_json_atomic(self.output_dir / f"{tag}_stats.json", stats)}
        if self.save_results:  # the large one: compact, written once
            files["results"] = write_json_atomic(self.output_dir / f"{tag}_results.json", rows, indent=False)
        for kind, path in files.items():
            link_atomic(path, self.output_dir / f"{stage}_latest_{kind}.json")


def evaluation_callback(trainer: L.Trainer) -> EvaluationCallback | None:
    """The trainer's :class:`EvaluationCallback` (None without one)."""
    return next((c for c in trainer.callbacks if isinstance(c, EvaluationCallback)), None)


class LastCheckpoint(Callback):
    """``{dirpath}/last.ckpt``: the resume point, rewritten after every training epoch and, with
    ``every_n_train_steps``, every N optimizer steps as well, whatever the validation cadence.

    (Lightning's ``ModelCheckpoint(save_last=True)`` writes ``last.ckpt`` only when it saves a
    monitored checkpoint, i.e. after a validation: with validation every 10 epochs a crash could lose
    9 epochs. The best-by-metric checkpoint stays ``ModelCheckpoint``'s job.)

    A SIGTERM (or a first SIGINT, see :class:`wholebody.training.signals.SignalStop`) during fitting stops
    Lightning's loops at the next batch boundary with a ``SIGTERMException``; ``last.ckpt`` is then
    written once more, there, and ``stopped_at`` holds its (epoch, global step). Other exceptions save
    nothing (a NaN loss must not replace the resume point).
    """

    def __init__(self, dirpath: str | Path, every_n_train_steps: int | None = None, filename: str = "last.ckpt") -> None:
        if every_n_train_steps is not None and every_n_train_steps < 1:
            raise ValueError(f"every_n_train_steps must be >= 1 or null, got {every_n_train_steps}")
        self.path = Path(dirpath) / filename
        self.every_n_train_steps = every_n_train_steps
        self._saved_step = -1
        #: (epoch, global step) of the save made when a signal stopped fitting; None before one
        self.stopped_at: tuple[int, int] | None = None

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        from lightning.pytorch.trainer.states import TrainerFn
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        # fitting only: in a validation after fit the trainer holds the best checkpoint and no optimizer
        if isinstance(exception, SIGTERMException) and trainer.state.fn == TrainerFn.FITTING and not trainer.fast_dev_run:
            self._save(trainer)
            self.stopped_at = (trainer.current_epoch, trainer.global_step)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        n = self.every_n_train_steps
        step = trainer.global_step
        if n and step % n == 0 and step != self._saved_step:
            self._save(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save(trainer)  # also after a step save at the same step: the epoch's end is now recorded

    def _save(self, trainer: L.Trainer) -> None:
        if trainer.fast_dev_run:
            return
        trainer.save_checkpoint(self.path, weights_only=False)  # the full state, to resume; every rank calls it, rank 0 writes
        self._saved_step = trainer.global_step


class PredictionPanel(Callback):
    """Every ``every_n_epochs`` training epochs (at the first validation that far past the last
    panel; the first validation always draws), draw the predictions on a few validation images.

    The panel (skeletons, face/hand boxes) goes to every logger that can show images (wandb) and
    to ``{run_dir}/eval/panel_epoch{E:03d}.png``. Needs an :class:`EvaluationCallback` (it reads
    the rows that callback gathered) and a datamodule with ``image_path(image_id)``.
    """

    def __init__(self, every_n_epochs: int = 10, num_images: int = 8, score_thr: float = 0.3, output_dir: str | None = None) -> None:
        if every_n_epochs < 1 or num_images < 1:
            raise ValueError("every_n_epochs and num_images must be >= 1")
        if isinstance(score_thr, bool) or not isinstance(score_thr, (int, float)) or not 0 <= score_thr <= 1:
            raise ValueError(f"score_thr must be a number in [0, 1], got {score_thr!r}")
        self.every_n_epochs = every_n_epochs
        self.num_images = num_images
        self.score_thr = score_thr
        self.output_dir = Path(output_dir) if output_dir else None
        self._last_epoch: int | None = None

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        epoch = trainer.current_epoch
        if self._last_epoch is not None and epoch - self._last_epoch < self.every_n_epochs:
            return
        self._last_epoch = epoch
        evaluation = evaluation_callback(trainer)
        if evaluation is None or not evaluation.last_rows:
            return
        panel = self.render(evaluation.last_rows, trainer.datamodule.image_path)
        if panel is None:
            return
        out_dir = self.output_dir or evaluation.output_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"panel_epoch{trainer.current_epoch:03d}.png"
        import cv2

        tmp = path.with_suffix(".tmp.png")
        cv2.imwrite(str(tmp), cv2.cvtColor(panel, cv2.COLOR_RGB2BGR))
        tmp.replace(path)
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image(key="val/predictions", images=[panel], step=trainer.global_step)

    def render(self, rows: list[dict[str, Any]], image_path) -> np.ndarray | None:
        """Draw the rows of the first ``num_images`` images (by image id) into one grid image."""
        tiles = [img for _, img in draw_results(rows, image_path, self.num_images, self.score_thr)]
        return image_grid(tiles, columns=4) if tiles else None



class EvaluationReport(Callback):
    """The full report of the job's final evaluation: after a validation outside fitting (``train``'s
    validation of the best checkpoint with ``test_after_fit=true``, the default, and every
    ``wholebody-eval-ckpt``) and after a test, on rank 0.

    Writes ``{output_dir}/details.json`` (stats, part-box AP, AP by size, keypoint error breakdown) and
    its charts (``pr_curves.png``, ``error_breakdown.png``, ``error_pr_curves.png``, ``ap_by_size.png``,
    ``box_pr_curves.png``; see :mod:`wholebody.evaluation.report`), and gives each logger what it can
    show: the six-part stats and the part-box stats as tables (``{stage}/final/stats``,
    ``{stage}/final/part_boxes``; wandb Tables) and the charts as images (``{stage}/final/<chart>``).
    Needs an :class:`EvaluationCallback`.

    Args:
        output_dir: folder for the report's files.
        analyze: also AP by size and the error breakdown.
        plots: draw the charts (matplotlib; about 2 s on a CPU core whatever the data size).
    """

    def __init__(self, output_dir: str | Path, analyze: bool = True, plots: bool = True) -> None:
        self.output_dir = Path(output_dir)
        self.analyze = analyze
        self.plots = plots
        self.last_files: list[Path] = []

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from lightning.pytorch.trainer.states import TrainerFn

        if trainer.sanity_checking or trainer.state.fn == TrainerFn.FITTING:
            return
        self._report(trainer, "val")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._report(trainer, "test")

    def _report(self, trainer: L.Trainer, stage: str) -> None:
        from wholebody.evaluation import BOX_STAT_NAMES, STAT_NAMES
        from wholebody.evaluation.report import build_report

        evaluation = evaluation_callback(trainer)
        if not trainer.is_global_zero or evaluation is None or evaluation.last_evaluator is None:
            return
        ev = evaluation.last_evaluator
        report = build_report(ev.gt, ev.detections, ev.parts, analyze=self.analyze, spec=ev.spec)
        write_json_atomic(self.output_dir / "details.json", report.details())
        charts = report.write_plots(self.output_dir) if self.plots else []
        self.last_files = [self.output_dir / "details.json", *charts]
        tables = {"stats": (["part", *STAT_NAMES], [[p, *(float(st[k]) for k in STAT_NAMES)] for p, st in report.stats.items()])}
        if report.boxes:
            tables["part_boxes"] = (["box", *BOX_STAT_NAMES],
                                    [[p, *(float(st[k]) for k in BOX_STAT_NAMES)] for p, st in report.boxes.items()])
        for logger in trainer.loggers:
            if hasattr(logger, "log_table"):
                for name, (columns, data) in tables.items():
                    logger.log_table(key=f"{stage}/final/{name}", columns=columns, data=data)
            if hasattr(logger, "log_image"):
                for path in self.last_files[1:]:
                    logger.log_image(key=f"{stage}/final/{path.stem}", images=[str(path)])


class Throughput(Callback):
    """``train/img_per_s`` (all ranks together) every ``every_n_steps`` optimizer steps (default: the
    trainer's ``log_every_n_steps``), and on a GPU ``train/gpu_mem_gb``: the peak memory allocated by
    this rank since the previous figure. Timed on the host clock between two such steps, within an
    epoch (validation and epoch ends are not counted); nothing waits for the device, so there is no
    host sync in a step. Logged by rank 0 straight to the loggers, at the trainer's global step.
    """

    def __init__(self, every_n_steps: int | None = None) -> None:
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1 or null, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self._t0: float | None = None
        self._images = 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0, self._images = time.perf_counter(), 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        images = batch.get("image") if isinstance(batch, dict) else None
        self._images += int(images.shape[0]) if images is not None else 0
        n = self.every_n_steps or trainer.log_every_n_steps
        if self._t0 is None or trainer.global_step % n or not self._images:
            return
        now = time.perf_counter()
        metrics = {"train/img_per_s": self._images * trainer.world_size / max(now - self._t0, 1e-9)}
        device = pl_module.device
        if device.type == "cuda":
            metrics["train/gpu_mem_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
            torch.cuda.reset_peak_memory_stats(device)
        self._t0, self._images = now, 0
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step)
