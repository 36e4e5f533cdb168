"""Face and hand crop metrics for the cross-dataset tasks: EPE and NME, as pure functions.

All arrays are in one pixel frame (image or crop px, the same for prediction and ground truth):
``pred`` and ``gt`` are (N, K, 2), ``mask`` (N, K) bool marks the keypoints that count.

* EPE: mean Euclidean distance in px over the counted keypoints.
* NME: mean of distance / normaliser over the counted keypoints of samples whose normaliser is
  positive (mean over keypoints, not over samples).
  - face: normaliser = inter-ocular distance, between the outer eye corners (68-landmark
    points 36 and 45, 0-based: ``face-36`` and ``face-45`` of the KeypointSpec);
  - hand: normaliser = ``sqrt(w * h)`` of the hand box (xywh).

Empty selections give ``nan``.
"""

from __future__ import annotations

import numpy as np

from ..keypoints import COCO_WHOLEBODY, KeypointSpec

#: Names of the outer eye corners in the 68-landmark face layout (inter-ocular normalisation).
OUTER_EYE_CORNERS: tuple[str, str] = ("face-36", "face-45")


def _check(
    pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pred = np.asarray(pred, np.float64)
    gt = np.asarray(gt, np.float64)
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[-1] != 2:
        raise ValueError(f"pred and gt must both be (N, K, 2); got {pred.shape} and {gt.shape}")
    m = np.ones(pred.shape[:2], bool) if mask is None else np.asarray(mask, bool)
    if m.shape != pred.shape[:2]:
        raise ValueError(f"mask must be (N, K) = {pred.shape[:2]}; got {m.shape}")
    return pred, gt, m


def endpoint_errors(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(N, K) Euclidean distances (px)."""
    d = np.asarray(pred, np.float64) - np.asarray(gt, np.float64)
    return np.hypot(d[..., 0], d[..., 1])


def epe(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean end-point error (px) over ``mask``."""
    pred, gt, m = _check(pred, gt, mask)
    if not m.any():
        return float("nan")
    return float(endpoint_errors(pred, gt)[m].mean())


def nme(pred: np.ndarray, gt: np.ndarray, norm: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Normalised mean error: mean of ``distance / norm[n]`` over ``mask`` (samples with norm > 0).

    Args:
        norm: (N,) per-sample normaliser (px).
    """
    pred, gt, m = _check(pred, gt, mask)
    norm = np.asarray(norm, np.float64).reshape(-1)
    if norm.shape != (pred.shape[0],):
        raise ValueError(f"norm must be (N,) = ({pred.shape[0]},); got {norm.shape}")
    m = m & (norm > 0)[:, None]
    if not m.any():
        return float("nan")
    ratio = endpoint_errors(pred, gt) / np.where(norm > 0, norm, 1.0)[:, None]
    return float(ratio[m].mean())


def _outer_eye_corners(spec: KeypointSpec) -> tuple[int, int]:
    """Indices of the outer eye corners within the face part."""
    start = spec.slice("face").start
    a, b = (spec.index(n) - start for n in OUTER_EYE_CORNERS)
    return a, b


def interocular_distance(face_gt: np.ndarray, spec: KeypointSpec = COCO_WHOLEBODY) -> np.ndarray:
    """(N,) distance between the outer eye corners of (N, 68, 2+) face landmarks (face-part order)."""
    a, b = _outer_eye_corners(spec)
    f = np.asarray(face_gt, np.float64)
    return np.hypot(f[:, a, 0] - f[:, b, 0], f[:, a, 1] - f[:, b, 1])


def face_nme(
    pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None, spec: KeypointSpec = COCO_WHOLEBODY
) -> float:
    """NME of (N, 68, 2) face landmarks normalised by the ground truth's inter-ocular distance.

    With a ``mask``, a face whose two outer eye corners are not both counted has no normaliser and
    is left out (an unlabelled corner has no position to measure from)."""
    norm = interocular_distance(gt, spec)
    if mask is not None:
        a, b = _outer_eye_corners(spec)
        m = np.asarray(mask, bool)
        norm = np.where(m[:, a] & m[:, b], norm, 0.0)
    return nme(pred, gt, norm, mask)


def hand_nme(
    pred: np.ndarray, gt: np.ndarray, boxes_xywh: np.ndarray, mask: np.ndarray | None = None
) -> float:
    """NME of (N, 21, 2) hand keypoints normalised by ``sqrt(w * h)`` of the (N, 4) hand boxes."""
    b = np.asarray(boxes_xywh, np.float64).reshape(-1, 4)
    return nme(pred, gt, np.sqrt(np.clip(b[:, 2], 0, None) * np.clip(b[:, 3], 0, None)), mask)
