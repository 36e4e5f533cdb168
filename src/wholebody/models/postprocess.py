"""Decoded network outputs (crop px) -> image px -> COCO-WholeBody results rows, and back to arrays.

:func:`to_image` inverts each sample's image -> crop affine
(``geometry.affine_matrix(center, size, rotation, (W, H), flip=flipped)``). A flipped sample's crop
shows the mirrored person whose keypoints were relabelled by the spec's flip index; mapping back
relabels them again and swaps the two hand boxes, so the results always describe the person as seen
in the image.

Scores (:func:`result_rows`), the usual top-down rescoring, in one of two modes (``score_mode``):

* ``per_part`` (default): the score of a part is ``box_score x mean of the scores of the part's
  keypoints above keypoint_threshold`` (0 when none is above), where ``box_score`` is the person box's
  score (1 for ground-truth boxes, the detector's otherwise). ``score`` (read by the evaluator for body)
  uses the 17 body keypoints, ``foot_score`` ... ``righthand_score`` their part, ``wholebody_score`` all 133.
* ``mmpose``: one score per person, ``box_score x mean of the scores of all 133 keypoints above
  keypoint_threshold`` (0 when none is above; mmpose's ``score_mode="bbox_keypoint"`` with
  ``keypoint_score_thr=0.2``), written as ``score`` and as every part's score, so that each part is
  ranked as in mmpose's results files (which hold a single ``score``) and per-part APs compare with
  published tables.

``wholebody_score`` is the same in both modes (the score OKS-NMS orders by). A part box's score is
``box_score x`` the network's confidence in that box. Each row also carries ``crop_area``: the area
of the person's crop region in image px^2 (the box grown to the input aspect ratio and by the
padding), the area OKS-NMS uses (:mod:`wholebody.evaluation.nms`).

:func:`rows_to_arrays` reads results rows back into (N, 133, 3) keypoints and (N, 3, 5) part boxes
(xyxy + score) in image px, the arrays :func:`wholebody.viz.draw_wholebody` draws.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from wholebody.geometry import (
    affine_matrix,
    apply_affine,
    invert_affine,
    keypoints_from_file,
    keypoints_to_file,
    transform_boxes,
    xyxy_to_xywh,
)
from wholebody.keypoints import BOX_FLIP_INDEX, BOX_PARTS, COCO_WHOLEBODY, EVAL_PARTS, PARTS


def _np(x: Any, dtype: Any = np.float64) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu")
        x = x.to(torch.float64) if x.is_floating_point() else x
        x = x.numpy()
    return np.asarray(x, dtype=dtype)


def to_image(decoded: Mapping[str, Any], meta: Mapping[str, Any], input_size: Sequence[int]) -> dict[str, np.ndarray]:
    """Map decoded predictions from crop px to image px.

    Args:
        decoded: ``net.decode(...)``: ``keypoints`` (B, 133, 3) crop px + score, ``part_boxes`` (B, 3, 4)
            xyxy crop px, ``part_box_scores`` (B, 3) (tensors or arrays).
        meta: the batch's meta: ``center`` (B, 2), ``size`` (B, 2) image px, ``rotation`` (B,) degrees,
            ``flipped`` (B,) bool (optional, default False), ``image_id`` (B,), ``ann_id`` / ``bbox_id`` (B,)
            (optional, default -1), ``score`` (B,) person box score (optional, default 1).
        input_size: (W, H) of the crops.
    Returns:
        numpy dict: ``keypoints`` (B, 133, 3) image px + score, ``part_boxes`` (B, 3, 4) xyxy image px,
        ``part_box_scores`` (B, 3), ``image_id`` (B,) int64, ``ann_id`` and ``bbox_id`` (B,) int64 (-1: none),
        ``box_score`` (B,), ``crop_area`` (B,) the crop region's area, image px^2.
    """
    kpts = _np(decoded["keypoints"])
    b = kpts.shape[0]
    for key in ("center", "size", "image_id"):
        if key not in meta:
            raise KeyError(f"to_image: meta lacks {key!r} (has {sorted(meta)})")
    center, size = _np(meta["center"]).reshape(b, 2), _np(meta["size"]).reshape(b, 2)
    rotation = _np(meta.get("rotation", np.zeros(b))).reshape(b)
    flipped = _np(meta.get("flipped", np.zeros(b, bool)), bool).reshape(b)
    inv = invert_affine(affine_matrix(center, size, rotation, (int(input_size[0]), int(input_size[1])), flip=flipped))
    out_k = kpts.copy()
    out_k[..., :2] = apply_affine(inv, kpts[..., :2])
    boxes = transform_boxes(inv, _np(decoded["part_boxes"]).reshape(b, len(BOX_PARTS), 4))
    box_scores = _np(decoded["part_box_scores"]).reshape(b, len(BOX_PARTS)).copy()
    empty = ~(_np(decoded["part_boxes"]).reshape(b, len(BOX_PARTS), 4) != 0).any(axis=-1)
    boxes[empty] = 0.0
    if flipped.any():
        out_k[flipped] = out_k[flipped][:, COCO_WHOLEBODY.flip_index]
        boxes[flipped] = boxes[flipped][:, BOX_FLIP_INDEX]
        box_scores[flipped] = box_scores[flipped][:, BOX_FLIP_INDEX]
    return {
        "keypoints": out_k,
        "part_boxes": boxes,
        "part_box_scores": box_scores,
        "image_id": _np(meta["image_id"], np.int64).reshape(b),
        "ann_id": _np(meta.get("ann_id", np.full(b, -1)), np.int64).reshape(b),
        "bbox_id": _np(meta.get("bbox_id", np.full(b, -1)), np.int64).reshape(b),
        "box_score": _np(meta.get("score", np.ones(b))).reshape(b),
        "crop_area": size[:, 0] * size[:, 1],
    }


#: The score modes of :func:`part_scores` / :func:`result_rows` (module docstring).
SCORE_MODES = ("per_part", "mmpose")


def check_score_mode(score_mode: str) -> str:
    if score_mode not in SCORE_MODES:
        raise ValueError(f"score_mode must be one of {', '.join(SCORE_MODES)}, got {score_mode!r}")
    return score_mode


def part_scores(keypoint_scores: np.ndarray, box_score: np.ndarray, threshold: float = 0.2,
                score_mode: str = "per_part") -> dict[str, np.ndarray]:
    """(N, 133) keypoint scores, (N,) person box scores -> part -> (N,) scores for ``EVAL_PARTS``
    (``score_mode``: see the module docstring)."""
    check_score_mode(score_mode)
    out = {}
    for part in EVAL_PARTS if score_mode == "per_part" else ("wholebody",):
        s = keypoint_scores[:, COCO_WHOLEBODY.slice(part)]
        ok = s > threshold
        mean = np.where(ok.any(axis=1), (s * ok).sum(axis=1) / np.maximum(ok.sum(axis=1), 1), 0.0)
        out[part] = box_score * mean
    if score_mode == "mmpose":
        out = {part: out["wholebody"] for part in EVAL_PARTS}
    return out


def result_rows(image_results: Mapping[str, np.ndarray], keypoint_threshold: float = 0.2,
                score_mode: str = "per_part") -> list[dict[str, Any]]:
    """COCO-WholeBody results rows (plain Python numbers) from :func:`to_image`'s output.

    Each row: ``image_id``, ``category_id`` (1), the person key (``ann_id`` for a ground-truth person,
    ``bbox_id`` for a detected one; the evaluator de-duplicates by it), the five keypoint lists (x, y, score
    flattened, field names from the spec), ``score`` and the part scores (``score_mode``, see the module
    docstring), ``crop_area`` when ``image_results`` has it, and for each predicted part box ``<part>_box`` (xywh image px) and ``<part>_box_score``; boxes a
    model does not predict (all zeros with score 0) are left out.
    """
    kpts = np.asarray(image_results["keypoints"], dtype=np.float64)
    n = kpts.shape[0]
    in_file = keypoints_to_file(kpts, labelled_only=False)  # results files use COCO's pixel indices
    box_score = np.asarray(image_results.get("box_score", np.ones(n)), dtype=np.float64)
    scores = part_scores(kpts[..., 2], box_score, keypoint_threshold, score_mode)
    crop_area = image_results.get("crop_area")
    boxes = xyxy_to_xywh(np.asarray(image_results["part_boxes"], dtype=np.float64))
    bscores = np.asarray(image_results["part_box_scores"], dtype=np.float64) * box_score[:, None]
    spec = COCO_WHOLEBODY
    rows = []
    for i in range(n):
        row: dict[str, Any] = {"image_id": int(image_results["image_id"][i]), "category_id": 1}
        for key in ("ann_id", "bbox_id"):
            if key in image_results and int(image_results[key][i]) >= 0:
                row[key] = int(image_results[key][i])
        for part in PARTS:
            row[spec.annotation_keys[part]] = in_file[i, spec.slice(part)].reshape(-1).tolist()
        for part in EVAL_PARTS:
            row[spec.score_keys[part]] = float(scores[part][i])
        if crop_area is not None:
            row["crop_area"] = float(crop_area[i])
        for j, part in enumerate(BOX_PARTS):
            if not (boxes[i, j].any() or bscores[i, j] > 0):
                continue
            key = spec.box_keys[part]
            row[key] = boxes[i, j].tolist()
            row[f"{key}_score"] = float(bscores[i, j])
        rows.append(row)
    return rows


def rows_to_arrays(rows: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of :func:`result_rows` for drawing: results rows -> keypoints (N, 133, 3) image px +
    score and part boxes (N, 3, 5) xyxy image px + score (``<part>_box_score``, 1 when absent; all zeros
    for a box the row does not carry)."""
    spec = COCO_WHOLEBODY
    kpts = np.zeros((len(rows), spec.num_keypoints, 3))
    boxes = np.zeros((len(rows), len(BOX_PARTS), 5))
    for i, r in enumerate(rows):
        for part, key in spec.annotation_keys.items():
            kpts[i, spec.slice(part)] = np.asarray(r[key], dtype=np.float64).reshape(-1, 3)
        for j, part in enumerate(BOX_PARTS):
            key = spec.box_keys[part]
            if key in r:
                x, y, w, h = r[key]
                boxes[i, j] = [x, y, x + w, y + h, r.get(f"{key}_score", 1.0)]
    return keypoints_from_file(kpts, labelled_only=False), boxes
