"""An evaluation's full report: the six parts' stats and PR curves, the face/hand box AP (paper Table 8),
AP by person size and the keypoint error breakdown, with its charts. ``wholebody-eval --details/--plots``
and the training's final-validation report (``training.callbacks.EvaluationReport``) both build it here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..keypoints import COCO_WHOLEBODY, EVAL_PARTS, KeypointSpec
from .boxes import part_box_curves
from .groundtruth import GroundTruth
from .part import PartEvaluation, evaluate_part
from .results import Detections

#: box part -> (precision (T, R, K=1, A, M), recall points, IoU thresholds, stats)
BoxCurves = dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, Mapping[str, float]]]


@dataclass
class Report:
    """What one evaluation found. ``boxes``/``box_curves`` are empty when no row predicts part boxes
    (or the ground truth has none); ``sizes``/``diagnosis`` are None when not analysed."""

    evaluations: dict[str, PartEvaluation]
    boxes: dict[str, dict[str, float]] = field(default_factory=dict)
    box_curves: BoxCurves = field(default_factory=dict)
    sizes: dict[str, Any] | None = None
    diagnosis: dict[str, Any] | None = None

    @property
    def stats(self) -> dict[str, dict[str, float]]:
        """``{part: {AP, AP50, ..., ARl}}`` of the keypoint evaluation."""
        return {p: e.stats for p, e in self.evaluations.items()}

    def details(self) -> dict[str, Any]:
        """Plain data for a JSON file: keypoint stats, box stats, sizes, diagnosis (those present)."""
        out: dict[str, Any] = {"keypoints": self.stats}
        if self.boxes:
            out["boxes"] = self.boxes
        if self.sizes is not None:
            out["sizes"] = self.sizes
        if self.diagnosis:
            out["diagnosis"] = {p: d.to_dict() for p, d in self.diagnosis.items()}
        return out

    def write_plots(self, out_dir: str | os.PathLike) -> list[Path]:
        """Every chart that has data (``pr_curves.png``, ``error_breakdown.png``, ``error_pr_curves.png``,
        ``ap_by_size.png``, ``box_pr_curves.png``) into ``out_dir``, atomically; returns the files."""
        from .plots import write_plots

        return write_plots(out_dir, self.evaluations, self.diagnosis, self.sizes, self.box_curves)


def build_report(
    gt: GroundTruth,
    det: Detections,
    parts: Iterable[str] = EVAL_PARTS,
    *,
    evaluations: Mapping[str, PartEvaluation] | None = None,
    boxes: bool = True,
    analyze: bool = True,
    spec: KeypointSpec = COCO_WHOLEBODY,
) -> Report:
    """The report of ``det`` against ``gt``. ``evaluations``: the parts' evaluations when already
    computed (e.g. by :func:`~wholebody.evaluation.files.load_and_evaluate`); ``boxes``: part-box AP;
    ``analyze``: sizes and the keypoint error breakdown (the slower part)."""
    from .diagnosis import diagnose, size_breakdown

    parts = tuple(parts)
    evals = dict(evaluations) if evaluations is not None else {p: evaluate_part(gt, det, p, spec) for p in parts}
    report = Report(evals)
    if boxes:
        report.boxes, report.box_curves = part_box_curves(gt, det)
    if analyze:
        report.sizes = size_breakdown(gt, det, parts, spec)
        report.diagnosis = diagnose(gt, det, parts, spec) if len(det) else None
    return report


__all__ = ["Report", "build_report"]
