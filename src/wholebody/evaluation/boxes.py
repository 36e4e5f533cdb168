"""Face and hand box AP (the paper's part-box detection table), on the shared COCO engine.

Ground truth per part (``face``, ``lefthand``, ``righthand``): the annotation's part box
(``face_box``, ...) where its ``*_valid`` flag is set; area = box w*h; crowd persons' boxes are
crowd regions. Other annotations have no box of that part (their absence is not an error).

Predictions: rows carrying ``face_box`` / ``lefthand_box`` / ``righthand_box`` (xywh, image px),
scored by ``<box key>_score``, else the row's part score (``face_score``, ...), else ``score``.

The evaluation is COCO bbox evaluation exactly (pycocotools ``iouType='bbox'``): IoU thresholds
.50:.05:.95, 1/10/100 detections per image, areas all/small/medium/large, IoU with a crowd
region = intersection / detection area; the twelve standard stats (``BOX_STAT_NAMES``).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..keypoints import BOX_PARTS
from .engine import (
    BOX_PROTOCOL,
    BOX_STAT_NAMES,
    Instances,
    Protocol,
    accumulate,
    box_queries,
    match,
    summarize,
)
from .groundtruth import GroundTruth
from .results import Detections


def iou_pairs(
    dt_boxes: np.ndarray, gt_boxes: np.ndarray, gt_crowd: np.ndarray, dt_rows: np.ndarray, gt_rows: np.ndarray
) -> np.ndarray:
    """IoU of the pairs ``(dt_rows[p], gt_rows[p])`` of xywh boxes (D, 4) and (G, 4); for a crowd
    ground truth, intersection over the detection's area. Returns (P,) float64."""
    d, g = dt_boxes[dt_rows], gt_boxes[gt_rows]
    w = np.minimum(d[:, 2] + d[:, 0], g[:, 2] + g[:, 0]) - np.maximum(d[:, 0], g[:, 0])
    h = np.minimum(d[:, 3] + d[:, 1], g[:, 3] + g[:, 1]) - np.maximum(d[:, 1], g[:, 1])
    overlap = (w > 0) & (h > 0)
    inter = w * h
    da, ga = d[:, 2] * d[:, 3], g[:, 2] * g[:, 3]
    union = np.where(gt_crowd[gt_rows], da, da + ga - inter)
    out = np.zeros(len(d))
    np.divide(inter, union, out=out, where=overlap)
    return out


def box_instances(gt: GroundTruth, dt: Detections, part: str) -> tuple[Instances, np.ndarray, np.ndarray]:
    """(instances, gt rows (G',), detection rows (D',)) of one box part."""
    j = BOX_PARTS.index(part)
    C = len(gt.category_ids)
    grows = np.flatnonzero(gt.part_box_valid[:, j])
    drows = np.flatnonzero(dt.box_present[:, j] & (dt.category_index >= 0))
    gb, db = gt.part_boxes[grows, j], dt.boxes[drows, j]
    inst = Instances(
        gt_group=gt.image_index[grows] * C + gt.category_index[grows],
        gt_ignore=gt.iscrowd[grows],
        gt_crowd=gt.iscrowd[grows],
        gt_area=gb[:, 2] * gb[:, 3],
        dt_group=dt.image_index[drows] * C + dt.category_index[drows],
        dt_score=dt.box_scores[drows, j],
        dt_area=db[:, 2] * db[:, 3],
        num_categories=C,
    )
    return inst, grows, drows


def evaluate_box_part(
    gt: GroundTruth, dt: Detections, part: str, protocol: Protocol = BOX_PROTOCOL
) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """``(stats, precision (T, R, C, A, M), recall (T, C, A, M))`` of one part's boxes."""
    inst, grows, drows = box_instances(gt, dt, part)
    j = BOX_PARTS.index(part)
    gb, db, crowd = gt.part_boxes[grows, j], dt.boxes[drows, j], gt.iscrowd[grows]
    m = match(inst, lambda d, g: iou_pairs(db, gb, crowd, d, g), protocol)
    precision, recall = accumulate(inst, m, protocol)
    stats = dict(zip(BOX_STAT_NAMES, summarize(precision, recall, protocol, box_queries(protocol.max_dets))))
    return stats, precision, recall


def part_box_curves(
    gt: GroundTruth, dt: Detections, parts: Iterable[str] = BOX_PARTS
) -> tuple[dict[str, dict[str, float]], dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, float]]]]:
    """``({part: stats}, {part: (precision, recall points, IoU thresholds, stats)})`` for the box parts
    whose ground truth carries boxes and for which at least one row predicts a box (the curves are what
    the PR-curve chart draws)."""
    stats, curves = {}, {}
    for part in parts:
        j = BOX_PARTS.index(part)
        if not gt.has_part_boxes[j] or not dt.box_present[:, j].any():
            continue
        st, precision, _ = evaluate_box_part(gt, dt, part)
        stats[part] = st
        curves[part] = (precision, np.asarray(BOX_PROTOCOL.rec_thrs), np.asarray(BOX_PROTOCOL.iou_thrs), st)
    return stats, curves


def evaluate_part_boxes(
    gt: GroundTruth, dt: Detections, parts: Iterable[str] = BOX_PARTS
) -> dict[str, dict[str, float]]:
    """``{part: {AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl}}`` for the box
    parts whose ground truth carries boxes and for which at least one row predicts a box."""
    return part_box_curves(gt, dt, parts)[0]
