"""OKS-NMS of detected persons' poses (evaluation/nms.py) and where it applies: the evaluator, the
estimator's results, and that ground-truth persons are never touched."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wholebody.evaluation import WholeBodyEvaluator
from wholebody.evaluation.nms import keypoint_extent_area, oks_matrix, oks_nms, oks_nms_per_image
from wholebody.evaluation.simulate import simulate
from wholebody.keypoints import COCO_WHOLEBODY, PARTS

SIGMAS = COCO_WHOLEBODY.sigmas_array
K = COCO_WHOLEBODY.num_keypoints


# ---------------------------------------------------------------------- the reference, written here
def reference_oks(a, b, area_a, area_b, sigmas):
    """OKS of two poses, one keypoint at a time (the formula of the NMS as mmpose states it)."""
    total = 0.0
    for k in range(len(sigmas)):
        d2 = (a[k][0] - b[k][0]) ** 2 + (a[k][1] - b[k][1]) ** 2
        var = (2 * sigmas[k]) ** 2
        total += math.exp(-d2 / var / ((area_a + area_b) / 2 + np.spacing(1.0)) / 2)
    return total / len(sigmas)


def reference_nms(kpts, scores, areas, sigmas, thr):
    """Greedy: take the best remaining pose, drop every remaining one whose OKS with it is above thr."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    keep = []
    while order:
        i = order.pop(0)
        keep.append(i)
        order = [j for j in order if reference_oks(kpts[i], kpts[j], areas[i], areas[j], sigmas) <= thr]
    return keep


def person_set(rng, n_people, n_dups, k=K, shift=0.6):
    """n_people distinct poses and n_dups near-duplicates of some of them (shifted by ~shift px)."""
    base = []
    for _ in range(n_people):
        c = rng.uniform(100, 900, 2)
        size = rng.uniform(40, 200)
        base.append(c + rng.normal(0, size / 3, (k, 2)))
    area = [float(np.ptp(p[:, 0]) * np.ptp(p[:, 1])) * 1.5 for p in base]
    kpts, areas = list(base), list(area)
    for _ in range(n_dups):
        j = int(rng.integers(n_people))
        kpts.append(base[j] + rng.normal(0, shift, (k, 2)))
        areas.append(area[j] * rng.uniform(0.9, 1.1))
    kpts = np.stack(kpts)
    scores = rng.uniform(0, 1, len(kpts))
    kp3 = np.concatenate([kpts, rng.uniform(0, 1, (len(kpts), k, 1))], -1)
    return kp3, scores, np.array(areas)


# ---------------------------------------------------------------------- the function
def test_oks_matrix_equals_the_formula_pair_by_pair():
    rng = np.random.default_rng(0)
    kp, _, areas = person_set(rng, 4, 3)
    m = oks_matrix(kp, areas, SIGMAS)
    ref = np.array([[reference_oks(kp[i], kp[j], areas[i], areas[j], SIGMAS) for j in range(len(kp))]
                    for i in range(len(kp))])
    np.testing.assert_allclose(m, ref, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(np.diag(m), 1.0)


@pytest.mark.parametrize("seed", range(12))
def test_oks_nms_equals_a_brute_force_reference_on_random_sets_with_near_duplicates(seed):
    rng = np.random.default_rng(seed)
    kp, scores, areas = person_set(rng, int(rng.integers(1, 7)), int(rng.integers(0, 6)),
                                   shift=float(rng.choice([0.3, 2.0, 6.0])))
    if seed % 3 == 0:  # ties
        scores = np.round(scores, 1)
    for thr in (0.5, 0.9, 0.97):
        got = oks_nms(kp, scores, areas, SIGMAS, thr).tolist()
        assert got == reference_nms(kp, scores, areas, SIGMAS, thr)


def test_on_seven_poses_with_two_duplicates_five_are_kept_the_better_scored_ones():
    """Five persons, two of them detected twice (1 px apart): mmpose's rule keeps 5 of the 7. Two of the
    five stand close together (OKS well below 0.9): both stay."""
    rng = np.random.default_rng(3)
    people = [np.array([x, 300.0]) + rng.normal(0, 40, (K, 2)) for x in (100, 300, 500, 700, 720)]
    kpts = people + [people[0] + 1.0, people[2] - 1.0]
    areas = np.array([120 * 160] * 7, float)
    scores = np.array([0.9, 0.8, 0.5, 0.7, 0.6, 0.95, 0.4])  # the first duplicate outscores its original
    kp = np.stack(kpts)
    oks = oks_matrix(kp, areas, SIGMAS)
    assert oks[0, 5] > 0.9 and oks[2, 6] > 0.9 and oks[3, 4] < 0.9
    keep = oks_nms(kp, scores, areas, SIGMAS, 0.9)
    assert keep.tolist() == [5, 1, 3, 4, 2]  # by decreasing score; 0 and 6 removed
    assert oks_nms(kp, scores, areas, SIGMAS, 1.0).tolist() == np.argsort(-scores, kind="stable").tolist()


def test_per_image_groups_and_non_candidates():
    rng = np.random.default_rng(5)
    kp, scores, areas = person_set(rng, 2, 0)
    kp = np.concatenate([kp, kp + 0.5])  # each pose twice
    scores = np.concatenate([scores, scores - 0.01])
    areas = np.concatenate([areas, areas])
    same = oks_nms_per_image(np.zeros(4), kp, scores, areas, SIGMAS, 0.9)
    assert same.tolist() == [True, True, False, False]
    apart = oks_nms_per_image(np.array([0, 0, 1, 1]), kp, scores, areas, SIGMAS, 0.9)
    assert apart.all()  # the duplicates are in other images
    fixed = oks_nms_per_image(np.zeros(4), kp, scores, areas, SIGMAS, 0.9, candidates=np.array([1, 1, 0, 1], bool))
    assert fixed.tolist() == [True, True, True, False]  # a non-candidate stays and suppresses nothing
    assert keypoint_extent_area(np.array([[[0, 0, 1], [4, 2, 1], [1, 1, 0]]])).tolist() == [8.0]


# ---------------------------------------------------------------------- the evaluator
@pytest.fixture(scope="module")
def data():
    """Detection rows (bbox_id) and, for every 4th of them, a second detection of the same person
    (keypoints 0.5 px off, a little lower score)."""
    gt, rows = simulate(60, 7)
    extra = []
    for i, r in enumerate(rows[::4]):
        d = {k: (list(v) if isinstance(v, list) else v) for k, v in r.items()}
        for p in PARTS:
            key = COCO_WHOLEBODY.annotation_keys[p]
            d[key] = [v + 0.5 if j % 3 < 2 else v for j, v in enumerate(r[key])]
        d["score"] = r["score"] * 0.9
        d["wholebody_score"] = r.get("wholebody_score", r["score"]) * 0.9
        d["bbox_id"] = 100000 + i
        extra.append(d)
    return gt, rows + extra


def _kept_by_reference(rows, thr):
    keep = []
    for img in sorted({r["image_id"] for r in rows}):
        idx = [i for i, r in enumerate(rows) if r["image_id"] == img]
        kp = [np.concatenate([np.asarray(rows[i][COCO_WHOLEBODY.annotation_keys[p]], float).reshape(-1, 3)
                              for p in PARTS]) for i in idx]
        extent = [float(np.ptp(k[:, 0]) * np.ptp(k[:, 1])) for k in kp]  # no crop area: the keypoints' extent
        areas = [rows[i].get("crop_area", extent[n]) for n, i in enumerate(idx)]
        scores = [rows[i].get("wholebody_score", rows[i]["score"]) for i in idx]
        keep += [idx[j] for j in reference_nms(kp, scores, areas, SIGMAS, thr)]
    return sorted(keep)


def test_the_evaluator_suppresses_detected_duplicates_as_the_reference_does(data):
    gt, rows = data
    rows = [dict(r, crop_area=1000.0 + 37.0 * i) if i % 2 else r for i, r in enumerate(rows)]  # both areas
    kept = _kept_by_reference(rows, 0.9)
    assert 0 < len(rows) - len(kept)  # the set has duplicates to remove
    ev = WholeBodyEvaluator(gt, nms_thr=0.9)
    for i in range(0, len(rows), 50):  # across batches: NMS sees every row of an image
        ev.process(rows[i:i + 50])
    stats = ev.evaluate()
    assert ev.suppressed == len(rows) - len(kept) and len(ev.detections) == len(kept)
    assert ev.kept_index.tolist() == kept  # which rows the stats describe
    plain = WholeBodyEvaluator(gt)
    plain.process([rows[i] for i in kept])
    assert stats == plain.evaluate()
    without = WholeBodyEvaluator(gt, nms_thr=None)
    without.process(rows)
    assert without.evaluate() != stats and without.suppressed == 0


def test_ground_truth_persons_are_never_suppressed(data):
    """Rows of ground-truth boxes (ann_id) are the evaluation's own persons: with NMS on, the stats are
    those without it, even where two of them are near-duplicates."""
    gt, rows = data
    as_gt = [{**{k: v for k, v in r.items() if k != "bbox_id"}, "ann_id": 1000 + i} for i, r in enumerate(rows)]
    with_nms, without = WholeBodyEvaluator(gt, nms_thr=0.9), WholeBodyEvaluator(gt)
    with_nms.process(as_gt)
    without.process(as_gt)
    assert with_nms.evaluate() == without.evaluate() and with_nms.suppressed == 0
    assert with_nms.kept_index.tolist() == list(range(len(as_gt)))
    detected = WholeBodyEvaluator(gt, nms_thr=0.9)
    detected.process(rows)
    detected.evaluate()
    assert detected.suppressed > 0  # the same poses as detected persons do have duplicates


def test_nms_thr_is_checked(data):
    gt, _ = data
    with pytest.raises(ValueError, match="nms_thr"):
        WholeBodyEvaluator(gt, nms_thr=1.5)
    assert WholeBodyEvaluator(gt, nms_thr=0).nms_thr is None
