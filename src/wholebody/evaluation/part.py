"""One part's COCO-WholeBody keypoint evaluation: OKS AP/AR of one of the six evaluations (body,
foot, face, lefthand, righthand, wholebody), exactly as the official protocol (xtcocotools'
COCOeval called the way mmpose's ``CocoWholeBodyMetric`` calls it).

Per part (``part`` in ``EVAL_PARTS``; ``wholebody`` is all 133 keypoints):

* sigmas: ``spec.part_sigmas(part)``; 20 detections per image; OKS thresholds .50:.05:.95;
  area ranges all / medium [32^2, 96^2] / large [96^2, 1e10] (inclusive).
* a ground truth is ignored when it is crowd or has no labelled keypoint (v > 0) of the part
  (the ``*_valid`` flags are not consulted); its ``area`` (the whole person's) is used in the
  OKS of every part and for its area range;
* a detection takes part only if at least one of its keypoints of the part has score > 0; it is
  ranked by the part's score key (``foot_score``, ..., ``wholebody_score``; ``score`` for body)
  and by ``score`` where the row lacks it; its area for the ranges is the extent of its 17 body
  keypoints (see :class:`~wholebody.evaluation.results.Detections`).

The user-facing evaluator built on this is :class:`~wholebody.evaluation.wholebody.WholeBodyEvaluator`;
the error diagnosis (:mod:`wholebody.evaluation.diagnosis`) calls :func:`evaluate_part` too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

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
from .groundtruth import GroundTruth
from .oks import oks_pairs
from .results import Detections

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


def check_parts(parts: Iterable[str]) -> tuple[str, ...]:
    """``parts`` as a tuple; ``ValueError`` for a name not in ``EVAL_PARTS``."""
    parts = tuple(parts)
    bad = [p for p in parts if p not in EVAL_PARTS]
    if bad:
        raise ValueError(f"unknown part(s) {bad}; parts are {list(EVAL_PARTS)}")
    return parts


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


__all__ = ["PartEvaluation", "Stats", "check_parts", "evaluate_keypoints", "evaluate_part", "part_instances"]
