"""Object keypoint similarity (OKS) between detections and ground truth, vectorised over pairs.

For a detection d and a ground truth g with K keypoints, sigmas ``s`` and ``area`` (the whole
person's annotated segmentation area, for every part)::

    e_k = (dx_k^2 + dy_k^2) / (2 s_k)^2 / (area + eps) / 2
    OKS = mean over the keypoints labelled in g (v_k > 0) of exp(-e_k)

When g has no labelled keypoint, ``dx``/``dy`` are instead each detected keypoint's distance
outside g's box grown by one box width/height on every side (``[x - w, x + 2w] x [y - h, y + 2h]``)
and the mean runs over all K keypoints. All coordinates are image pixels.
"""

from __future__ import annotations

import numpy as np

_EPS = np.spacing(1)


def oks_pairs(
    dt_xy: np.ndarray,
    gt_kpts: np.ndarray,
    gt_area: np.ndarray,
    gt_bbox: np.ndarray,
    sigmas: np.ndarray,
    dt_rows: np.ndarray,
    gt_rows: np.ndarray,
    below: float = 0.0,
    chunk: int = 4096,
) -> np.ndarray:
    """OKS of the pairs ``(dt_rows[p], gt_rows[p])``.

    Args:
        dt_xy: (D, K, 2+) detected keypoints, image px (extra columns ignored).
        gt_kpts: (G, K, 3) ground-truth keypoints x, y, visibility.
        gt_area: (G,) ground-truth areas.
        gt_bbox: (G, 4) ground-truth boxes, xywh.
        sigmas: (K,) per-keypoint sigmas.
        dt_rows, gt_rows: (P,) int row indices.
        below: pairs whose OKS is provably below this value (the detection's keypoint box is too
            far from the labelled ground-truth keypoints) are not computed and reported as 0.
            Matching at thresholds >= ``below`` is unaffected. 0 computes every pair.
        chunk: pairs per block (bounds the (chunk, K) temporaries).

    Returns:
        (P,) float64 OKS.
    """
    P = len(dt_rows)
    out = np.zeros(P)
    if P == 0:
        return out
    K = len(sigmas)
    var = (np.asarray(sigmas, np.float64) * 2) ** 2
    dx_all = np.ascontiguousarray(dt_xy[:, :, 0], dtype=np.float64)
    dy_all = np.ascontiguousarray(dt_xy[:, :, 1], dtype=np.float64)
    gx_all = np.ascontiguousarray(gt_kpts[:, :, 0], dtype=np.float64)
    gy_all = np.ascontiguousarray(gt_kpts[:, :, 1], dtype=np.float64)
    lab_all = gt_kpts[:, :, 2] > 0
    k1_all = lab_all.sum(axis=1)
    todo = np.arange(P)
    if below > 0:
        far = _provably_below(
            dx_all,
            dy_all,
            gx_all,
            gy_all,
            lab_all,
            k1_all,
            gt_bbox,
            gt_area,
            var.max(),
            below,
            dt_rows,
            gt_rows,
        )
        todo = todo[~far]
    for a in range(0, len(todo), chunk):
        sel = todo[a : a + chunk]
        di, gi = dt_rows[sel], gt_rows[sel]
        xd, yd = dx_all[di], dy_all[di]
        labelled = lab_all[gi]
        k1 = k1_all[gi]
        dx = xd - gx_all[gi]
        dy = yd - gy_all[gi]
        empty = k1 == 0
        if empty.any():
            bb = gt_bbox[gi[empty]]
            x0, x1 = bb[:, 0] - bb[:, 2], bb[:, 0] + bb[:, 2] * 2
            y0, y1 = bb[:, 1] - bb[:, 3], bb[:, 1] + bb[:, 3] * 2
            xe, ye = xd[empty], yd[empty]
            dx[empty] = np.maximum(0, x0[:, None] - xe) + np.maximum(0, xe - x1[:, None])
            dy[empty] = np.maximum(0, y0[:, None] - ye) + np.maximum(0, ye - y1[:, None])
            labelled[empty] = True
        e = (dx**2 + dy**2) / var / (gt_area[gi][:, None] + _EPS) / 2
        terms = np.exp(-e, out=e)
        terms[~labelled] = 0.0
        out[sel] = terms.sum(axis=1) / np.where(empty, K, k1)
    return out


def _provably_below(
    dx: np.ndarray,
    dy: np.ndarray,
    gx: np.ndarray,
    gy: np.ndarray,
    lab: np.ndarray,
    k1: np.ndarray,
    bbox: np.ndarray,
    area: np.ndarray,
    var_max: float,
    below: float,
    dt_rows: np.ndarray,
    gt_rows: np.ndarray,
) -> np.ndarray:
    """(P,) bool: OKS < ``below`` for sure.

    Every term is at most exp(-gap^2 / (2 var_max area)), where gap is the distance between the
    box of the detection's keypoints and the box of the labelled ground-truth keypoints (for a
    ground truth without labelled keypoints: its grown box, outside which distances are measured).
    """
    gx0 = np.min(gx, axis=1, where=lab, initial=np.inf)
    gx1 = np.max(gx, axis=1, where=lab, initial=-np.inf)
    gy0 = np.min(gy, axis=1, where=lab, initial=np.inf)
    gy1 = np.max(gy, axis=1, where=lab, initial=-np.inf)
    empty = k1 == 0
    x, y, w, h = bbox[:, 0], bbox[:, 1], bbox[:, 2], bbox[:, 3]
    gx0 = np.where(empty, x - w, gx0)
    gx1 = np.where(empty, x + w * 2, gx1)
    gy0 = np.where(empty, y - h, gy0)
    gy1 = np.where(empty, y + h * 2, gy1)
    dx0, dx1, dy0, dy1 = dx.min(axis=1), dx.max(axis=1), dy.min(axis=1), dy.max(axis=1)
    d, g = dt_rows, gt_rows
    gapx = np.maximum(0.0, np.maximum(gx0[g] - dx1[d], dx0[d] - gx1[g]))
    gapy = np.maximum(0.0, np.maximum(gy0[g] - dy1[d], dy0[d] - gy1[g]))
    gap2 = gapx * gapx + gapy * gapy
    a = area[g]
    # gap^2 / (2 var_max a) > -log(below), with a relative margin far above rounding error
    limit = -np.log(below) * (1 + 1e-6) * 2 * var_max * (a + _EPS)
    return (a > 0) & (gap2 > limit) & np.isfinite(gap2)


def keypoint_similarity(
    dt_xy: np.ndarray, gt_xy: np.ndarray, area: np.ndarray, sigmas: np.ndarray
) -> np.ndarray:
    """Per-keypoint similarity ``exp(-e_k)`` (no averaging, no visibility), broadcasting.

    Args:
        dt_xy, gt_xy: (..., K, 2) image px.
        area: (...) areas.
        sigmas: (K,).

    Returns:
        (..., K) values in [0, 1].
    """
    var = (np.asarray(sigmas, np.float64) * 2) ** 2
    d2 = ((dt_xy - gt_xy) ** 2).sum(axis=-1)
    return np.exp(-d2 / var / (np.asarray(area)[..., None] + _EPS) / 2)


def distance_at_similarity(ks: np.ndarray, area: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """Distance (px) at which a keypoint has similarity ``ks`` (inverse of :func:`keypoint_similarity`).

    Args:
        ks: (..., K) similarities in (0, 1].
        area: (...) areas.
        sigmas: (K,).
    """
    var = (np.asarray(sigmas, np.float64) * 2) ** 2
    return np.sqrt(-np.log(ks) * 2 * var * (np.asarray(area)[..., None] + _EPS))
