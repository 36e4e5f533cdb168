"""Drawing whole-body poses: the one overlay function used by predict, wandb panels and notebooks.

Images are (H, W, 3) uint8 RGB arrays; keypoints are in that image's pixel frame (the package's
convention, pixel centres at +0.5). The third keypoint channel is a score or a visibility: points
with a value below ``score_thr`` are hidden, and so is every edge touching them.

:func:`draw_results` draws COCO-WholeBody results rows on their image files (the demo's overlays
and the training's prediction panel).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from wholebody.keypoints import BOX_PARTS, COCO_WHOLEBODY, KeypointSpec

log = logging.getLogger(__name__)

#: RGB colour of each part; body edges use LEFT/RIGHT/CENTRE shades so sides are told apart.
PART_COLORS: dict[str, tuple[int, int, int]] = {
    "body": (255, 170, 0),
    "foot": (255, 60, 160),
    "face": (250, 250, 250),
    "lefthand": (60, 220, 60),
    "righthand": (60, 160, 255),
}
SIDE_COLORS: dict[str, tuple[int, int, int]] = {
    "left": (60, 220, 60),
    "right": (60, 160, 255),
    "centre": (255, 170, 0),
}
PERSON_BOX_COLOR = (255, 255, 0)

_SHIFT = 4  # cv2 sub-pixel bits
_ONE = 1 << _SHIFT


def _to_cv(points: np.ndarray) -> np.ndarray:
    """Package px (centres at +0.5) -> cv2 fixed-point (centres at integers)."""
    return np.round((points - 0.5) * _ONE).astype(np.int64)


def _edge_color(spec: KeypointSpec, a: int, b: int) -> tuple[int, int, int]:
    part = spec.part_of(a)
    if part in ("body", "foot"):
        na, nb = spec.names[a], spec.names[b]
        sides = {("left" if n.startswith("left_") else "right" if n.startswith("right_") else "centre") for n in (na, nb)}
        side = "left" if sides == {"left"} else "right" if sides == {"right"} else "centre"
        return SIDE_COLORS[side] if part == "body" else PART_COLORS["foot"]
    return PART_COLORS[part]


def draw_wholebody(
    image: np.ndarray,
    keypoints: np.ndarray,
    part_boxes: np.ndarray | None = None,
    person_boxes: np.ndarray | None = None,
    score_thr: float = 0.3,
    spec: KeypointSpec = COCO_WHOLEBODY,
    labels: Sequence[str] | None = None,
    radius: int | None = None,
    thickness: int | None = None,
) -> np.ndarray:
    """Overlay skeletons, part boxes and person boxes on a copy of ``image``.

    Args:
        image: (H, W, 3) uint8 RGB.
        keypoints: (N, K, 3) or (K, 3) image px + score/visibility, K = ``spec.num_keypoints``.
        part_boxes: optional (N, 3, 4) xyxy image px (face, left hand, right hand), or (N, 3, 5)
            with a score in the last column; boxes scoring below ``score_thr`` or with no area are skipped.
        person_boxes: optional (N, 4) xyxy image px.
        score_thr: hide keypoints (and their edges) scoring below it.
        labels: optional text per person, drawn at its box or first visible keypoint.
        radius / thickness: pixel sizes; default scales with the image size.
    Returns:
        (H, W, 3) uint8 RGB, a new array.
    """
    out = np.ascontiguousarray(image.copy())
    if out.ndim != 3 or out.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3), got {image.shape}")
    kpts = np.asarray(keypoints, dtype=np.float64)
    if kpts.ndim == 2:
        kpts = kpts[None]
    if kpts.shape[1:] != (spec.num_keypoints, 3):
        raise ValueError(f"keypoints must be (N, {spec.num_keypoints}, 3), got {kpts.shape}")
    h, w = out.shape[:2]
    scale = max(h, w) / 640.0
    thickness = thickness or max(1, int(round(2 * scale)))
    radius = radius or max(1, int(round(2.5 * scale)))
    small = max(1, radius // 2)
    edges = np.concatenate([spec.skeleton_index, spec.outline_index], axis=0)
    edge_colors = [_edge_color(spec, int(a), int(b)) for a, b in edges]
    point_colors = [PART_COLORS[spec.part_of(i)] for i in range(spec.num_keypoints)]
    point_radius = [radius if spec.part_of(i) in ("body", "foot") else small for i in range(spec.num_keypoints)]

    for n, person in enumerate(kpts):
        ok = np.isfinite(person).all(axis=1) & (person[:, 2] >= score_thr) & (person[:, 2] > 0)
        pts = _to_cv(np.where(ok[:, None], person[:, :2], 0.0))
        for (a, b), color in zip(edges, edge_colors):
            if ok[a] and ok[b]:
                cv2.line(out, tuple(pts[a]), tuple(pts[b]), color, thickness, cv2.LINE_AA, _SHIFT)
        for i in np.flatnonzero(ok):
            cv2.circle(out, tuple(pts[i]), point_radius[i] * _ONE, point_colors[i], -1, cv2.LINE_AA, _SHIFT)
        if part_boxes is not None:
            for j, part in enumerate(BOX_PARTS):
                box = np.asarray(part_boxes[n][j], dtype=np.float64)
                if box.shape[0] == 5 and box[4] < score_thr:
                    continue
                if not np.isfinite(box[:4]).all() or box[2] <= box[0] or box[3] <= box[1]:
                    continue
                p = _to_cv(box[:4].reshape(2, 2))
                cv2.rectangle(out, tuple(p[0]), tuple(p[1]), PART_COLORS[part], thickness, cv2.LINE_AA, _SHIFT)
        anchor = None
        if person_boxes is not None:
            box = np.asarray(person_boxes[n], dtype=np.float64)
            if np.isfinite(box).all():
                p = _to_cv(box[:4].reshape(2, 2))
                cv2.rectangle(out, tuple(p[0]), tuple(p[1]), PERSON_BOX_COLOR, thickness, cv2.LINE_AA, _SHIFT)
                anchor = (int(box[0]), int(box[1]) - 4)
        if labels is not None:
            if anchor is None and ok.any():
                first = person[np.flatnonzero(ok)[0], :2]
                anchor = (int(first[0]), int(first[1]) - 4)
            if anchor is not None:
                cv2.putText(out, str(labels[n]), anchor, cv2.FONT_HERSHEY_SIMPLEX, 0.4 * max(scale, 1.0),
                            PERSON_BOX_COLOR, max(1, thickness // 2), cv2.LINE_AA)
    return out


def draw_results(
    rows: Iterable[Mapping[str, Any]],
    image_path: Callable[[int], str | os.PathLike],
    max_images: int,
    score_thr: float = 0.3,
) -> list[tuple[int, np.ndarray]]:
    """Results rows drawn on their images with :func:`draw_wholebody`.

    Args:
        rows: COCO-WholeBody results rows (image px), any number per image.
        image_path: image id -> the image file.
        max_images: draw the first this many image ids (ascending).
        score_thr: as in :func:`draw_wholebody` (part boxes are drawn with their ``*_box_score``).
    Returns:
        ``(image_id, (H, W, 3) uint8 RGB)`` pairs in image id order; an image that cannot be read is
        logged and left out.
    """
    from wholebody.images import ImageReadError, read_image
    from wholebody.models.postprocess import rows_to_arrays  # rows <-> arrays: the results-rows contract

    by_image: dict[int, list[Mapping[str, Any]]] = {}
    for r in rows:
        by_image.setdefault(int(r["image_id"]), []).append(r)
    drawn = []
    for image_id in sorted(by_image)[:max_images]:
        path = image_path(image_id)
        try:
            img = read_image(path)  # the stored pixel frame, as the rows' coordinates
        except ImageReadError as e:
            log.warning("cannot draw results on %s; skipped", e)
            continue
        kpts, boxes = rows_to_arrays(by_image[image_id])
        drawn.append((image_id, draw_wholebody(img[:, :, ::-1], kpts, boxes, score_thr=score_thr)))
    return drawn


def image_grid(images: Sequence[np.ndarray], columns: int = 4, pad: int = 2) -> np.ndarray:
    """Tile (H, W, 3) uint8 images (resized to the first one's size) into one (rows*H, cols*W, 3) image."""
    if not images:
        raise ValueError("image_grid needs at least one image")
    h, w = images[0].shape[:2]
    cols = min(columns, len(images))
    rows = -(-len(images) // cols)
    grid = np.zeros((rows * (h + pad) - pad, cols * (w + pad) - pad, 3), np.uint8)
    for i, img in enumerate(images):
        if img.shape[:2] != (h, w):
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        r, c = divmod(i, cols)
        grid[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = img
    return grid
