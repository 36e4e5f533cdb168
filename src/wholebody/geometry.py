"""Pure geometry: boxes, the top-down affine warp, flips.

Pixel convention (every frame: image, crop, heatmap, RoI)
---------------------------------------------------------
Coordinates are continuous; pixel ``(i, j)`` (column ``i``, row ``j``) is the unit square
``[i, i+1) x [j, j+1)`` and its centre is ``(i + 0.5, j + 0.5)``. An image ``W`` pixels wide spans
``[0, W]``. Consequences used throughout the package:

* changing resolution by a stride is a multiplication (``x_heatmap = x_crop / stride``);
* a horizontal flip of a ``W``-wide frame is ``x' = W - x``; a box mirrors as
  ``(x1', x2') = (W - x2, W - x1)``;
* ``torchvision.ops.roi_align(..., aligned=True)`` samples exactly the region a box names.

Files are in COCO's conventions, converted where they are read and written (:func:`keypoints_from_file`,
:func:`keypoints_to_file`): a COCO keypoint ``(x, y)`` is a pixel index, the centre of pixel ``x`` being
``x`` itself (body keypoints are integers), so it is ``(x + 0.5, y + 0.5)`` here; COCO boxes (``bbox``,
and COCO-WholeBody's ``face_box`` / ``lefthand_box`` / ``righthand_box``, drawn as regions) are already
continuous, ``[x, x + w]`` covering the pixels they enclose, and are not shifted. Boxes inside the package
are ``xyxy`` floats in the frame named by the variable (``boxes_img``, ``boxes_crop``); files hold COCO
``xywh``.

All functions are vectorised over leading batch dimensions and use float64 numpy arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

ArrayLike = np.ndarray | Sequence[float]


# ----------------------------------------------------------------------------- files
#: What a file's keypoint coordinate adds to become this package's (COCO's pixel centres are integers).
FILE_KEYPOINT_OFFSET = 0.5


def keypoints_from_file(keypoints: ArrayLike, labelled_only: bool = True) -> np.ndarray:
    """(..., 3) keypoints as a COCO file holds them (``x, y`` pixel indices, centre of pixel ``i`` at ``i``;
    third channel a visibility or a score) -> the package's pixel convention (centre at ``i + 0.5``).

    ``labelled_only`` (annotations): keypoints whose third channel is 0 (unlabelled, coordinates
    conventionally 0) are left as they are. ``False`` (results files): every keypoint is a prediction
    with a position, whatever its score, and is shifted."""
    k = np.array(keypoints, dtype=np.float64)
    k[..., :2] += np.where(k[..., 2:3] > 0, FILE_KEYPOINT_OFFSET, 0.0) if labelled_only else FILE_KEYPOINT_OFFSET
    return k


def keypoints_to_file(keypoints: ArrayLike, labelled_only: bool = True) -> np.ndarray:
    """The inverse of :func:`keypoints_from_file` (same ``labelled_only``): (..., 3) package px -> a COCO
    file's pixel indices."""
    k = np.array(keypoints, dtype=np.float64)
    k[..., :2] -= np.where(k[..., 2:3] > 0, FILE_KEYPOINT_OFFSET, 0.0) if labelled_only else FILE_KEYPOINT_OFFSET
    return k


# ----------------------------------------------------------------------------- boxes
def xywh_to_xyxy(boxes: ArrayLike) -> np.ndarray:
    """(..., 4) ``x, y, w, h`` -> (..., 4) ``x1, y1, x2, y2``."""
    b = np.asarray(boxes, dtype=np.float64)
    return np.concatenate([b[..., :2], b[..., :2] + b[..., 2:4]], axis=-1)


def xyxy_to_xywh(boxes: ArrayLike) -> np.ndarray:
    """(..., 4) ``x1, y1, x2, y2`` -> (..., 4) ``x, y, w, h``."""
    b = np.asarray(boxes, dtype=np.float64)
    return np.concatenate([b[..., :2], b[..., 2:4] - b[..., :2]], axis=-1)


def box_to_center_size(boxes_xyxy: ArrayLike, aspect_ratio: float, padding: float = 1.25) -> tuple[np.ndarray, np.ndarray]:
    """Top-down crop region of a person box.

    The box is grown (never shrunk) to the input aspect ratio ``aspect_ratio = width / height``
    about its centre, then scaled by ``padding``.

    Args:
        boxes_xyxy: (..., 4) boxes in image px.
    Returns:
        center (..., 2) and size (..., 2) = (width, height), image px.
    """
    b = np.asarray(boxes_xyxy, dtype=np.float64)
    center = (b[..., :2] + b[..., 2:4]) / 2.0
    w = np.maximum(b[..., 2] - b[..., 0], 0.0)
    h = np.maximum(b[..., 3] - b[..., 1], 0.0)
    w2 = np.maximum(w, h * aspect_ratio)
    h2 = np.maximum(h, w / aspect_ratio)
    size = np.stack([w2, h2], axis=-1) * padding
    return center, size


def keypoints_bbox(points: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimal ``xyxy`` rectangle of the visible points.

    Args:
        points: (..., K, 2); visible: (..., K) bool.
    Returns:
        boxes (..., 4) (zeros where nothing is visible) and ok (...,) bool.
    """
    v = np.asarray(visible, bool)
    big = np.where(v[..., None], points, np.inf)
    small = np.where(v[..., None], points, -np.inf)
    lo, hi = big.min(axis=-2), small.max(axis=-2)
    ok = v.any(axis=-1)
    boxes = np.where(ok[..., None], np.concatenate([lo, hi], axis=-1), 0.0)
    return boxes, ok


# ----------------------------------------------------------------------------- affine
def affine_matrix(
    center: ArrayLike,
    size: ArrayLike,
    rotation: ArrayLike | float,
    output_size: tuple[int, int],
    flip: ArrayLike | bool = False,
) -> np.ndarray:
    """The image -> crop affine of a top-down sample.

    The region of ``size`` (w, h) around ``center``, optionally mirrored about its vertical axis and
    rotated, is mapped onto the crop ``output_size = (W, H)``:

        crop = S @ R @ F @ (img - center) + (W/2, H/2)

    with ``F = diag(-1, 1)`` when ``flip``, ``S = diag(W / w, H / h)`` and ``R`` a rotation such that a
    positive ``rotation`` (degrees) shows the content turned counter-clockwise in the crop, as seen
    on screen (y points down).

    Args:
        center: (..., 2) image px; size: (..., 2) image px; rotation: (...,) degrees;
        output_size: (W, H) of the crop; flip: (...,) bool.
    Returns:
        (..., 2, 3) float64 matrices mapping image px -> crop px (pixel convention above).
    """
    c = np.asarray(center, dtype=np.float64)
    s = np.asarray(size, dtype=np.float64)
    batch = np.broadcast_shapes(c.shape[:-1], s.shape[:-1], np.shape(rotation), np.shape(flip))
    c = np.broadcast_to(c, batch + (2,))
    s = np.broadcast_to(s, batch + (2,))
    r = np.deg2rad(np.broadcast_to(np.asarray(rotation, dtype=np.float64), batch))
    f = np.where(np.broadcast_to(np.asarray(flip, dtype=bool), batch), -1.0, 1.0)
    out_w, out_h = float(output_size[0]), float(output_size[1])
    sx, sy = out_w / s[..., 0], out_h / s[..., 1]
    cos, sin = np.cos(r), np.sin(r)
    # y points down, so a counter-clockwise turn of the content as seen is R = [[c, s], [-s, c]]
    lin = np.empty(batch + (2, 2))
    lin[..., 0, 0] = sx * cos * f
    lin[..., 0, 1] = sx * sin
    lin[..., 1, 0] = -sy * sin * f
    lin[..., 1, 1] = sy * cos
    m = np.empty(batch + (2, 3))
    m[..., :, :2] = lin
    m[..., :, 2] = np.array([out_w / 2.0, out_h / 2.0]) - np.einsum("...ij,...j->...i", lin, c)
    return m


def invert_affine(m: np.ndarray) -> np.ndarray:
    """(..., 2, 3) -> (..., 2, 3) inverse affine."""
    m = np.asarray(m, dtype=np.float64)
    lin_inv = np.linalg.inv(m[..., :2])
    out = np.empty_like(m)
    out[..., :2] = lin_inv
    out[..., 2] = -np.einsum("...ij,...j->...i", lin_inv, m[..., 2])
    return out


def apply_affine(m: np.ndarray, points: ArrayLike) -> np.ndarray:
    """Map points: m (..., 2, 3), points (..., K, 2) -> (..., K, 2)."""
    p = np.asarray(points, dtype=np.float64)
    return np.einsum("...ij,...kj->...ki", m[..., :2], p) + m[..., None, :, 2]


def box_corners(boxes_xyxy: np.ndarray) -> np.ndarray:
    """(..., 4) xyxy -> (..., 4, 2) corners: (x1,y1), (x2,y1), (x2,y2), (x1,y2)."""
    b = np.asarray(boxes_xyxy, dtype=np.float64)
    x1, y1, x2, y2 = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return np.stack([np.stack([x1, y1], -1), np.stack([x2, y1], -1), np.stack([x2, y2], -1), np.stack([x1, y2], -1)], -2)


def transform_boxes(m: np.ndarray, boxes_xyxy: ArrayLike) -> np.ndarray:
    """Axis-aligned bounding box of each warped box.

    Args:
        m: (..., 2, 3) affine; boxes_xyxy: (..., N, 4) in the source frame.
    Returns:
        (..., N, 4) xyxy in the destination frame. Exact for rotations by multiples of 90 degrees
        and for flips (a mirrored box keeps its width: ``x1' = W - x2``).
    """
    corners = box_corners(np.asarray(boxes_xyxy, dtype=np.float64))  # (..., N, 4, 2)
    shape = corners.shape
    warped = apply_affine(m, corners.reshape(shape[:-3] + (-1, 2))).reshape(shape)
    return np.concatenate([warped.min(axis=-2), warped.max(axis=-2)], axis=-1)


def cv2_matrix(m: np.ndarray) -> np.ndarray:
    """Convert a (2, 3) affine in this package's convention to OpenCV's (centres at integers)."""
    out = np.array(m, dtype=np.float64, copy=True)
    # p_idx = p - 0.5 on both sides: t' = t + 0.5 * (A @ 1) - 0.5
    out[:, 2] = m[:, 2] + 0.5 * m[:, :2].sum(axis=1) - 0.5
    return out


def warp_image(
    image: np.ndarray,
    m: np.ndarray,
    output_size: tuple[int, int],
    border_value: float | tuple[float, ...] = 0,
    interpolation: int = cv2.INTER_LINEAR,
) -> np.ndarray:
    """Warp an (H, W[, C]) image with the (2, 3) image -> crop affine ``m`` into (H_out, W_out[, C]).

    ``output_size = (W_out, H_out)``. A point at ``p`` in the image lands at ``apply_affine(m, p)``.
    """
    return cv2.warpAffine(
        image,
        cv2_matrix(m),
        (int(output_size[0]), int(output_size[1])),
        flags=interpolation,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=border_value,
    )


# ----------------------------------------------------------------------------- flips
def flip_points_x(points: ArrayLike, width: float) -> np.ndarray:
    """Mirror (..., 2) points in a ``width``-wide frame: ``x' = width - x``."""
    p = np.array(points, dtype=np.float64, copy=True)
    p[..., 0] = width - p[..., 0]
    return p


def flip_boxes_x(boxes_xyxy: ArrayLike, width: float) -> np.ndarray:
    """Mirror (..., 4) xyxy boxes in a ``width``-wide frame: ``x1' = width - x2``, ``x2' = width - x1``."""
    b = np.asarray(boxes_xyxy, dtype=np.float64)
    return np.stack([width - b[..., 2], b[..., 1], width - b[..., 0], b[..., 3]], axis=-1)


def flip_keypoints(keypoints: ArrayLike, width: float, flip_index: np.ndarray) -> np.ndarray:
    """Mirror a keypoint layout: (..., K, C) with x in channel 0.

    Positions mirror (``x' = width - x``) and left/right identities swap (``flip_index`` of the spec),
    so the result is again a valid layout of the mirrored person. Applying it twice is the identity.
    """
    k = np.asarray(keypoints, dtype=np.float64)[..., flip_index, :].copy()
    k[..., 0] = width - k[..., 0]
    return k
