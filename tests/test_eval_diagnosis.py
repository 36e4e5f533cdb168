"""Keypoint error classes (good, jitter, inversion, swap, miss), corrections and size breakdowns."""

from __future__ import annotations

import numpy as np
import pytest

from test_eval_semantics import gt_file, person, row, skeleton
from wholebody.evaluation import load_ground_truth, load_results, size_breakdown
from wholebody.evaluation.diagnosis import KEYPOINT_CLASSES, classify_keypoint_errors, diagnose_part
from wholebody.evaluation.oks import distance_at_similarity, keypoint_similarity
from wholebody.evaluation.simulate import simulate
from wholebody.keypoints import COCO_WHOLEBODY

S = COCO_WHOLEBODY
BODY = S.slice("body")
AREA = 20000.0


def _offset(part_sig: float, ks: float) -> float:
    return float(distance_at_similarity(np.array([ks]), np.array(AREA), np.array([part_sig]))[0])


def test_each_keypoint_gets_its_class():
    a, b = skeleton(10, 10), skeleton(300, 200, seed=1)
    gt = load_ground_truth(gt_file([person(a, ann_id=1, area=AREA), person(b, ann_id=2, area=AREA)]))
    pred = a.copy()
    sig = S.sigmas_array
    i_good, i_jit, i_inv, i_swap, i_miss = (
        S.index(n) for n in ("nose", "left_elbow", "left_knee", "right_hip", "left_ankle")
    )
    pred[i_good] += [_offset(sig[i_good], 0.95), 0]
    pred[i_jit] += [_offset(sig[i_jit], 0.7), 0]
    pred[i_inv] = a[S.flip_index[i_inv]]  # on the right knee of the same person
    pred[i_swap] = b[i_swap]  # on the other person
    pred[i_miss] += [_offset(sig[i_miss], 0.1), 0]
    det = load_results([row(pred, 0.9)], gt)
    errs = classify_keypoint_errors(gt, det, "body")
    assert list(errs.gt_rows) == [0]
    cls = {i: KEYPOINT_CLASSES[c] for i, c in enumerate(errs.classes[0])}
    assert (cls[i_good], cls[i_jit], cls[i_inv], cls[i_swap], cls[i_miss]) == (
        "good",
        "jitter",
        "inversion",
        "swap",
        "miss",
    )
    # corrections: jitter to the good boundary, miss to the jitter boundary, along the error
    ks = keypoint_similarity(errs.corrected[0], a[BODY], np.array(AREA), S.part_sigmas("body"))
    assert ks[i_jit] == pytest.approx(0.85) and ks[i_miss] == pytest.approx(0.5)
    assert errs.corrected[0, i_jit, 1] == pytest.approx(a[i_jit, 1])  # moved along x, as the error


def test_hand_inversion_crosses_parts():
    a = skeleton(10, 10)
    gt = load_ground_truth(gt_file([person(a, ann_id=1, area=AREA)]))
    pred = a.copy()
    left, right = S.slice("lefthand"), S.slice("righthand")
    pred[left] = a[right]  # the left hand predicted on the right hand
    errs = classify_keypoint_errors(gt, load_results([row(pred, 0.9)], gt), "lefthand")
    assert (errs.classes == KEYPOINT_CLASSES.index("inversion")).all()


def test_correcting_errors_raises_ap():
    gt, rows = simulate(300, 12)
    g = load_ground_truth(gt)
    d = load_results(rows, g)
    diag = diagnose_part(g, d, "body")
    assert sum(diag.counts.values()) > 1000
    assert all(diag.counts[c] > 0 for c in KEYPOINT_CLASSES)
    assert all(diag.ap_fixed[t] >= diag.ap - 1e-9 for t in diag.ap_fixed)
    assert diag.ap_fixed["miss"] > diag.ap + 0.01
    aps = [ap for _, ap, _ in diag.cumulative]
    assert aps[0] == pytest.approx(diag.ap) and aps[-1] > aps[0] + 0.05
    out = diag.to_dict()
    assert out["AP_gain"]["miss"] == pytest.approx(diag.ap_fixed["miss"] - diag.ap)


def test_size_breakdown_ranges():
    # one person per size band, each found perfectly, plus a miss in the XL band
    anns, rows = [], []
    for i, (side, hit) in enumerate([(40, True), (80, True), (110, True), (115, False), (200, True)]):
        xy = skeleton(10 + 250 * (i % 2), 10 + 120 * i, size=side / 2, seed=i)
        anns.append(person(xy, ann_id=i + 1, area=float(side * side)))
        if hit:
            rows.append(row(xy, 0.9))
    g = load_ground_truth(gt_file(anns, image_ids=(1,)))
    sizes = size_breakdown(g, load_results(rows, g), ["body"])["body"]
    assert {k: v["persons"] for k, v in sizes.items()} == {
        "all": 5,
        "medium": 2,
        "large": 3,
        "M": 1,
        "L": 1,
        "XL": 2,
        "XX": 1,
    }
    assert sizes["M"]["AP"] == pytest.approx(1.0) and sizes["XX"]["AR"] == pytest.approx(1.0)
    assert sizes["XL"]["AR"] == pytest.approx(0.5)
