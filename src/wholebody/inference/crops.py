"""Person crops for the network, made exactly as validation makes them: person boxes checked and clipped
to the image (:func:`check_boxes`), then each box grown to the input aspect ratio and by ``padding`` and
cut out with one affine warp (:func:`person_crops`; the data pipeline's functions).

Used by :class:`~wholebody.inference.estimator.WholeBodyEstimator` and by the export's check crops
(:func:`wholebody.inference.export.check_crops`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from wholebody.data.dataset import warp_to_rgb
from wholebody.geometry import affine_matrix, box_to_center_size


def check_boxes(boxes: Any, image_size: tuple[int, int]) -> np.ndarray:
    """Person boxes (N, 4) xyxy image px, clipped to the ``(w, h)`` image as the data loaders clip them.

    Raises ``ValueError`` naming the box for a wrong shape, a non-finite value, or no area inside the image.
    """
    b = np.asarray(boxes, dtype=np.float64)
    if b.size == 0:
        return np.zeros((0, 4))
    if b.ndim == 1 and b.shape[0] == 4:
        b = b[None]
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes must be (N, 4) xyxy image px, got shape {b.shape}")
    if not np.isfinite(b).all():
        raise ValueError(f"box {int(np.argmax(~np.isfinite(b).all(1)))} has a non-finite coordinate")
    w, h = image_size
    c = np.clip(b, 0.0, [w, h, w, h])
    bad = (c[:, 2] <= c[:, 0]) | (c[:, 3] <= c[:, 1])
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"box {i} {b[i].tolist()} (xyxy) has no area inside the {w}x{h} image")
    return c


def person_crops(
    image: np.ndarray, boxes_img: np.ndarray, input_size: Sequence[int], padding: float = 1.25, bgr: bool = False
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Top-down crops of persons, made as ``TopDownDataset`` makes validation samples.

    Args:
        image: (H, W, 3) uint8, RGB (or BGR with ``bgr=True``).
        boxes_img: (N, 4) xyxy image px (already clipped, see :func:`check_boxes`).
        input_size: (W, H) of the crops.
    Returns:
        crops (N, H, W, 3) uint8 RGB and the meta that :func:`~wholebody.models.postprocess.to_image`
        inverts: ``center`` (N, 2), ``size`` (N, 2) image px, ``rotation`` (N,) zeros, ``flipped`` (N,) False.
    """
    w, h = int(input_size[0]), int(input_size[1])
    n = len(boxes_img)
    center, size = box_to_center_size(boxes_img, w / h, padding)
    crops = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        crop = warp_to_rgb(image, affine_matrix(center[i], size[i], 0.0, (w, h)), (w, h))
        # the warp helper reads BGR and swaps to RGB; an RGB image comes out swapped, so swap it back
        crops[i] = crop if bgr else crop[:, :, ::-1]
    meta = {"center": center.reshape(n, 2), "size": size.reshape(n, 2), "rotation": np.zeros(n),
            "flipped": np.zeros(n, bool)}
    return crops, meta


__all__ = ["check_boxes", "person_crops"]
