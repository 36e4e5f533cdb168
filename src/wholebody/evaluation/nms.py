"""OKS non-maximum suppression of the poses of one image (numpy only).

Top-down estimation on detected persons predicts one pose per person box; a detector that finds a
person twice (two boxes a few pixels apart) yields two near-identical poses, and the lower-scoring one
is a false positive in the evaluation. OKS-NMS removes it, as mmpose's COCO-WholeBody metric does
before evaluating (``nms_mode="oks_nms"``, ``nms_thr=0.9``):

* the similarity of two poses ``a`` and ``b`` of one image is the OKS over all K keypoints (the 133
  whole-body sigmas), whatever their scores:
  ``oks(a, b) = mean_k exp(-|x_ak - x_bk|^2 / (2 * s * (2 sigma_k)^2))`` with ``s = (area_a + area_b) / 2``
  (plus machine epsilon, so that two identical poses of area 0 are similar);
* ``area`` is the area of the person's crop region in image px^2 (the detection box grown to the
  input aspect ratio and by the padding: mmpose's ``bbox_scales`` product);
* greedily, in order of decreasing score (the whole-body score, box score x mean of the keypoint
  scores above 0.2), a pose is kept unless its OKS with an already kept pose is above ``thr``
  (``oks > thr`` suppresses, ``oks == thr`` keeps). Among equal scores the earlier pose goes first.

The pairwise OKS of one image is one (N, N, K) array expression; the greedy pass over the N poses is
the only Python loop.
"""

from __future__ import annotations

import numpy as np

from .oks import keypoint_similarity


def oks_matrix(keypoints: np.ndarray, areas: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """Pairwise OKS of the poses of one image.

    Args:
        keypoints: (N, K, 2+) x, y in image px (any further column, e.g. the score, is ignored).
        areas: (N,) each pose's area, image px^2.
        sigmas: (K,) per-keypoint OKS sigmas.
    Returns:
        (N, N) float64, symmetric, 1 on the diagonal.
    """
    xy = np.asarray(keypoints, dtype=np.float64)[..., :2]
    n, k = xy.shape[:2]
    sig = np.asarray(sigmas, dtype=np.float64).reshape(-1)
    if sig.shape[0] != k:
        raise ValueError(f"oks_matrix: {sig.shape[0]} sigmas for {k} keypoints")
    a = np.asarray(areas, dtype=np.float64).reshape(n)
    if not k:
        return np.zeros((n, n))
    scale = (a[:, None] + a[None]) / 2  # (N, N): the pair's mean area
    return keypoint_similarity(xy[:, None], xy[None], scale, sig).mean(-1)  # the evaluator's per-keypoint rule


def oks_nms(keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray, sigmas: np.ndarray,
            thr: float = 0.9) -> np.ndarray:
    """Indices of the poses of one image that OKS-NMS keeps (module docstring), by decreasing score.

    Args:
        keypoints: (N, K, 2+) image px.
        scores: (N,) the order of the greedy pass (higher first).
        areas: (N,) image px^2.
        sigmas: (K,).
        thr: a pose whose OKS with a kept, higher-scoring one is above it is removed.
    Returns:
        (M,) int64 indices into the N poses, M <= N.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    n = s.shape[0]
    if n <= 1:
        return np.arange(n, dtype=np.int64)
    over = oks_matrix(keypoints, areas, sigmas) > thr
    order = np.argsort(-s, kind="stable")
    removed = np.zeros(n, bool)
    keep = []
    for i in order:
        if removed[i]:
            continue
        keep.append(i)
        removed |= over[i]
    return np.asarray(keep, dtype=np.int64)


def oks_nms_per_image(image_ids: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray,
                      sigmas: np.ndarray, thr: float = 0.9, candidates: np.ndarray | None = None) -> np.ndarray:
    """OKS-NMS within each image of a set of poses: which of them are kept.

    Args:
        image_ids: (N,) the image of each pose (any integer key).
        keypoints, scores, areas, sigmas, thr: as in :func:`oks_nms`.
        candidates: (N,) bool, the poses taking part (default all); the others are kept and never
            suppress anything (e.g. poses of ground-truth persons).
    Returns:
        (N,) bool: True for the poses kept.
    """
    img = np.asarray(image_ids).reshape(-1)
    n = img.shape[0]
    keep = np.ones(n, bool)
    cand = np.ones(n, bool) if candidates is None else np.asarray(candidates, bool).reshape(n)
    idx = np.flatnonzero(cand)
    if len(idx) < 2:
        return keep
    kp = np.asarray(keypoints)
    s, a = np.asarray(scores).reshape(n), np.asarray(areas).reshape(n)
    order = idx[np.argsort(img[idx], kind="stable")]
    bounds = np.flatnonzero(np.diff(img[order])) + 1
    for group in np.split(order, bounds):
        if len(group) < 2:
            continue
        kept = oks_nms(kp[group], s[group], a[group], sigmas, thr)
        keep[group] = False
        keep[group[kept]] = True
    return keep


def keypoint_extent_area(keypoints: np.ndarray) -> np.ndarray:
    """(N, K, 2+) -> (N,) the area of the keypoints' bounding rectangle, all K of them (the area
    mmpose falls back to when a pose has no crop region)."""
    xy = np.asarray(keypoints, dtype=np.float64)[..., :2]
    if xy.shape[1] == 0:
        return np.zeros(xy.shape[0])
    span = xy.max(axis=1) - xy.min(axis=1)
    return span[:, 0] * span[:, 1]


__all__ = ["keypoint_extent_area", "oks_matrix", "oks_nms", "oks_nms_per_image"]
