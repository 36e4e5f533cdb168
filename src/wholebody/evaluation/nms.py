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

Memory: the OKS of a pair is computed for blocks of pairs of at most ``BLOCK_VALUES`` (pair, keypoint)
values, so the temporaries stay under about 64 MB whatever N (a single (N, N, K, 2) expression needed
2.4 GB for 600 poses of one image and 7.9 GiB for 2,000). The greedy pass computes only the rows it
uses: the OKS of each kept pose with the poses still undecided, never the whole (N, N) matrix. Each
OKS value is the same float64 expression as in the single-array form, so the result is bit-identical.
"""

from __future__ import annotations

import numpy as np

from .oks import _EPS

#: (pair, keypoint) values per block of the OKS computation; a block's float64 temporaries take 16 bytes
#: per value (the squared x and y differences, the rest done in place), so 2 M values keep them near 32 MB
#: (under 64 MB with the block's index and area copies and numpy's own buffers).
BLOCK_VALUES = 1 << 21


def _prepare(keypoints: np.ndarray, areas: np.ndarray, sigmas: np.ndarray):
    """(x, y, a, var): (N, K) float64 x and y in image px, (N,) float64 areas, (K,) ``(2 sigma)^2``
    (the number of sigmas checked)."""
    kp = np.asarray(keypoints, dtype=np.float64)
    n, k = kp.shape[:2]
    sig = np.asarray(sigmas, dtype=np.float64).reshape(-1)
    if sig.shape[0] != k:
        raise ValueError(f"oks_matrix: {sig.shape[0]} sigmas for {k} keypoints")
    x, y = np.ascontiguousarray(kp[..., 0]), np.ascontiguousarray(kp[..., 1])
    return x, y, np.asarray(areas, dtype=np.float64).reshape(n), (sig * 2) ** 2


def _pair_similarity(x: np.ndarray, y: np.ndarray, a: np.ndarray, var: np.ndarray, rows: np.ndarray,
                     cols: np.ndarray) -> np.ndarray:
    """Per-keypoint similarity of the pairs (rows x cols): :func:`wholebody.evaluation.oks.keypoint_similarity`
    with the pair's mean area, the same float64 operations in the same order, done in place (16 bytes of
    temporaries per value).

    Args:
        x, y: (N, K) float64 image px; a: (N,) areas; var: (K,) ``(2 sigma)^2``; rows: (R,); cols: (C,).
    Returns:
        (R, C, K) float64 in [0, 1].
    """
    d2 = x[rows][:, None] - x[cols][None]
    d2 *= d2
    dy = y[rows][:, None] - y[cols][None]
    dy *= dy
    d2 += dy
    del dy
    scale = (a[rows][:, None] + a[cols][None]) / 2  # (R, C): the pair's mean area
    np.negative(d2, out=d2)
    d2 /= var
    d2 /= (scale + _EPS)[..., None]
    d2 /= 2
    return np.exp(d2, out=d2)


def _oks_rows(x: np.ndarray, y: np.ndarray, a: np.ndarray, var: np.ndarray, rows: np.ndarray,
              cols: np.ndarray) -> np.ndarray:
    """OKS of the poses ``rows`` with the poses ``cols`` (index arrays into N), in blocks of at most
    :data:`BLOCK_VALUES` (pair, keypoint) values.

    Args:
        x, y, a, var: as :func:`_prepare` returns them.
        rows: (R,) int; cols: (C,) int.
    Returns:
        (R, C) float64.
    """
    k = x.shape[1]
    out = np.zeros((len(rows), len(cols)))
    if not k or not len(rows) or not len(cols):
        return out
    col_step = max(1, min(len(cols), BLOCK_VALUES // k))
    row_step = max(1, BLOCK_VALUES // (k * col_step))
    for c0 in range(0, len(cols), col_step):
        cb = cols[c0:c0 + col_step]
        for r0 in range(0, len(rows), row_step):
            rb = rows[r0:r0 + row_step]
            out[r0:r0 + len(rb), c0:c0 + len(cb)] = _pair_similarity(x, y, a, var, rb, cb).mean(-1)
    return out


def oks_matrix(keypoints: np.ndarray, areas: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """Pairwise OKS of the poses of one image (computed in blocks: temporaries under about 64 MB).

    Args:
        keypoints: (N, K, 2+) x, y in image px (any further column, e.g. the score, is ignored).
        areas: (N,) each pose's area, image px^2.
        sigmas: (K,) per-keypoint OKS sigmas.
    Returns:
        (N, N) float64, symmetric, 1 on the diagonal.
    """
    x, y, a, var = _prepare(keypoints, areas, sigmas)
    every = np.arange(x.shape[0])
    return _oks_rows(x, y, a, var, every, every)


def oks_nms(keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray, sigmas: np.ndarray,
            thr: float = 0.9) -> np.ndarray:
    """Indices of the poses of one image that OKS-NMS keeps (module docstring), by decreasing score.

    Only the OKS of each kept pose with the poses not yet decided is computed, one row at a time in
    blocks (:func:`_oks_rows`): memory O(N) plus temporaries under about 64 MB, whatever N.

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
    x, y, a, var = _prepare(keypoints, areas, sigmas)
    order = np.argsort(-s, kind="stable")
    undecided = np.ones(n, bool)
    keep = []
    for i in order:
        if not undecided[i]:
            continue
        undecided[i] = False
        keep.append(i)
        rest = np.flatnonzero(undecided)
        if len(rest):
            undecided[rest[_oks_rows(x, y, a, var, np.array([i]), rest)[0] > thr]] = False
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


__all__ = ["BLOCK_VALUES", "keypoint_extent_area", "oks_matrix", "oks_nms", "oks_nms_per_image"]
