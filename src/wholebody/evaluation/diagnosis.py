"""Error diagnosis per keypoint in the style of Ronchi & Perona (ICCV 2017), and size breakdowns.

Keypoint errors. Each detection is matched to a person at the lenient localisation OKS of
:data:`LOCALISATION_OKS` (0.1; the evaluation's matching rule, all sizes). For every keypoint
labelled on that person, its similarity ``ks = exp(-d^2 / (2 s)^2 / (area + eps) / 2)`` (the OKS
term, ``s`` its sigma, ``area`` the person's) is compared with three kinds of target: the right
keypoint of the right person, the mirrored keypoint of the right person (left<->right, across
parts too: a left-hand point on the right hand), and the same or mirrored keypoint of every other
person in the image. With ``best`` the highest of these similarities (ties favour the right
keypoint, then the mirrored one):

* good: the right keypoint is best and ``ks >= 0.85``;
* jitter: the right keypoint is best and ``0.5 <= ks < 0.85``;
* inversion: the mirrored keypoint of the right person is best and ``best >= 0.5``;
* swap: a keypoint of another person is best and ``best >= 0.5``;
* miss: ``best < 0.5``.

Correcting an error type moves only the keypoints of that type, toward the right keypoint along
the error's direction, to the similarity of the next better class: jitter to ``ks = 0.85`` (good),
miss to ``ks = 0.5`` (jitter), inversion and swap to the similarity they had to the wrong target.
The AP gained is the part's AP (OKS .50:.95) with that type corrected minus the AP as is; the
cumulative series corrects miss, swap, inversion, then jitter, one on top of the other.

Sizes. AP/AR per person size, by annotated area (px^2, ranges inclusive as in COCO): the COCO split
medium [32^2, 96^2] and large [96^2, 1e10], and the finer split of Ronchi & Perona's benchmark
M [32^2, 64^2], L [64^2, 96^2], XL [96^2, 128^2], XX [128^2, 1e10].
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from ..keypoints import COCO_WHOLEBODY, EVAL_PARTS, KeypointSpec
from .engine import KEYPOINT_PROTOCOL, summarize
from .groundtruth import GroundTruth
from .oks import distance_at_similarity, keypoint_similarity
from .part import evaluate_part
from .results import Detections

ERROR_TYPES: tuple[str, ...] = ("jitter", "inversion", "swap", "miss")
KEYPOINT_CLASSES: tuple[str, ...] = ("good", *ERROR_TYPES)
#: order in which the cumulative series corrects the error types
CUMULATIVE_ORDER: tuple[str, ...] = ("miss", "swap", "inversion", "jitter")
GOOD_SIMILARITY = 0.85
JITTER_SIMILARITY = 0.5
LOCALISATION_OKS = 0.1
_BIG = 1e5**2
SIZE_RANGES: dict[str, tuple[float, float]] = {
    "medium": (32.0**2, 96.0**2),
    "large": (96.0**2, _BIG),
    "M": (32.0**2, 64.0**2),
    "L": (64.0**2, 96.0**2),
    "XL": (96.0**2, 128.0**2),
    "XX": (128.0**2, _BIG),
}
_CLASS = {c: i for i, c in enumerate(KEYPOINT_CLASSES)}


@dataclass(frozen=True, eq=False)
class KeypointErrors:
    """Per-keypoint classes of the M detections matched to a person with labelled keypoints of a part.

    Attributes:
        part: the part.
        dt_rows: (M,) rows of the :class:`Detections`.
        gt_rows: (M,) rows of the :class:`GroundTruth` they matched.
        classes: (M, Kp) int8 index into ``KEYPOINT_CLASSES``, -1 where the keypoint is unlabelled.
        corrected: (M, Kp, 2) image px, where each erroneous keypoint goes when its type is corrected.
    """

    part: str
    dt_rows: np.ndarray
    gt_rows: np.ndarray
    classes: np.ndarray
    corrected: np.ndarray

    def counts(self) -> dict[str, int]:
        return {c: int((self.classes == i).sum()) for i, c in enumerate(KEYPOINT_CLASSES)}


def classify_keypoint_errors(
    gt: GroundTruth, dt: Detections, part: str, spec: KeypointSpec = COCO_WHOLEBODY
) -> KeypointErrors:
    """Match at OKS 0.1 and classify every labelled keypoint of the matched detections."""
    sl = spec.slice(part)
    sig = spec.part_sigmas(part)
    loose = KEYPOINT_PROTOCOL.with_thresholds([LOCALISATION_OKS]).with_areas([[0, _BIG]], ["all"])
    ev = evaluate_part(gt, dt, part, spec, protocol=loose)
    gm = ev.matching.gt_match[:, 0, 0]
    ok = gm >= 0
    drows, grows = ev.dt_rows[ev.matching.dt[ok]], gm[ok]
    keep = ~gt.iscrowd[grows] & (gt.keypoints[grows][:, sl, 2] > 0).any(axis=1)
    drows, grows = drows[keep], grows[keep]

    dxy = dt.keypoints[drows][:, sl, :2]
    own = gt.keypoints[grows][:, sl]
    area = gt.area[grows]
    lab = own[:, :, 2] > 0
    ks_own = keypoint_similarity(dxy, own[:, :, :2], area, sig)
    flip = spec.flip_index[sl]
    mirrored = gt.keypoints[grows][:, flip]
    ks_inv = np.where(mirrored[:, :, 2] > 0, keypoint_similarity(dxy, mirrored[:, :, :2], area, sig), -1.0)
    ks_other = _best_other_person(gt, grows, dxy, sl, flip, sig)

    best = np.maximum(np.maximum(ks_own, ks_inv), ks_other)
    own_best = ks_own >= np.maximum(ks_inv, ks_other)
    inv_best = ~own_best & (ks_inv >= ks_other)
    cls = np.full(lab.shape, _CLASS["swap"], np.int8)
    cls[inv_best] = _CLASS["inversion"]
    cls[own_best & (ks_own >= GOOD_SIMILARITY)] = _CLASS["good"]
    cls[own_best & (ks_own < GOOD_SIMILARITY)] = _CLASS["jitter"]
    cls[best < JITTER_SIMILARITY] = _CLASS["miss"]
    cls[~lab] = -1

    target = np.select(
        [cls == _CLASS["jitter"], cls == _CLASS["miss"]],
        [GOOD_SIMILARITY, JITTER_SIMILARITY],
        np.clip(best, 1e-12, 1),
    )
    dist = distance_at_similarity(target, area, sig)  # (M, Kp)
    err = dxy - own[:, :, :2]
    norm = np.hypot(err[..., 0], err[..., 1])
    unit = np.where(norm[..., None] > 0, err / np.where(norm > 0, norm, 1)[..., None], np.array([1.0, 0.0]))
    corrected = own[:, :, :2] + unit * dist[..., None]
    return KeypointErrors(part, drows, grows, cls, corrected)


def _best_other_person(
    gt: GroundTruth, grows: np.ndarray, dxy: np.ndarray, sl: slice, flip: np.ndarray, sig: np.ndarray
) -> np.ndarray:
    """(M, Kp) best similarity of each keypoint to the same or mirrored keypoint of another
    (non-crowd) person of the same image; -1 where there is none."""
    M, Kp = dxy.shape[:2]
    best = np.full((M, Kp), -1.0)
    if M == 0:
        return best
    C = len(gt.category_ids)
    group = gt.image_index * C + gt.category_index
    order = np.argsort(group, kind="stable")
    sg = group[order]
    start = np.searchsorted(sg, group[grows], side="left")
    count = np.searchsorted(sg, group[grows], side="right") - start
    pi = np.repeat(np.arange(M), count)
    po = order[
        np.repeat(start, count) + (np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count))
    ]
    sel = (po != grows[pi]) & ~gt.iscrowd[po]
    pi, po = pi[sel], po[sel]
    if len(pi) == 0:
        return best
    for cols in (np.arange(sl.start, sl.stop), flip):
        other = gt.keypoints[po][:, cols]
        ks = np.where(
            other[:, :, 2] > 0, keypoint_similarity(dxy[pi], other[:, :, :2], gt.area[po], sig), -1.0
        )
        np.maximum.at(best, pi, ks)
    return best


@dataclass(frozen=True, eq=False)
class PartDiagnosis:
    """Error diagnosis of one part.

    Attributes:
        counts: labelled keypoints of matched detections per class (``KEYPOINT_CLASSES``).
        ap: the part's AP as is.
        ap_fixed: AP with each error type corrected alone.
        cumulative: ``(label, AP, precision at OKS .75 (R,))`` for the detections as is and after
            correcting each type of ``CUMULATIVE_ORDER`` on top of the previous ones.
        recall_points: (R,) the recall points of the precision curves.
    """

    part: str
    counts: dict[str, int]
    ap: float
    ap_fixed: dict[str, float]
    cumulative: list[tuple[str, float, np.ndarray]] = field(default_factory=list)
    recall_points: np.ndarray = field(default_factory=lambda: np.asarray(KEYPOINT_PROTOCOL.rec_thrs))

    def to_dict(self) -> dict:
        total = sum(self.counts.values())
        return {
            "keypoints": total,
            "fractions": {c: (n / total if total else 0.0) for c, n in self.counts.items()},
            "AP": self.ap,
            "AP_fixed": dict(self.ap_fixed),
            "AP_gain": {t: self.ap_fixed[t] - self.ap for t in ERROR_TYPES},
            "cumulative": [{"fixed": label, "AP": ap} for label, ap, _ in self.cumulative],
        }


def _pr75(precision: np.ndarray) -> np.ndarray:
    t = int(np.argmin(np.abs(np.asarray(KEYPOINT_PROTOCOL.iou_thrs) - 0.75)))
    return precision[t, :, 0, 0, 0].copy()


def diagnose_part(
    gt: GroundTruth, dt: Detections, part: str, spec: KeypointSpec = COCO_WHOLEBODY
) -> PartDiagnosis:
    """Classify keypoint errors of ``part`` and measure the AP gained by correcting each type."""
    errs = classify_keypoint_errors(gt, dt, part, spec)
    base = evaluate_part(gt, dt, part, spec)
    cols = np.arange(spec.slice(part).start, spec.slice(part).stop)

    def fixed(types: Iterable[str], kp: np.ndarray | None = None) -> np.ndarray:
        kp = dt.keypoints.copy() if kp is None else kp
        for t in types:
            r, c = np.nonzero(errs.classes == _CLASS[t])
            kp[errs.dt_rows[r], cols[c], :2] = errs.corrected[r, c]
        return kp

    ap_fixed = {t: evaluate_part(gt, dt, part, spec, keypoints=fixed([t])).stats["AP"] for t in ERROR_TYPES}
    cumulative = [("original", base.stats["AP"], _pr75(base.precision))]
    kp = dt.keypoints.copy()
    for t in CUMULATIVE_ORDER:
        kp = fixed([t], kp)
        ev = evaluate_part(gt, dt, part, spec, keypoints=kp)
        cumulative.append((t, ev.stats["AP"], _pr75(ev.precision)))
    return PartDiagnosis(part, errs.counts(), base.stats["AP"], ap_fixed, cumulative)


def diagnose(
    gt: GroundTruth, dt: Detections, parts: Iterable[str] = EVAL_PARTS, spec: KeypointSpec = COCO_WHOLEBODY
) -> dict[str, PartDiagnosis]:
    """:func:`diagnose_part` for each part."""
    return {p: diagnose_part(gt, dt, p, spec) for p in parts}


def size_breakdown(
    gt: GroundTruth, dt: Detections, parts: Iterable[str] = EVAL_PARTS, spec: KeypointSpec = COCO_WHOLEBODY
) -> dict[str, dict[str, dict[str, float]]]:
    """``{part: {size: {"AP", "AR", "persons"}}}`` for the sizes of :data:`SIZE_RANGES` (and "all").

    ``persons`` counts the ground truths evaluated in that range (not crowd, part labelled);
    AP/AR are -1 where there is none.
    """
    labels = ("all", *SIZE_RANGES)
    proto = KEYPOINT_PROTOCOL.with_areas([(0.0, _BIG), *SIZE_RANGES.values()], labels)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for part in parts:
        ev = evaluate_part(gt, dt, part, spec, protocol=proto)
        md = proto.max_dets[-1]
        queries = [(ap, None, lbl, md) for lbl in labels for ap in (True, False)]
        vals = summarize(ev.precision, ev.recall, proto, queries)
        persons = (~ev.matching.gt_ignore).sum(axis=0)
        out[part] = {
            lbl: {"AP": vals[2 * i], "AR": vals[2 * i + 1], "persons": int(persons[i])}
            for i, lbl in enumerate(labels)
        }
    return out
