"""The COCO-WholeBody keypoint evaluation: six OKS evaluations (body, foot, face, lefthand,
righthand, wholebody), exactly as the official protocol (xtcocotools' COCOeval called the way
mmpose's ``CocoWholeBodyMetric`` calls it).

Per part (``part`` in ``EVAL_PARTS``; ``wholebody`` is all 133 keypoints):

* sigmas: ``spec.part_sigmas(part)``; 20 detections per image; OKS thresholds .50:.05:.95;
  area ranges all / medium [32^2, 96^2] / large [96^2, 1e10] (inclusive).
* a ground truth is ignored when it is crowd or has no labelled keypoint (v > 0) of the part
  (the ``*_valid`` flags are not consulted); its ``area`` (the whole person's) is used in the
  OKS of every part and for its area range;
* a detection takes part only if at least one of its keypoints of the part has score > 0; it is
  ranked by the part's score key (``foot_score``, ..., ``wholebody_score``; ``score`` for body)
  and by ``score`` where the row lacks it; its area for the ranges is the extent of its 17 body
  keypoints (see :class:`~wholebody.evaluation.io.Detections`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..keypoints import COCO_WHOLEBODY, EVAL_PARTS, KeypointSpec
from .engine import (
    KEYPOINT_PROTOCOL,
    STAT_NAMES,
    Instances,
    Matching,
    Protocol,
    accumulate,
    keypoint_queries,
    match,
    summarize,
)
from .groundtruth import GroundTruth, load_ground_truth
from .io import EvalInputError
from .oks import oks_pairs
from .results import Detections, load_results, parse_results, restrict_images

Stats = dict[str, dict[str, float]]


@dataclass(frozen=True, eq=False)
class PartEvaluation:
    """One part's evaluation.

    Attributes:
        part: the part name.
        stats: the ten stats (``STAT_NAMES``) for the protocol's standard queries.
        precision: (T, R, C, A, M) sampled precision, -1 where there is no ground truth.
        recall: (T, C, A, M) final recall.
        protocol: the protocol used.
        instances: the engine's view of ground truth and detections.
        matching: the matching (detection rows index ``dt_rows``).
        dt_rows: (D,) rows of the :class:`Detections` taking part.
    """

    part: str
    stats: dict[str, float]
    precision: np.ndarray
    recall: np.ndarray
    protocol: Protocol
    instances: Instances
    matching: Matching
    dt_rows: np.ndarray


def part_instances(
    gt: GroundTruth, dt: Detections, part: str, spec: KeypointSpec = COCO_WHOLEBODY
) -> tuple[Instances, np.ndarray]:
    """The engine's view of one part: (instances, detection rows taking part (D,))."""
    sl = spec.slice(part)
    C = len(gt.category_ids)
    gt_ignore = gt.iscrowd | ~(gt.keypoints[:, sl, 2] > 0).any(axis=1)
    rows = np.flatnonzero((dt.keypoints[:, sl, 2] > 0).any(axis=1) & (dt.category_index >= 0))
    inst = Instances(
        gt_group=gt.image_index * C + gt.category_index,
        gt_ignore=gt_ignore,
        gt_crowd=gt.iscrowd,
        gt_area=gt.area,
        dt_group=dt.image_index[rows] * C + dt.category_index[rows],
        dt_score=dt.scores[part][rows],
        dt_area=dt.area[rows],
        num_categories=C,
    )
    return inst, rows


def evaluate_part(
    gt: GroundTruth,
    dt: Detections,
    part: str,
    spec: KeypointSpec = COCO_WHOLEBODY,
    protocol: Protocol = KEYPOINT_PROTOCOL,
    keypoints: np.ndarray | None = None,
) -> PartEvaluation:
    """Evaluate one part (OKS AP/AR).

    Args:
        keypoints: optional (N, K, 3) replacement for ``dt.keypoints`` in the OKS (used by the error
            diagnosis to score corrected keypoints with everything else unchanged).
    """
    sl = spec.slice(part)
    inst, rows = part_instances(gt, dt, part, spec)
    kp = dt.keypoints if keypoints is None else keypoints
    dt_xy = kp[:, sl, :2][rows]
    gt_kp = gt.keypoints[:, sl]
    sig = spec.part_sigmas(part)

    below = float(np.min(protocol.iou_thrs))  # pairs certainly below every threshold are skipped

    def similarity(d: np.ndarray, g: np.ndarray) -> np.ndarray:
        return oks_pairs(dt_xy, gt_kp, gt.area, gt.bbox, sig, d, g, below=below)

    m = match(inst, similarity, protocol)
    precision, recall = accumulate(inst, m, protocol)
    stats = {}
    if set(("all", "medium", "large")) <= set(protocol.area_labels):
        vals = summarize(precision, recall, protocol, keypoint_queries(protocol.max_dets[-1]))
        stats = dict(zip(STAT_NAMES, vals))
    return PartEvaluation(part, stats, precision, recall, protocol, inst, m, rows)


def evaluate_keypoints(
    gt: GroundTruth, dt: Detections, parts: Sequence[str] = EVAL_PARTS, spec: KeypointSpec = COCO_WHOLEBODY
) -> Stats:
    """``{part: {AP, AP50, AP75, APm, APl, AR, AR50, AR75, ARm, ARl}}`` for ``parts``."""
    return {p: evaluate_part(gt, dt, p, spec).stats for p in parts}


def metric_dict(stats: Stats, prefix: str = "val", names: Iterable[str] = ("AP", "AR")) -> dict[str, float]:
    """Flat logging names: ``{"val/body/AP": ..., "val/body/AR": ..., ...}`` (the project's metric names)."""
    names = tuple(names)
    return {f"{prefix}/{part}/{n}": float(v[n]) for part, v in stats.items() for n in names}


def _check_parts(parts: Iterable[str]) -> tuple[str, ...]:
    parts = tuple(parts)
    bad = [p for p in parts if p not in EVAL_PARTS]
    if bad:
        raise ValueError(f"unknown part(s) {bad}; parts are {list(EVAL_PARTS)}")
    return parts


class WholeBodyEvaluator:
    """Accumulates result rows and evaluates them against one ground-truth file.

    Usable from any loop (no Lightning needed)::

        ev = WholeBodyEvaluator("person_keypoints_val.json")
        for batch in loader:
            ev.process(rows_for(batch))  # COCO-WholeBody result dicts
        stats = ev.evaluate()            # {"body": {"AP": ..., ...}, ..., "wholebody": {...}}

    Rows are validated and converted to arrays in :meth:`process` (an error names the row's
    index across all calls and its image_id); the caller's objects are never modified or kept.
    In distributed runs gather and de-duplicate rows first (:mod:`wholebody.evaluation.distributed`).

    Args:
        gt: annotation file path, loaded dict, or :class:`GroundTruth`.
        parts: parts to evaluate (default all six).
        spec: the keypoint layout.
    """

    def __init__(
        self,
        gt: str | os.PathLike | Mapping | GroundTruth,
        parts: Iterable[str] = EVAL_PARTS,
        spec: KeypointSpec = COCO_WHOLEBODY,
    ) -> None:
        self.spec = spec
        self.parts = _check_parts(parts)
        self.gt = load_ground_truth(gt, spec)
        self._chunks: list[Detections] = []
        self._count = 0
        self._bbox_area: bool | None = None

    def reset(self) -> None:
        """Forget every processed row."""
        self._chunks = []
        self._count = 0
        self._bbox_area = None

    def __len__(self) -> int:
        return self._count

    def process(
        self, predictions: Sequence[Mapping[str, Any]] | Detections, source: str = "<results>"
    ) -> None:
        """Add result rows (COCO-WholeBody result dicts) or already-parsed :class:`Detections`."""
        if isinstance(predictions, Detections):
            det = predictions
        else:
            rows = list(predictions)
            if not rows:
                return
            if self._bbox_area is None and isinstance(rows[0], Mapping):
                first = rows[0].get("bbox")
                self._bbox_area = isinstance(first, (list, tuple)) and len(first) > 0
            det = parse_results(
                rows,
                self.gt,
                source=source,
                offset=self._count,
                parts=self.parts,
                bbox_area=self._bbox_area,
                spec=self.spec,
            )
        self._chunks.append(det)
        self._count += len(det)

    @property
    def detections(self) -> Detections:
        """Every processed row as one :class:`Detections`."""
        det = Detections.concat(self._chunks, self.spec)
        self._chunks = [det] if len(det) else []
        return det

    def _data(self, image_ids: Iterable[int] | None) -> tuple[GroundTruth, Detections]:
        if image_ids is None:
            return self.gt, self.detections
        return restrict_images(self.gt, self.detections, image_ids)

    def evaluate_parts(
        self, parts: Iterable[str] | None = None, image_ids: Iterable[int] | None = None
    ) -> dict[str, PartEvaluation]:
        """Full per-part evaluations (precision/recall arrays, matching) for plots and analyses."""
        gt, det = self._data(image_ids)
        return {p: evaluate_part(gt, det, p, self.spec) for p in _check_parts(parts or self.parts)}

    def evaluate(self, image_ids: Iterable[int] | None = None) -> Stats:
        """``{part: {AP, AP50, AP75, APm, APl, AR, AR50, AR75, ARm, ARl}}``; -1 marks a stat with no
        ground truth to measure (e.g. APm when no person is medium-sized). No rows: zeros.

        Args:
            image_ids: evaluate these images only (e.g. those a shortened validation loop covered);
                default every image of the ground truth, so that images without any row count
                as missed persons.
        """
        return {p: e.stats for p, e in self.evaluate_parts(image_ids=image_ids).items()}

    def evaluate_boxes(self) -> Stats:
        """Face / hand box AP of the rows carrying part boxes: ``{part: {AP, AP50, ..., ARl}}``
        (see :mod:`wholebody.evaluation.boxes`); parts without predicted boxes are left out."""
        from .boxes import evaluate_part_boxes

        return evaluate_part_boxes(self.gt, self.detections)

    def size_breakdown(self) -> dict[str, dict[str, dict[str, float]]]:
        """AP/AR per person size (see :func:`wholebody.evaluation.diagnosis.size_breakdown`)."""
        from .diagnosis import size_breakdown

        return size_breakdown(self.gt, self.detections, self.parts, self.spec)

    def diagnose(self) -> dict[str, dict]:
        """Keypoint error diagnosis per part as plain dicts (see :mod:`wholebody.evaluation.diagnosis`)."""
        from .diagnosis import diagnose

        return {p: d.to_dict() for p, d in diagnose(self.gt, self.detections, self.parts, self.spec).items()}


def evaluate(
    gt: str | os.PathLike | Mapping | GroundTruth,
    results: str | os.PathLike | list,
    parts: Iterable[str] = EVAL_PARTS,
    spec: KeypointSpec = COCO_WHOLEBODY,
) -> Stats:
    """Evaluate a results file (or list of rows) against ground truth: ``{part: {stat: value}}``."""
    parts = _check_parts(parts)
    g = load_ground_truth(gt, spec)
    return evaluate_keypoints(g, load_results(results, g, parts=parts, spec=spec), parts, spec)


__all__ = [
    "EvalInputError",
    "PartEvaluation",
    "Stats",
    "WholeBodyEvaluator",
    "evaluate",
    "evaluate_keypoints",
    "evaluate_part",
    "metric_dict",
    "part_instances",
]
