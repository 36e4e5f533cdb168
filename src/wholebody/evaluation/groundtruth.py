"""COCO-WholeBody ground truth as arrays.

Read by the one reader (:mod:`wholebody.cocowb`). Coordinates are image pixels as written in the file
(the evaluator compares file coordinates with results-file coordinates); boxes stay COCO ``xywh``. Keypoint arrays are
in the 133-order of the :class:`~wholebody.keypoints.KeypointSpec` (the file's per-part lists
``keypoints``, ``foot_kpts``, ``face_kpts``, ``lefthand_kpts``, ``righthand_kpts`` concatenated in
that order). Nothing the caller passes in is modified.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..cocowb import WholeBodyColumns, parse_wholebody, read_wholebody
from ..keypoints import BOX_PARTS, COCO_WHOLEBODY, PARTS, KeypointSpec
from .io import EvalInputError


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """A COCO-WholeBody annotation file as arrays (G annotations, I images, C categories).

    Only annotations whose image is listed in ``images`` and whose category is listed in
    ``categories`` are kept (as the reference evaluator does).

    Attributes:
        source: file name (or ``"<ground truth>"``) used in messages.
        image_ids: (I,) int64 sorted unique image ids; their order is the evaluation order.
        category_ids: (C,) int64 sorted unique category ids.
        ann_ids: (G,) int64 annotation ids.
        image_index: (G,) int64 index into ``image_ids``.
        category_index: (G,) int64 index into ``category_ids``.
        keypoints: (G, K, 3) float64, x and y in image px and the visibility flag (> 0: labelled).
        area: (G,) float64 the annotation's ``area`` (segmentation area).
        bbox: (G, 4) float64 person box, xywh image px.
        iscrowd: (G,) bool.
        part_boxes: (G, len(BOX_PARTS), 4) float64 xywh image px (zeros where the file has none).
        part_box_valid: (G, len(BOX_PARTS)) bool, the file's ``*_valid`` flags (or a positive box
            size when the flag is absent); False where the file has no box.
        has_part_boxes: (len(BOX_PARTS),) bool, whether the file carries that box at all.
    """

    source: str
    image_ids: np.ndarray
    category_ids: np.ndarray
    ann_ids: np.ndarray
    image_index: np.ndarray
    category_index: np.ndarray
    keypoints: np.ndarray
    area: np.ndarray
    bbox: np.ndarray
    iscrowd: np.ndarray
    part_boxes: np.ndarray
    part_box_valid: np.ndarray
    has_part_boxes: np.ndarray

    @property
    def num_annotations(self) -> int:
        return len(self.ann_ids)


def load_ground_truth(
    gt: str | os.PathLike | Mapping | GroundTruth | WholeBodyColumns, spec: KeypointSpec = COCO_WHOLEBODY
) -> GroundTruth:
    """A COCO-WholeBody annotation file (path, already-loaded dict, or the reader's columns) as a
    :class:`GroundTruth`, read by the one reader (:mod:`wholebody.cocowb`).

    The evaluator's policy on top of the reader: the file must list ``categories``; every annotation must
    carry ``category_id``, ``bbox``, ``area`` and the five keypoint lists; annotations of images or
    categories the file does not list are ignored (as the reference evaluator does); part boxes are
    optional, and a part box counts as valid by the shared rule (flagged valid and with area; with no
    flags in the file, area alone).
    """
    if isinstance(gt, GroundTruth):
        return gt
    if isinstance(gt, WholeBodyColumns):
        c = gt
    elif isinstance(gt, (str, os.PathLike)):
        c = read_wholebody(gt, spec)
    else:
        c = parse_wholebody(gt, "<ground truth>", spec)
    source = c.source
    if not bool(c.has_categories):
        raise EvalInputError(f"{source}: missing the 'categories' list (not a COCO annotation file?)")
    required = ["category_id", "bbox", "area"] + [spec.annotation_keys[p] for p in PARTS]
    for key in required:
        have = c.present_field(key, spec)
        if not have.all():
            i = int(np.argmin(have))
            raise EvalInputError(f"{source}: {c.record_name(i)}: missing {key!r} (not a COCO-WholeBody annotation "
                                 "file?)")
    image_ids = np.unique(c.image_ids)
    category_ids = np.unique(c.category_ids)
    n = c.num_annotations
    has = np.zeros(len(BOX_PARTS), bool)
    valid = np.zeros((n, len(BOX_PARTS)), bool)
    positive = c.part_box_positive()
    for j, part in enumerate(BOX_PARTS):
        if n == 0 or not c.present_field(spec.box_keys[part], spec).any():
            continue
        has[j] = True
        if c.present_field(spec.valid_keys[part], spec).any():
            valid[:, j] = c.flag(part) & positive[:, j]
        else:
            valid[:, j] = positive[:, j]

    img, cat = c.image_id, c.category_id
    ii = np.searchsorted(image_ids, img)
    ci = np.searchsorted(category_ids, cat)
    keep = (ii < len(image_ids)) & (ci < len(category_ids))
    keep[keep] &= (image_ids[ii[keep]] == img[keep]) & (category_ids[ci[keep]] == cat[keep])
    if keep.all():
        keep = slice(None)  # no copies
    return GroundTruth(
        source=source,
        image_ids=image_ids,
        category_ids=category_ids,
        ann_ids=c.ann_ids[keep],
        image_index=ii[keep],
        category_index=ci[keep],
        keypoints=c.keypoints[keep],
        area=c.area[keep],
        bbox=c.bbox[keep],
        iscrowd=c.iscrowd[keep],
        part_boxes=c.part_boxes[keep],
        part_box_valid=valid[keep],
        has_part_boxes=has,
    )
