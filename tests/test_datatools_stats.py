"""Statistics that read only the annotation file: counts, part scales, hand gestures, parsing errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from test_datatools_tinyset import GESTURES, build_tiny_set, empty_person, gesture_data, hand_shape, place
from wholebody.datatools import (
    AnnotationFormatError,
    count_annotations,
    hand_gestures,
    kmeans,
    load_wholebody,
    mean_pairwise_distance,
    normalize_hands,
    parse_wholebody,
    part_scales,
)
from wholebody.keypoints import COCO_WHOLEBODY as SPEC
from wholebody.keypoints import PARTS


@pytest.fixture
def tiny_set(tmp_path):
    return build_tiny_set(tmp_path / "tiny")


# ----------------------------------------------------------------------------- counts
def test_counts_on_the_tiny_set_match_what_was_built(tiny_set):
    c = count_annotations(load_wholebody(tiny_set["json"]))
    want = tiny_set["counts"]
    assert (c["images"], c["persons"], c["crowd"], c["person_boxes"]) == (
        want["images"], want["persons"], want["crowd"], want["person_boxes"])
    for part in PARTS:
        assert c["parts"][part]["keypoints"] == want["keypoints"][part], part
    for part, n in want["boxes"].items():
        assert c["parts"][part]["boxes"] == n, part
    for part, n in want["valid"].items():
        assert c["parts"][part]["valid"] == n, part
    assert c["parts"]["hand"]["boxes"] == want["boxes"]["lefthand"] + want["boxes"]["righthand"]
    assert c["total_keypoints"] == sum(want["keypoints"].values())
    assert c["total_boxes"] == want["person_boxes"] + sum(want["boxes"].values())


def test_counts_on_the_real_sample_match_a_plain_pycocotools_tally(real_sample_json):
    from pycocotools.coco import COCO

    coco = COCO(str(real_sample_json))
    anns = coco.loadAnns(coco.getAnnIds())
    c = count_annotations(load_wholebody(real_sample_json))
    assert c["persons"] == len(anns) == 14
    assert c["images"] == len(coco.getImgIds())
    for part in PARTS:
        key = SPEC.annotation_keys[part]
        tally = sum(1 for a in anns for v in a[key][2::3] if v > 0)
        assert c["parts"][part]["keypoints"] == tally, part
    for part, key in SPEC.box_keys.items():
        assert c["parts"][part]["boxes"] == sum(1 for a in anns if a[key][2] > 0 and a[key][3] > 0)
    assert c["parts"]["face"]["valid"] == sum(a["face_valid"] for a in anns)


# ----------------------------------------------------------------------------- scales
def test_mean_pairwise_distance_of_a_unit_square():
    sq = np.array([[[0.0, 0], [1, 0], [1, 1], [0, 1]]])
    full = mean_pairwise_distance(sq, np.ones((1, 4), bool))
    assert full[0] == pytest.approx((4 + 2 * np.sqrt(2)) / 6)
    three = mean_pairwise_distance(sq, np.array([[True, True, True, False]]))
    assert three[0] == pytest.approx((2 + np.sqrt(2)) / 3)
    assert np.isnan(mean_pairwise_distance(sq, np.array([[True, False, False, False]]))[0])


def test_mean_pairwise_distance_is_the_same_in_small_chunks():
    rng = np.random.default_rng(1)
    pts, mask = rng.uniform(0, 100, (37, 68, 2)), rng.random((37, 68)) > 0.3
    np.testing.assert_allclose(mean_pairwise_distance(pts, mask, chunk_elems=68 * 68 * 3),
                               mean_pairwise_distance(pts, mask), rtol=1e-12)


def test_part_scales_follow_the_image_scale_and_skip_unlabelled_parts(tiny_set):
    t = load_wholebody(tiny_set["json"])
    s = part_scales(t)
    assert len(s["body"]) == 3  # A, C, E; crowd and unlabelled persons drop out
    assert len(s["face"]) == 3 and len(s["foot"]) == 1 and len(s["lefthand"]) == 2
    data = json.loads(tiny_set["json"].read_text())
    for a in data["annotations"]:
        for key in SPEC.annotation_keys.values():
            a[key] = [v * 2 if i % 3 != 2 else v for i, v in enumerate(a[key])]
    s2 = part_scales(parse_wholebody(data))
    for part in PARTS:
        np.testing.assert_allclose(s2[part], 2 * s[part])


# ----------------------------------------------------------------------------- gestures
def test_normalized_hands_forget_position_rotation_scale_and_side():
    shape = hand_shape("point")
    right = place(shape, (300, 200), 55, 133, mirror=False)
    left = place(shape, (40, 90), 12, -71, mirror=True)
    ref = place(shape, (0, 0), 1, 0, mirror=False)
    out, ok = normalize_hands(np.stack([right, left, ref]), np.array([False, True, False]))
    assert ok.all()
    np.testing.assert_allclose(out[0], out[2], atol=1e-9)
    np.testing.assert_allclose(out[1], out[2], atol=1e-9)
    v = out[2, 9] - out[2, 0]
    assert abs(v[0]) < 1e-9 and v[1] < 0  # wrist -> middle knuckle points up
    assert np.sqrt((out[2] ** 2).sum(-1).mean()) == pytest.approx(1.0)


def test_degenerate_hands_are_flagged():
    _, ok = normalize_hands(np.zeros((1, 21, 2)), np.array([False]))
    assert not ok[0]


def test_kmeans_finds_separated_blobs_and_is_seeded():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0], [10, 0], [0, 10]])
    x = np.concatenate([c + rng.normal(0, 0.5, (30, 2)) for c in centres])
    truth = np.repeat(np.arange(3), 30)
    labels, got, _ = kmeans(x, 3, seed=3)
    for j in range(3):  # every true blob maps to one cluster
        assert np.unique(labels[truth == j]).size == 1
    assert np.unique(labels).size == 3
    np.testing.assert_array_equal(kmeans(x, 3, seed=3)[0], labels)
    with pytest.raises(ValueError, match="at least"):
        kmeans(x[:2], 3)


def test_hand_gestures_recover_the_built_gestures_ordered_closed_to_open():
    data, truth = gesture_data(n_per=10, seed=4)
    t = parse_wholebody(data, "gestures.json")
    g = hand_gestures(t, k=3, seed=0)
    assert g.labels.size == 60 and g.counts.tolist() == [20, 20, 20]
    for r, side, lab in zip(g.rows, g.side, g.labels):
        assert GESTURES[lab] == truth[(int(t.ann_id[r]), str(side))]


def test_hand_gestures_leave_out_incomplete_hands_and_say_so():
    data, _ = gesture_data(n_per=3, seed=1)
    data["annotations"][0]["righthand_kpts"][2] = 0.0  # wrist unlabelled
    g = hand_gestures(parse_wholebody(data), k=3)
    assert g.candidates == 18 and g.incomplete == 1 and g.labels.size == 17
    with pytest.raises(ValueError, match="one.json: only 1 valid, fully labelled hands"):
        hand_gestures(parse_wholebody({"images": data["images"], "annotations": data["annotations"][:1]}, "one.json"))


# ----------------------------------------------------------------------------- bad files
@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda a: a.pop("face_kpts"), r"annotation id 2 \(#1, image_id 1\) has no field 'face_kpts'"),
        (lambda a: a.__setitem__("lefthand_kpts", [0.0] * 60), r"annotation id 2 \(#1, image_id 1\): 'lefthand_kpts' has 60 values, expected 63"),
        (lambda a: a.__setitem__("image_id", 99), r"annotation id 2 \(#1, image_id 99\) refers to image_id 99"),
        (lambda a: a.__setitem__("face_box", ["x", 0, 0, 0]), r"annotation id 2 \(#1, image_id 1\): 'face_box'\[0\] is not a number"),
    ],
)
def test_a_bad_record_is_named_with_its_file(tmp_path, edit, message):
    anns = [empty_person(1, 1), empty_person(2, 1)]
    edit(anns[1])
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}], "annotations": anns}))
    with pytest.raises(AnnotationFormatError, match=str(p).replace(".", r"\.") + ": " + message):
        load_wholebody(p)


def test_non_json_and_missing_files_are_clear(tmp_path):
    p = tmp_path / "x.json"
    p.write_text("{not json")
    with pytest.raises(AnnotationFormatError, match="x.json: not valid JSON"):
        load_wholebody(p)
    p.write_text(json.dumps({"annotations": []}))
    with pytest.raises(AnnotationFormatError, match="no 'images' list at the top level"):
        load_wholebody(p)
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_wholebody(tmp_path / "nope.json")
