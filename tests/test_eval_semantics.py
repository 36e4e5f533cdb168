"""The rules of the official COCO-WholeBody evaluation, each pinned on a small hand-built case.

Every case asserts numbers worked out by hand from the rule (AP of one person matched at OKS o
is the share of the ten thresholds .50:.05:.95 that are <= o, etc.) and, when xtcocotools is
installed, that the reference gives the same 60 stats.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import need_reference
from test_eval_parity import as_lists, max_diff, reference_stats
from wholebody.evaluation import evaluate
from wholebody.evaluation.reference import reference_status
from wholebody.keypoints import COCO_WHOLEBODY, PARTS

S = COCO_WHOLEBODY
K = S.num_keypoints
THRESHOLDS = np.linspace(0.5, 0.95, 10)


def person(
    xy: np.ndarray,
    labelled: np.ndarray | None = None,
    *,
    ann_id: int,
    image_id: int = 1,
    area: float = 20000.0,
    bbox: list | None = None,
    iscrowd: int = 0,
    **extra,
) -> dict:
    """A GT annotation with keypoints ``xy`` (K, 2); ``labelled`` (K,) bool, default all."""
    lab = np.ones(K, bool) if labelled is None else labelled
    kp = np.zeros((K, 3))
    kp[lab, :2] = xy[lab]
    kp[lab, 2] = 2
    if bbox is None:
        lo, hi = xy.min(0), xy.max(0)
        bbox = [float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])]
    ann = {
        "id": ann_id,
        "image_id": image_id,
        "category_id": 1,
        "area": area,
        "bbox": bbox,
        "iscrowd": iscrowd,
        "num_keypoints": int(lab[S.slice("body")].sum()),
    }
    for part in PARTS:
        ann[S.annotation_keys[part]] = kp[S.slice(part)].ravel().tolist()
    ann.update(extra)
    return ann


def row(
    xy: np.ndarray, score: float, *, image_id: int = 1, kscore: np.ndarray | float = 0.9, **extra
) -> dict:
    kp = np.concatenate([xy, np.broadcast_to(np.asarray(kscore, float), (K,))[:, None]], axis=1)
    r = {"image_id": image_id, "category_id": 1, "score": score}
    for part in PARTS:
        r[S.annotation_keys[part]] = kp[S.slice(part)].ravel().tolist()
    r.update(extra)
    return r


def gt_file(anns: list[dict], image_ids=(1, 2)) -> dict:
    return {
        "images": [{"id": i, "width": 640, "height": 480} for i in image_ids],
        "annotations": anns,
        "categories": [{"id": 1, "name": "person"}],
    }


def skeleton(x0: float, y0: float, size: float = 150.0, seed: int = 0) -> np.ndarray:
    """K distinct points inside a size x size square at (x0, y0)."""
    rng = np.random.default_rng(seed)
    return np.stack([x0 + size * rng.random(K), y0 + size * rng.random(K)], axis=1)


def check(gt: dict, rows: list, tmp_path) -> dict:
    """Our stats (part -> list of 10), also checked against xtcocotools when it is installed."""
    ours = as_lists(evaluate(gt, rows))
    if reference_status()[0] == "absent":
        return ours
    need_reference()  # installed but broken: a failure saying how to rebuild it
    assert max_diff(ours, reference_stats(gt, rows, tmp_path)) <= 1e-12
    return ours


def ap_at(oks: float) -> float:
    """AP of a single person matched with OKS ``oks`` by a single detection."""
    return float((THRESHOLDS <= oks).mean())


# ------------------------------------------------------------------------------------------ rules
def test_crowd_ground_truth_is_ignored_and_absorbs_detections(tmp_path):
    a, c = skeleton(10, 10), skeleton(300, 200, seed=1)
    gt = gt_file([person(a, ann_id=1), person(c, ann_id=2, iscrowd=1)])
    # two high-scoring detections on the crowd: neither is a false positive
    rows = [row(c, 0.99), row(c + 1, 0.98), row(a, 0.5)]
    stats = check(gt, rows, tmp_path)
    assert stats["body"][0] == pytest.approx(1.0)
    # the same person not flagged crowd is a second target, one detection of it is a duplicate
    gt["annotations"][1]["iscrowd"] = 0
    stats = check(gt, rows, tmp_path)
    assert stats["body"][5] == pytest.approx(1.0) and stats["body"][0] < 1.0


def test_ignore_field_is_not_what_ignores(tmp_path):
    """The reference overwrites a GT's own "ignore" flag with iscrowd: "ignore": 1 changes nothing."""
    a, b = skeleton(10, 10), skeleton(300, 200, seed=1)
    gt = gt_file([person(a, ann_id=1), person(b, ann_id=2, ignore=1)])
    stats = check(gt, [row(a, 0.9)], tmp_path)
    assert stats["body"][5] == pytest.approx(0.5)  # b still counts, and is missed


def test_person_without_labelled_part_is_ignored_for_that_part(tmp_path):
    a = skeleton(10, 10)
    lab = np.ones(K, bool)
    lab[S.slice("face")] = False
    gt = gt_file([person(a, lab, ann_id=1)])
    stats = check(gt, [row(a, 0.9)], tmp_path)
    assert stats["body"][0] == pytest.approx(1.0)
    assert stats["face"] == [-1.0] * 10  # no face to find
    # valid flags are not consulted: face_valid=False with labelled face points still counts
    gt = gt_file([person(a, ann_id=1, face_valid=False)])
    assert check(gt, [row(a, 0.9)], tmp_path)["face"][0] == pytest.approx(1.0)


def test_detection_without_scored_part_keypoint_is_dropped_for_that_part(tmp_path):
    a = skeleton(10, 10)
    gt = gt_file([person(a, ann_id=1)])
    ks = np.full(K, 0.9)
    ks[S.slice("face")] = 0.0
    stats = check(gt, [row(a, 0.9, kscore=ks)], tmp_path)
    assert stats["body"][0] == pytest.approx(1.0)
    assert stats["face"][0] == 0.0 and stats["face"][5] == 0.0  # the perfect face is not evaluated
    ks[S.slice("face").start] = 0.01  # one scored face point is enough
    assert check(gt, [row(a, 0.9, kscore=ks)], tmp_path)["face"][0] == pytest.approx(1.0)


def test_oks_of_every_part_uses_the_whole_person_area(tmp_path):
    a = skeleton(10, 10)
    area = 20000.0
    gt = gt_file([person(a, ann_id=1, area=area)])
    shift = 3.0  # px, every keypoint
    pred = a + np.array([shift, 0.0])
    stats = check(gt, [row(pred, 0.9)], tmp_path)

    def oks(part: str, a: float) -> float:
        var = (2 * S.part_sigmas(part)) ** 2
        return float(np.exp(-(shift**2) / var / (a + np.spacing(1)) / 2).mean())

    for part in ("face", "lefthand", "body", "wholebody"):
        assert stats[part][0] == pytest.approx(ap_at(oks(part, area)), abs=1e-12), part
    # with the area of a face box (~ 30 x 30 px) the same face would not even reach OKS .5
    assert ap_at(oks("face", 900.0)) == 0.0 < stats["face"][0]


def test_detection_area_for_size_ranges_comes_from_its_body_keypoints(tmp_path):
    g = skeleton(10, 10, size=80)  # a medium person (area 5000)
    gt = gt_file([person(g, ann_id=1, area=5000.0)])
    fp = skeleton(300, 200, size=60, seed=2)  # body extent 60x60 -> medium
    fp_wide = fp.copy()
    fp_wide[S.slice("face")] += np.array([0.0, 0.0]) + np.linspace(0, 250, S.num_part("face"))[:, None]
    # the unmatched false positive ranks first; its body extent is medium, whatever its face spans
    stats = check(gt, [row(fp_wide, 0.9), row(g, 0.5)], tmp_path)
    assert stats["body"][3] == pytest.approx(0.5)  # APm: the FP counts in the medium range
    assert stats["body"][4] == -1.0  # APl: no large person
    # a false positive whose body keypoints span a large box is ignored in the medium range
    big = skeleton(300, 200, size=200, seed=2)
    stats = check(gt, [row(big, 0.9), row(g, 0.5)], tmp_path)
    assert stats["body"][3] == pytest.approx(1.0) and stats["body"][0] == pytest.approx(0.5)


def test_detection_area_counts_body_keypoints_whatever_their_score(tmp_path):
    g = skeleton(10, 10, size=80)
    gt = gt_file([person(g, ann_id=1, area=5000.0)])
    fp = skeleton(300, 200, size=60, seed=2)  # body extent 60x60: medium
    fp[S.index("left_ankle")] = [600.0, 470.0]  # ... unless this unscored keypoint counts
    scores = np.full(K, 0.9)
    scores[S.index("left_ankle")] = 0.0
    stats = check(gt, [row(fp, 0.9, kscore=scores), row(g, 0.5)], tmp_path)
    assert stats["body"][3] == pytest.approx(1.0)  # APm: the FP's area is large, so it is not counted there
    assert stats["body"][0] == pytest.approx(0.5)


@pytest.mark.parametrize("area,expect_m,expect_l", [(32.0**2, 1.0, -1.0), (96.0**2, 1.0, 1.0), (96.0**2 + 1, -1.0, 1.0)])
def test_area_ranges_include_their_edges(tmp_path, area, expect_m, expect_l):
    """Medium is [32^2, 96^2] and large [96^2, inf), both closed: a person of exactly 96^2 is in both."""
    side = float(np.sqrt(area))
    g = skeleton(10, 10, size=side)
    g[S.slice("body")][:2] = [[10.0, 10.0], [10.0 + side, 10.0 + side]]  # body extent exactly side x side
    gt = gt_file([person(g, ann_id=1, area=area)])
    stats = check(gt, [row(g, 0.9)], tmp_path)
    assert (stats["body"][3], stats["body"][4]) == (pytest.approx(expect_m), pytest.approx(expect_l))


def test_person_without_keypoints_matches_its_box_grown_by_its_size(tmp_path):
    a = skeleton(10, 10)
    x, y, w, h = 300.0, 200.0, 40.0, 60.0
    empty = person(np.zeros((K, 2)), np.zeros(K, bool), ann_id=2, bbox=[x, y, w, h], area=1500.0)
    gt = gt_file([person(a, ann_id=1), empty])
    # keypoints between one and two box widths right of the box: inside [x - w, x + 2w] -> OKS 1 -> ignored
    inside = np.stack([np.full(K, x + 1.5 * w), np.full(K, y + 1.5 * h)], axis=1)
    stats = check(gt, [row(inside, 0.99), row(a, 0.5)], tmp_path)
    assert stats["body"][0] == pytest.approx(1.0)
    # the box grows by its own size to the right and below: [x - w, x + 2w] x [y - h, y + 2h], not a
    # centred x2 box ([x - w/2, x + 1.5w]), so x + 1.75w is still inside
    right = np.stack([np.full(K, x + 1.75 * w), np.full(K, y + 1.75 * h)], axis=1)
    stats = check(gt, [row(right, 0.99), row(a, 0.5)], tmp_path)
    assert stats["body"][0] == pytest.approx(1.0)
    # beyond the grown box the similarity falls and the detection is a plain false positive
    outside = inside + np.array([5 * w, 0.0])
    stats = check(gt, [row(outside, 0.99), row(a, 0.5)], tmp_path)
    assert stats["body"][0] == pytest.approx(0.5)


def test_part_score_keys_rank_and_fall_back_to_score(tmp_path):
    a = skeleton(10, 10)
    gt = gt_file([person(a, ann_id=1)])
    bad_face = a.copy()
    bad_face[S.slice("face")] += 40.0
    good = row(a, 0.9)
    # bad_face outranks good for the face only through its face_score
    rows = [good, row(bad_face, 0.5, face_score=0.95)]
    stats = check(gt, rows, tmp_path)
    assert stats["face"][0] == pytest.approx(0.5)  # a false positive first, then the hit
    assert stats["body"][0] == pytest.approx(1.0)  # body ranks by score: good first
    # without face_score, "score" ranks the face too
    rows = [good, row(bad_face, 0.5)]
    assert check(gt, rows, tmp_path)["face"][0] == pytest.approx(1.0)
    # wholebody_score ranks the whole body
    rows = [good, row(bad_face, 0.5, wholebody_score=0.95)]
    stats = check(gt, rows, tmp_path)
    assert stats["wholebody"][5] == pytest.approx(1.0) and stats["body"][0] == pytest.approx(1.0)


def test_only_twenty_detections_per_image_count(tmp_path):
    a = skeleton(10, 10)
    gt = gt_file([person(a, ann_id=1)])
    far = [row(skeleton(400, 300, size=30, seed=s), 0.9) for s in range(20)]
    assert check(gt, far + [row(a, 0.1)], tmp_path)["body"][5] == 0.0  # 21st: never seen
    assert check(gt, far[:19] + [row(a, 0.1)], tmp_path)["body"][5] == pytest.approx(1.0)


def test_equal_scores_keep_file_order(tmp_path):
    a = skeleton(10, 10)
    gt = gt_file([person(a, ann_id=1)])
    hit, miss = row(a, 0.7), row(skeleton(400, 300, size=30), 0.7)
    assert check(gt, [hit, miss], tmp_path)["body"][0] == pytest.approx(1.0)
    assert check(gt, [miss, hit], tmp_path)["body"][0] == pytest.approx(0.5)


def test_equal_similarity_goes_to_the_later_person(tmp_path):
    a = skeleton(10, 10)
    # two persons at the same place, a medium one then a large one; a perfect detection has OKS 1
    # with both: it takes the later (large) one, and the second, shifted, detection is left the
    # medium person, whose smaller area gives it a lower OKS
    gt = gt_file([person(a, ann_id=1, area=5000.0), person(a, ann_id=2, area=20000.0)])
    shift = 10.0
    stats = check(gt, [row(a, 0.9), row(a + np.array([shift, 0.0]), 0.5)], tmp_path)
    var = (2 * S.part_sigmas("body")) ** 2

    def expected_ap(area: float) -> float:
        o = np.exp(-(shift**2) / var / (area + np.spacing(1)) / 2).mean()
        return float(np.where(THRESHOLDS <= o, 1.0, 51 / 101).mean())

    assert stats["body"][0] == pytest.approx(expected_ap(5000.0), abs=1e-12)
    assert expected_ap(5000.0) < expected_ap(20000.0)
    # matching is redone per size range, preferring persons inside the range: both are found there
    assert stats["body"][8] == pytest.approx(1.0) and stats["body"][9] == pytest.approx(1.0)


def test_empty_results_evaluate_to_zeros_and_missing_ground_truth_to_minus_one(tmp_path):
    a = skeleton(10, 10)
    lab = np.ones(K, bool)
    lab[S.slice("lefthand")] = False
    gt = gt_file([person(a, lab, ann_id=1)])
    stats = check(gt, [], tmp_path)
    assert stats["body"] == [0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0]
    assert stats["lefthand"] == [-1.0] * 10


def test_rows_of_another_category_are_ignored(tmp_path):
    a = skeleton(10, 10)
    gt = gt_file([person(a, ann_id=1)])
    stats = check(gt, [row(a + 50, 0.9, category_id=2), row(a, 0.5)], tmp_path)
    assert stats["body"][0] == pytest.approx(1.0)


def test_results_with_bbox_take_their_area_from_it(tmp_path):
    """The reference's loader: when the first row carries "bbox", every row's area is its w*h."""
    g = skeleton(10, 10, size=80)
    gt = gt_file([person(g, ann_id=1, area=5000.0)])
    fp = skeleton(300, 200, size=60, seed=2)
    rows = [row(fp, 0.9, bbox=[300, 200, 200, 200]), row(g, 0.5, bbox=[10, 10, 80, 80])]
    stats = check(gt, rows, tmp_path)
    assert stats["body"][3] == pytest.approx(1.0)  # the FP is large by its bbox: ignored for APm
