"""The final evaluation's report as the loggers receive it (tables, charts, details.json), checked on a
simulated evaluation whose stats are far from zero, and the throughput figure."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from lightning.pytorch.trainer.states import TrainerFn

from wholebody.cocowb import read_json
from wholebody.evaluation import BOX_STAT_NAMES, STAT_NAMES, WholeBodyEvaluator
from wholebody.evaluation.simulate import simulate
from wholebody.training.callbacks import EvaluationCallback, EvaluationReport, Throughput


class RecordingLogger:
    def __init__(self) -> None:
        self.tables: dict[str, tuple[list, list]] = {}
        self.images: dict[str, list] = {}
        self.metrics: list[tuple[int, dict]] = []

    def log_table(self, key, columns, data):
        self.tables[key] = (columns, data)

    def log_image(self, key, images):
        self.images[key] = images

    def log_metrics(self, metrics, step):
        self.metrics.append((step, dict(metrics)))


@pytest.fixture(scope="module")
def evaluator() -> WholeBodyEvaluator:
    gt, rows = simulate(80, 5)
    ev = WholeBodyEvaluator(gt)
    ev.process(rows)
    return ev


def _trainer(evaluator, tmp_path, fn=TrainerFn.VALIDATING):
    evaluation = EvaluationCallback(tmp_path / "eval")
    evaluation.last_evaluator = evaluator
    report = EvaluationReport(tmp_path / "report")
    logger = RecordingLogger()
    trainer = SimpleNamespace(callbacks=[evaluation, report], loggers=[logger], is_global_zero=True,
                              sanity_checking=False, state=SimpleNamespace(fn=fn))
    return trainer, report, logger


def test_the_final_report_gives_the_loggers_the_stats_box_tables_and_charts(evaluator, tmp_path):
    trainer, report, logger = _trainer(evaluator, tmp_path)
    report.on_validation_end(trainer, None)
    stats, boxes = evaluator.evaluate(), evaluator.evaluate_boxes()
    assert 0.05 < stats["wholebody"]["AP"] < 1 and stats["body"]["AP"] > 0.1 and set(boxes) == {"face", "lefthand", "righthand"}
    columns, data = logger.tables["val/final/stats"]
    assert columns == ["part", *STAT_NAMES]
    assert {row[0]: dict(zip(columns[1:], row[1:])) for row in data} == stats
    columns, data = logger.tables["val/final/part_boxes"]
    assert columns == ["box", *BOX_STAT_NAMES]
    assert {row[0]: dict(zip(columns[1:], row[1:])) for row in data} == boxes
    charts = {"pr_curves", "error_breakdown", "error_pr_curves", "ap_by_size", "box_pr_curves"}
    assert set(logger.images) == {f"val/final/{c}" for c in charts}
    for chart in charts:
        (path,) = logger.images[f"val/final/{chart}"]
        assert Path(path) == tmp_path / "report" / f"{chart}.png" and Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    details = read_json(tmp_path / "report" / "details.json")
    assert details["keypoints"] == stats and details["boxes"] == boxes
    assert set(details["diagnosis"]) == set(stats) and set(details["sizes"]) == set(stats)


def test_no_report_during_fitting_and_none_off_rank_zero(evaluator, tmp_path):
    trainer, report, logger = _trainer(evaluator, tmp_path, fn=TrainerFn.FITTING)
    report.on_validation_end(trainer, None)
    trainer2, report2, logger2 = _trainer(evaluator, tmp_path / "r1")
    trainer2.is_global_zero = False
    report2.on_validation_end(trainer2, None)
    assert not logger.tables and not logger2.tables and not (tmp_path / "report").exists()


def test_throughput_counts_images_between_two_marks(monkeypatch):
    import time

    clock = iter([100.0, 102.0, 103.0])
    monkeypatch.setattr(time, "perf_counter", lambda: next(clock))
    logger = RecordingLogger()
    trainer = SimpleNamespace(global_step=0, log_every_n_steps=2, world_size=2, is_global_zero=True, loggers=[logger])
    module = SimpleNamespace(device=SimpleNamespace(type="cpu"))
    cb = Throughput()
    cb.on_train_epoch_start(trainer, module)  # t = 100
    import torch

    for step in (1, 2, 3, 4):
        trainer.global_step = step
        cb.on_train_batch_end(trainer, module, None, {"image": torch.zeros(8, 3, 4, 4)}, step - 1)
    # marks at steps 2 (t = 102: 16 images x 2 ranks in 2 s) and 4 (t = 103: 32 in 1 s); no GPU memory on a CPU
    assert logger.metrics == [(2, {"train/img_per_s": 16.0}), (4, {"train/img_per_s": 32.0})]
