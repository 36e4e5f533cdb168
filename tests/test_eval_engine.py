"""The engine's building blocks: OKS and IoU by hand, exact pruning, part-box AP against pycocotools."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from wholebody.evaluation import BOX_STAT_NAMES, evaluate_part_boxes, load_ground_truth, load_results
from wholebody.evaluation.boxes import iou_pairs
from wholebody.evaluation.engine import KEYPOINT_PROTOCOL, Instances, accumulate, match
from wholebody.evaluation.oks import distance_at_similarity, keypoint_similarity, oks_pairs
from wholebody.evaluation.simulate import simulate
from wholebody.keypoints import BOX_PARTS


def test_oks_by_hand():
    sig = np.array([0.1, 0.05])
    gt = np.array([[[10.0, 10.0, 2.0], [20.0, 20.0, 0.0]]])  # second keypoint unlabelled
    dt = np.array([[[13.0, 14.0], [99.0, 99.0]]])
    area = np.array([400.0])
    got = oks_pairs(dt, gt, area, np.array([[0.0, 0.0, 30.0, 30.0]]), sig, np.array([0]), np.array([0]))
    # d^2 = 25, var = (2 * 0.1)^2 = 0.04: e = 25 / 0.04 / 400 / 2; the unlabelled keypoint does not count
    assert got[0] == pytest.approx(np.exp(-25 / 0.04 / (400 + np.spacing(1)) / 2), rel=1e-15)


def test_oks_without_labelled_keypoints_measures_distance_outside_the_grown_box():
    sig = np.array([0.1, 0.1])
    gt = np.zeros((1, 2, 3))
    box = np.array([[100.0, 100.0, 10.0, 20.0]])  # grown: x in [90, 120], y in [80, 140]
    dt = np.array([[[115.0, 139.0], [125.0, 70.0]]])  # first inside; second 5 px right and 10 px above
    got = oks_pairs(dt, gt, np.array([400.0]), box, sig, np.array([0]), np.array([0]))
    e2 = (5**2 + 10**2) / 0.04 / (400 + np.spacing(1)) / 2
    assert got[0] == pytest.approx((1.0 + np.exp(-e2)) / 2, rel=1e-15)


def test_pruned_pairs_are_exactly_those_below_the_threshold():
    rng = np.random.default_rng(0)
    K, D, G = 17, 40, 30
    sig = rng.uniform(0.02, 0.1, K)
    centre = rng.uniform(0, 600, (G, 1, 2))
    gt = np.concatenate(
        [centre + rng.uniform(-40, 40, (G, K, 2)), (rng.random((G, K, 1)) < 0.7) * 2.0], axis=2
    )
    dt = gt[rng.integers(0, G, D), :, :2] + rng.normal(0, 15, (D, K, 2))
    area = rng.uniform(500, 40000, G)
    box = np.concatenate([gt[:, :, :2].min(1), np.full((G, 2), 50.0)], axis=1)
    d, g = np.repeat(np.arange(D), G), np.tile(np.arange(G), D)
    full = oks_pairs(dt, gt, area, box, sig, d, g)
    pruned = oks_pairs(dt, gt, area, box, sig, d, g, below=0.5)
    kept = pruned > 0
    assert np.array_equal(pruned[kept], full[kept])
    assert (full[~kept] < 0.5).all() and (~kept).sum() > len(d) // 2  # most far pairs skipped


def test_similarity_inverse():
    sig = np.array([0.025, 0.107])
    ks = np.array([[0.85, 0.5]])
    d = distance_at_similarity(ks, np.array([5000.0]), sig)
    back = keypoint_similarity(
        np.stack([d[0], np.zeros(2)], axis=1)[None], np.zeros((1, 2, 2)), np.array([5000.0]), sig
    )
    assert back == pytest.approx(ks, rel=1e-12)


def test_iou_by_hand():
    gt = np.array([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]])
    dt = np.array([[5.0, 5.0, 10.0, 10.0], [20.0, 20.0, 5.0, 5.0]])
    crowd = np.array([False, True])
    got = iou_pairs(dt, gt, crowd, np.array([0, 0, 1]), np.array([0, 1, 0]))
    assert got[0] == pytest.approx(25 / 175)  # 5x5 overlap, union 100 + 100 - 25
    assert got[1] == pytest.approx(25 / 100)  # crowd: overlap over the detection's area
    assert got[2] == 0.0


def test_matching_prefers_unignored_ground_truth_and_reuses_crowds():
    # one image, three ground truths: an ignored one with the highest similarity, a regular one,
    # and a crowd; three detections
    inst = Instances(
        gt_group=np.zeros(3, np.int64),
        gt_ignore=np.array([True, False, True]),
        gt_crowd=np.array([False, False, True]),
        gt_area=np.full(3, 1e4),
        dt_group=np.zeros(3, np.int64),
        dt_score=np.array([0.9, 0.8, 0.7]),
        dt_area=np.full(3, 1e4),
    )
    sim = np.array([[0.9, 0.6, 0.0], [0.0, 0.0, 0.7], [0.0, 0.0, 0.8]])  # (dt, gt)
    m = match(inst, lambda d, g: sim[d, g], KEYPOINT_PROTOCOL)
    t50 = 0
    assert list(m.gt_match[:, t50, 0]) == [1, 2, 2]  # regular first; the crowd takes two
    assert list(m.dt_ignore[:, t50, 0]) == [False, True, True]
    t65 = 3  # OKS .65: the regular one is out of reach, the first detection goes to the ignored one
    assert m.gt_match[0, t65, 0] == 0 and m.dt_ignore[0, t65, 0]
    precision, recall = accumulate(inst, m, KEYPOINT_PROTOCOL)
    assert recall[t50, 0, 0, 0] == 1.0 and recall[t65, 0, 0, 0] == 0.0


def test_part_box_ap_matches_pycocotools():
    import pycocotools.cocoeval as pycoco
    from pycocotools.coco import COCO

    gt, rows = simulate(800, 5)
    g = load_ground_truth(gt)
    ours = evaluate_part_boxes(g, load_results(rows, g))
    assert set(ours) == set(BOX_PARTS)
    for part in BOX_PARTS:
        key = f"{part}_box"
        anns = [
            {
                "id": a["id"],
                "image_id": a["image_id"],
                "category_id": 1,
                "bbox": a[key],
                "area": a[key][2] * a[key][3],
                "iscrowd": a["iscrowd"],
            }
            for a in gt["annotations"]
            if a[f"{part}_valid"]
        ]
        dets = [
            {
                "image_id": r["image_id"],
                "category_id": r["category_id"],
                "bbox": r[key],
                "score": r.get(f"{key}_score", r.get(f"{part}_score", r["score"])),
            }
            for r in rows
            if key in r
        ]
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO()
            coco.dataset = {"images": gt["images"], "categories": gt["categories"], "annotations": anns}
            coco.createIndex()
            ev = pycoco.COCOeval(coco, coco.loadRes(dets), "bbox")
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        got = np.array([ours[part][n] for n in BOX_STAT_NAMES])
        assert np.abs(got - ev.stats).max() <= 1e-12, part
        assert 0.1 < ev.stats[0] < 0.9  # a meaningful test set
