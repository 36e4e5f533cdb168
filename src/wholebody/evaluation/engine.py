"""COCO-style matching, accumulation and summaries, vectorised with numpy.

This is the engine shared by keypoint (OKS) and box (IoU) evaluation. It reproduces the official
COCO evaluation procedure (as implemented by pycocotools / xtcocotools) to the last bit, without a
Python loop over detections:

* Detections and ground truth are grouped per (image, category). In a group the detections are
  ranked by score, highest first, ties kept in input order, and only the first ``max_dets[-1]``
  take part.
* For an area range ``[lo, hi]`` (both ends inclusive) a ground truth is *ignored* when it is
  flagged so (crowd, or nothing labelled) or its area lies outside the range.
* Matching is greedy in rank order, separately per similarity threshold ``t`` and area range: a
  detection takes, among the ground truths not yet taken (crowd ones can be taken again and again)
  whose similarity is ``>= t``, the non-ignored one of highest similarity (ties: the later one in
  input order); only when there is none, an ignored one by the same rule.
* A detection matched to an ignored ground truth is ignored; an unmatched detection whose own area
  is outside the range is ignored too.
* Accumulation (per category, area range and ``max_dets`` entry): every kept detection of every
  image, sorted by score (stable: image order, then rank), gives cumulative true/false positive
  counts; precision is made monotone and sampled at the recall thresholds (101 points); recall is
  the final recall. Both are ``-1`` where the range has no non-ignored ground truth.

Groups are processed together: ranks are a loop of at most ``max_dets[-1]`` steps, each one
vectorised over every group, threshold and area range (groups are bucketed by their number of
ground truths to keep the padding small).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

_EPS = np.spacing(1)


@dataclass(frozen=True, eq=False)
class Protocol:
    """Evaluation parameters.

    Attributes:
        iou_thrs: (T,) similarity thresholds.
        rec_thrs: (R,) recall points at which precision is sampled.
        max_dets: detections per image considered, ascending; matching uses the last.
        area_rngs: (A, 2) inclusive ``[lo, hi]`` area ranges (px^2).
        area_labels: (A,) names of the ranges.
    """

    iou_thrs: np.ndarray
    rec_thrs: np.ndarray
    max_dets: tuple[int, ...]
    area_rngs: np.ndarray
    area_labels: tuple[str, ...]

    def with_areas(self, rngs: Sequence[Sequence[float]], labels: Sequence[str]) -> Protocol:
        return Protocol(self.iou_thrs, self.rec_thrs, self.max_dets, np.asarray(rngs, float), tuple(labels))

    def with_thresholds(self, thrs: Sequence[float]) -> Protocol:
        return Protocol(
            np.asarray(thrs, float), self.rec_thrs, self.max_dets, self.area_rngs, self.area_labels
        )


_IOU_THRS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
_REC_THRS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
_BIG = 1e5**2

#: The COCO keypoint protocol (20 detections per image, areas all / medium / large).
KEYPOINT_PROTOCOL = Protocol(
    _IOU_THRS,
    _REC_THRS,
    (20,),
    np.array([[0, _BIG], [32**2, 96**2], [96**2, _BIG]], float),
    ("all", "medium", "large"),
)
#: The COCO box protocol (1/10/100 detections, areas all / small / medium / large).
BOX_PROTOCOL = Protocol(
    _IOU_THRS,
    _REC_THRS,
    (1, 10, 100),
    np.array([[0, _BIG], [0, 32**2], [32**2, 96**2], [96**2, _BIG]], float),
    ("all", "small", "medium", "large"),
)


@dataclass(frozen=True, eq=False)
class Instances:
    """What the engine needs to know of G ground truths and D detections.

    Attributes:
        gt_group / dt_group: (G,) / (D,) int64 group id ``image_index * num_categories + category``;
            the order of group ids is the image order of accumulation.
        gt_ignore: (G,) bool ignored whatever the area range (crowd, nothing labelled).
        gt_crowd: (G,) bool may be matched by any number of detections.
        gt_area / dt_area: (G,) / (D,) float64 areas tested against the area ranges.
        dt_score: (D,) float64 ranking score.
        num_categories: number of categories folded into the group ids.
    Rows are in input order, which breaks ties.
    """

    gt_group: np.ndarray
    gt_ignore: np.ndarray
    gt_crowd: np.ndarray
    gt_area: np.ndarray
    dt_group: np.ndarray
    dt_score: np.ndarray
    dt_area: np.ndarray
    num_categories: int = 1


#: similarity(dt_rows (P,), gt_rows (P,)) -> (P,) float64, rows indexing the Instances arrays.
Similarity = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True, eq=False)
class Matching:
    """Result of :func:`match` for the Dk detections kept (ranked within their group).

    Attributes:
        dt: (Dk,) int64 detection rows (into the Instances arrays), sorted by group then rank.
        rank: (Dk,) int64 rank of the detection in its group (0 = highest score).
        gt_match: (Dk, T, A) int64 matched ground-truth row, or -1.
        dt_ignore: (Dk, T, A) bool.
        gt_ignore: (G, A) bool ignore flag of each ground truth per area range.
        pairs: (dt_rows (P,), gt_rows (P,), similarity (P,)) for every kept detection and every
            ground truth of its group (a similarity function may report 0 for pairs it proves to be
            below the lowest threshold).
    """

    dt: np.ndarray
    rank: np.ndarray
    gt_match: np.ndarray
    dt_ignore: np.ndarray
    gt_ignore: np.ndarray
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray]


def _runs(sorted_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique keys of a sorted array with the start and length of each run."""
    n = len(sorted_keys)
    if n == 0:
        z = np.zeros(0, np.int64)
        return z, z, z
    first = np.ones(n, bool)
    first[1:] = sorted_keys[1:] != sorted_keys[:-1]
    starts = np.flatnonzero(first)
    return sorted_keys[starts], starts, np.diff(np.append(starts, n))


def _ragged_arange(lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(n)`` for each n in ``lengths``."""
    total = int(lengths.sum())
    starts = np.cumsum(lengths) - lengths
    return np.arange(total) - np.repeat(starts, lengths)


def _greedy(
    pair_dk: np.ndarray,
    pair_g: np.ndarray,
    sim: np.ndarray,
    rank: np.ndarray,
    n_dt: int,
    gt_ig: np.ndarray,
    gt_crowd: np.ndarray,
    thr: np.ndarray,
) -> np.ndarray:
    """Greedy matching of every threshold and area range at once: (n_dt, T, A) matched gt row or -1.

    Args:
        pair_dk, pair_g, sim: (P,) kept-detection position, gt row and similarity of each pair,
            pairs of a detection in increasing gt input order.
        rank: (n_dt,) rank of each kept detection in its group.
        gt_ig: (G, A) ignore flags; gt_crowd: (G,).
        thr: (T,) thresholds.

    Only the pairs reaching the lowest threshold are candidates. Ranks are processed in order (a
    loop of at most max_dets steps); in a step every group has at most one detection, so all of
    them are matched at once, looping over candidate slots instead of padding to the largest image.
    """
    T, A = len(thr), gt_ig.shape[1]
    out = np.full((n_dt, T, A), -1, np.int64)
    cand = np.flatnonzero(sim >= thr.min())
    if len(cand) == 0:
        return out
    cd, cg, cs = pair_dk[cand], pair_g[cand], sim[cand]
    crank = rank[cd]
    order = np.lexsort((np.arange(len(cd)), crank))  # by rank, keeping each detection's gt order
    cd, cg, cs, crank = cd[order], cg[order], cs[order], crank[order]
    taken = np.zeros((len(gt_ig), T, A), bool)
    ig_all = gt_ig[:, None, :]  # (G, 1, A)
    r_keys, r_start, r_len = _runs(crank)
    for start, length in zip(r_start, r_len):
        d = cd[start : start + length]
        dets, dstart, dlen = _runs(d)  # the detections of this rank and their candidate runs
        by_count = np.argsort(-dlen, kind="stable")  # most candidates first: slot c concerns a prefix
        dets, dstart, dlen = dets[by_count], dstart[by_count], dlen[by_count]
        n, cmax = len(dets), int(dlen[0])
        active = np.searchsorted(-dlen, -np.arange(cmax), side="left")  # detections with > c candidates
        best0 = np.full((n, T, A), -np.inf)  # best similarity so far: non-ignored / ignored candidates
        best1 = best0.copy()
        pick0 = np.full((n, T, A), -1, np.int64)
        pick1 = pick0.copy()
        for c in range(cmax):
            k = int(active[c])
            j = start + dstart[:k] + c  # the c-th candidate of each of the first k detections
            g = cg[j]
            sv = cs[j][:, None, None]
            elig = (sv >= thr[None, :, None]) & (~taken[g] | gt_crowd[g][:, None, None])  # (k, T, A)
            ig = ig_all[g]
            upd = elig & ~ig & (sv >= best0[:k])
            best0[:k] = np.where(upd, sv, best0[:k])
            pick0[:k] = np.where(upd, g[:, None, None], pick0[:k])
            upd = elig & ig & (sv >= best1[:k])
            best1[:k] = np.where(upd, sv, best1[:k])
            pick1[:k] = np.where(upd, g[:, None, None], pick1[:k])
        m = np.where(pick0 >= 0, pick0, pick1)
        out[dets] = m
        i, t, a = np.nonzero(m >= 0)
        taken[m[i, t, a], t, a] = True
    return out


def match(inst: Instances, similarity: Similarity, protocol: Protocol) -> Matching:
    """Rank, pair and greedily match detections to ground truth (see the module docstring)."""
    thr = np.minimum(np.asarray(protocol.iou_thrs, float), 1 - 1e-10)
    lo, hi = protocol.area_rngs[:, 0], protocol.area_rngs[:, 1]
    A = len(lo)
    max_det = protocol.max_dets[-1]

    # rank detections within their group: group, then score descending, then input order
    D = len(inst.dt_group)
    order = np.lexsort((np.arange(D), -inst.dt_score, inst.dt_group))
    dgrp = inst.dt_group[order]
    _, dstart, dlen = _runs(dgrp)
    rank = _ragged_arange(dlen)
    keep = rank < max_det
    order, rank, dgrp = order[keep], rank[keep], dgrp[keep]
    dkeys, dstart, dlen = _runs(dgrp)
    Dk = len(order)

    gt_ig = inst.gt_ignore[:, None] | (inst.gt_area[:, None] < lo) | (inst.gt_area[:, None] > hi)  # (G, A)
    dt_area = inst.dt_area[order]
    dt_out = (dt_area[:, None] < lo) | (dt_area[:, None] > hi)  # (Dk, A)

    gorder = np.argsort(inst.gt_group, kind="stable")
    gkeys, gstart, glen = _runs(inst.gt_group[gorder])

    # groups with both detections and ground truth, and every (detection, gt) pair in them
    common, di, gi = np.intersect1d(dkeys, gkeys, assume_unique=True, return_indices=True)
    cd_start, cd_len, cg_start, cg_len = dstart[di], dlen[di], gstart[gi], glen[gi]
    npair = cd_len * cg_len
    pair_c = np.repeat(np.arange(len(common)), npair)
    off = _ragged_arange(npair)
    pg_len = cg_len[pair_c]
    pair_dl, pair_gl = off // pg_len, off % pg_len  # local rank, local gt position
    pair_dk = cd_start[pair_c] + pair_dl  # kept-detection position
    pair_g = gorder[cg_start[pair_c] + pair_gl]  # gt row
    pair_d = order[pair_dk]
    sim = np.asarray(similarity(pair_d, pair_g), dtype=np.float64) if len(pair_d) else np.zeros(0)

    gt_match = _greedy(pair_dk, pair_g, sim, rank, Dk, gt_ig, inst.gt_crowd, thr)
    matched = gt_match >= 0
    if len(gt_ig):
        ig_of_match = np.where(matched, gt_ig[np.maximum(gt_match, 0), np.arange(A)[None, None, :]], False)
    else:  # no ground truth at all: nothing is matched
        ig_of_match = np.zeros(matched.shape, dtype=bool)
    dt_ignore = np.where(matched, ig_of_match, dt_out[:, None, :])
    return Matching(order, rank, gt_match, dt_ignore, gt_ig, (pair_d, pair_g, sim))


def accumulate(inst: Instances, m: Matching, protocol: Protocol) -> tuple[np.ndarray, np.ndarray]:
    """Precision (T, R, C, A, M) and recall (T, C, A, M) arrays; -1 where there is no ground truth."""
    T, R = len(protocol.iou_thrs), len(protocol.rec_thrs)
    A, M, C = len(protocol.area_labels), len(protocol.max_dets), inst.num_categories
    precision = -np.ones((T, R, C, A, M))
    recall = -np.ones((T, C, A, M))
    grp = inst.dt_group[m.dt]
    img, cat = grp // C, grp % C
    score = inst.dt_score[m.dt]
    gt_cat = inst.gt_group % C
    rec_thrs = np.asarray(protocol.rec_thrs)
    for k in range(C):
        sel = np.flatnonzero(cat == k)
        npig = (~m.gt_ignore[gt_cat == k]).sum(axis=0)  # (A,)
        # accumulation order: score descending, ties by image order, then rank in the image
        sel = sel[np.lexsort((m.rank[sel], img[sel], -score[sel]))]
        for mi, md in enumerate(protocol.max_dets):
            idx = sel[m.rank[sel] < md]
            nd = len(idx)
            for a in range(A):
                if npig[a] == 0:
                    continue
                matched = m.gt_match[idx, :, a].T >= 0  # (T, nd)
                ign = m.dt_ignore[idx, :, a].T
                tp = np.cumsum(matched & ~ign, axis=1).astype(np.float64)
                fp = np.cumsum(~matched & ~ign, axis=1).astype(np.float64)
                rc = tp / npig[a]
                pr = tp / (fp + tp + _EPS)
                if nd == 0:
                    recall[:, k, a, mi] = 0
                    precision[:, :, k, a, mi] = 0
                    continue
                recall[:, k, a, mi] = rc[:, -1]
                pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
                for t in range(T):
                    inds = np.searchsorted(rc[t], rec_thrs, side="left")
                    q = np.zeros(R)
                    ok = inds < nd
                    q[ok] = pr[t, inds[ok]]
                    precision[t, :, k, a, mi] = q
    return precision, recall


def summarize(
    precision: np.ndarray,
    recall: np.ndarray,
    protocol: Protocol,
    queries: Sequence[tuple[bool, float | None, str, int]],
) -> list[float]:
    """Mean of precision (``ap=True``) or recall over the cells > -1 for each query.

    A query is ``(ap, iou_thr or None for all thresholds, area label, max_dets)``; a query
    selecting no cell above -1 gives -1.
    """
    out = []
    for ap, iou_thr, area, max_det in queries:
        aind = [i for i, lbl in enumerate(protocol.area_labels) if lbl == area]
        mind = [i for i, d in enumerate(protocol.max_dets) if d == max_det]
        s = precision if ap else recall
        if iou_thr is not None:
            s = s[np.where(iou_thr == np.asarray(protocol.iou_thrs))[0]]
        s = s[:, :, :, aind, mind] if ap else s[:, :, aind, mind]
        valid = s[s > -1]
        out.append(float(np.mean(valid)) if len(valid) else -1.0)
    return out


#: Names of the ten keypoint stats, in the order of the COCO keypoint summary.
STAT_NAMES: tuple[str, ...] = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
#: Names of the twelve box stats, in the order of the COCO box summary.
BOX_STAT_NAMES: tuple[str, ...] = (
    "AP",
    "AP50",
    "AP75",
    "APs",
    "APm",
    "APl",
    "AR1",
    "AR10",
    "AR100",
    "ARs",
    "ARm",
    "ARl",
)


def keypoint_queries(max_det: int = 20) -> list[tuple[bool, float | None, str, int]]:
    q = [(None, "all"), (0.5, "all"), (0.75, "all"), (None, "medium"), (None, "large")]
    return [(True, t, a, max_det) for t, a in q] + [(False, t, a, max_det) for t, a in q]


def box_queries(max_dets: Sequence[int] = (1, 10, 100)) -> list[tuple[bool, float | None, str, int]]:
    m1, m10, m100 = max_dets
    return [
        (True, None, "all", m100),
        (True, 0.5, "all", m100),
        (True, 0.75, "all", m100),
        (True, None, "small", m100),
        (True, None, "medium", m100),
        (True, None, "large", m100),
        (False, None, "all", m1),
        (False, None, "all", m10),
        (False, None, "all", m100),
        (False, None, "small", m100),
        (False, None, "medium", m100),
        (False, None, "large", m100),
    ]
