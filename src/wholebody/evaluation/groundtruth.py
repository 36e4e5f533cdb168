"""COCO-WholeBody ground truth as arrays.

Coordinates are image pixels as written in the file; boxes stay COCO ``xywh``. Keypoint arrays are
in the 133-order of the :class:`~wholebody.keypoints.KeypointSpec` (the file's per-part lists
``keypoints``, ``foot_kpts``, ``face_kpts``, ``lefthand_kpts``, ``righthand_kpts`` concatenated in
that order). Nothing the caller passes in is modified.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..keypoints import BOX_PARTS, COCO_WHOLEBODY, PARTS, KeypointSpec
from .io import (
    EvalInputError,
    _Ctx,
    _describe,
    _ids,
    _keypoint_widths,
    _keypoints,
    _numbers,
    gc_paused,
    read_json,
)


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


@gc_paused()
def load_ground_truth(
    gt: str | os.PathLike | Mapping | GroundTruth, spec: KeypointSpec = COCO_WHOLEBODY
) -> GroundTruth:
    """Parse a COCO-WholeBody annotation file (path or already-loaded dict) into a :class:`GroundTruth`."""
    if isinstance(gt, GroundTruth):
        return gt
    if isinstance(gt, (str, os.PathLike)):
        source = str(gt)
        data = read_json(gt)
    else:
        source, data = "<ground truth>", gt
    if not isinstance(data, Mapping):
        raise EvalInputError(f"{source}: expected a COCO annotation object, got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise EvalInputError(f"{source}: missing the {key!r} list (not a COCO annotation file?)")
    img_ctx = _Ctx(source, "image")
    cat_ctx = _Ctx(source, "category")
    image_ids = np.unique(_ids(data["images"], "id", img_ctx)) if data["images"] else np.zeros(0, np.int64)
    category_ids = (
        np.unique(_ids(data["categories"], "id", cat_ctx)) if data["categories"] else np.zeros(0, np.int64)
    )

    anns = data["annotations"]
    ctx = _Ctx(source, "annotation", hint=" (not a COCO-WholeBody annotation file?)")
    ann_ids = _ids(anns, "id", ctx)
    img = _ids(anns, "image_id", ctx)
    cat = _ids(anns, "category_id", ctx)
    uniq, counts = np.unique(ann_ids, return_counts=True)
    if (counts > 1).any():
        dup = int(uniq[np.argmax(counts > 1)])
        i = int(np.flatnonzero(ann_ids == dup)[1])
        raise EvalInputError(
            f"{source}: {_describe(anns, i, 'annotation', 0)}: duplicate annotation id {dup}"
        )
    widths = _keypoint_widths(spec)
    kpts = _keypoints(anns, [(spec.annotation_keys[p], widths[p]) for p in PARTS], ctx)
    area = _numbers(anns, "area", None, ctx)
    bbox = _numbers(anns, "bbox", 4, ctx)
    # truthiness, as the reference reads it (files hold 0/1 or true/false)
    crowd = np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool)

    n = len(anns)
    boxes = np.zeros((n, len(BOX_PARTS), 4))
    valid = np.zeros((n, len(BOX_PARTS)), bool)
    has = np.zeros(len(BOX_PARTS), bool)
    for j, part in enumerate(BOX_PARTS):
        key = spec.box_keys[part]
        if n == 0 or not any(key in a for a in anns):
            continue
        has[j] = True
        boxes[:, j] = _numbers(anns, key, 4, ctx, default=[0.0, 0.0, 0.0, 0.0])
        vkey = spec.valid_keys.get(part)
        positive = (boxes[:, j, 2] > 0) & (boxes[:, j, 3] > 0)
        if vkey is not None and any(vkey in a for a in anns):
            flags = np.array([bool(a.get(vkey, False)) for a in anns])
            valid[:, j] = flags & positive
        else:
            valid[:, j] = positive

    # keep annotations of listed images and categories (the reference ignores the others)
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
        ann_ids=ann_ids[keep],
        image_index=ii[keep],
        category_index=ci[keep],
        keypoints=kpts[keep],
        area=area[keep],
        bbox=bbox[keep],
        iscrowd=crowd[keep],
        part_boxes=boxes[keep],
        part_box_valid=valid[keep],
        has_part_boxes=has,
    )
