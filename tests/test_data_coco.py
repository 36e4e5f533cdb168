"""Annotation and detection loading: records, what is dropped and counted, and bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from wholebody.data.coco import AnnotationError, load_coco_wholebody, load_detections, read_json
from wholebody.keypoints import BOX_PARTS
from wholebody.keypoints import COCO_WHOLEBODY as S


def _ann(ann_id: int, image_id: int = 1, **over) -> dict:
    """A valid person annotation: left wrist, nose and a left hand with a box."""
    a = {
        "id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0, "area": 900.0, "num_keypoints": 2,
        "bbox": [10.0, 20.0, 30.0, 60.0], "segmentation": [],
        **{S.annotation_keys[p]: [0.0] * (3 * S.num_part(p)) for p in S.parts},
        **{S.box_keys[p]: [0.0] * 4 for p in BOX_PARTS},
        **{S.valid_keys[p]: False for p in S.valid_keys},
    }
    a["keypoints"][0:3] = [25.0, 30.0, 2]
    a["keypoints"][3 * S.index("left_wrist"):3 * S.index("left_wrist") + 3] = [33.5, 55.25, 1]
    a["lefthand_kpts"][0:6] = [34.0, 56.0, 0.9, 36.0, 60.0, 0.8]
    a["lefthand_box"] = [33.0, 55.0, 4.0, 6.0]
    a["lefthand_valid"] = True
    a.update(over)
    return a


def _doc(anns: list[dict], images=None) -> dict:
    images = images or [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 96}]
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}


def _write(tmp_path, doc, name="ann.json") -> str:
    p = tmp_path / name
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return str(p)


# ----------------------------------------------------------------------------- good input
def test_record_fields_follow_the_spec(tmp_path):
    path = _write(tmp_path, _doc([_ann(7)]))
    s = load_coco_wholebody(path)
    (r,) = s.records
    assert (r.image_id, r.ann_id, r.image_size) == (1, 7, (64, 96))
    assert r.image_path == str(tmp_path / "a.jpg")
    assert r.keypoints.shape == (133, 3) and r.keypoints.dtype == np.float64
    # the file's pixel indices (COCO: pixel i's centre at i) become pixel centres at i + 0.5; boxes stay
    np.testing.assert_array_equal(r.keypoints[S.index("left_wrist")], [33.5 + 0.5, 55.25 + 0.5, 1])
    np.testing.assert_array_equal(r.keypoints[S.slice("lefthand")][:2], [[34.5, 56.5, 0.9], [36.5, 60.5, 0.8]])
    assert not r.keypoints[S.slice("lefthand")][2:, :2].any()  # unlabelled keypoints stay at 0
    np.testing.assert_array_equal(r.bbox, [10, 20, 40, 80])  # xywh -> xyxy
    np.testing.assert_array_equal(r.part_valid, [False, True, False])
    np.testing.assert_array_equal(r.part_boxes, [[0, 0, 0, 0], [33, 55, 37, 61], [0, 0, 0, 0]])
    assert (r.area, r.score, r.num_keypoints) == (900.0, 1.0, 2)


def test_drops_crowd_no_keypoint_and_tiny_boxes_with_counts(tmp_path):
    empty = _ann(3)
    for p in S.parts:
        empty[S.annotation_keys[p]] = [0.0] * (3 * S.num_part(p))
    hands_only = _ann(5)  # no body keypoint but a labelled hand: kept (num_keypoints is body-only)
    hands_only["keypoints"] = [0.0] * 51
    hands_only["num_keypoints"] = 0
    anns = [
        _ann(1),
        {"id": 2, "image_id": 1, "iscrowd": 1, "bbox": [0, 0, 10, 10], "category_id": 1},  # crowd: few fields
        empty,
        _ann(4, bbox=[70.0, 20.0, 10.0, 10.0]),  # entirely right of the 64 px image: 0 px after clipping
        hands_only,
        _ann(6, bbox=[50.0, -5.0, 30.0, 40.0]),  # clipped to the image
        _ann(8, bbox=[5.0, 5.0, 0.0, 10.0]),  # zero width: skipped like COCO does
    ]
    s = load_coco_wholebody(_write(tmp_path, _doc(anns)))
    assert [r.ann_id for r in s.records] == [1, 5, 6]
    st = s.stats
    assert (st.annotations, st.kept, st.crowd, st.no_keypoints, st.small_box) == (7, 3, 1, 1, 2)
    np.testing.assert_array_equal(s.records[2].bbox, [50, 0, 64, 35])
    assert "dropped 1 crowd, 1 without labelled keypoints, 2 box" in st.summary()


def test_real_sample_yields_the_twelve_usable_persons(real_sample_json):
    s = load_coco_wholebody(real_sample_json)
    assert len(s.records) == 12 and s.stats.no_keypoints == 2 and s.stats.crowd == 0
    raw = json.loads(real_sample_json.read_text())
    by_id = {a["id"]: a for a in raw["annotations"]}
    for r in s.records:
        a = by_id[r.ann_id]
        for part in S.parts:
            in_file = np.asarray(a[S.annotation_keys[part]], dtype=np.float64).reshape(-1, 3)
            labelled = in_file[:, 2] > 0  # COCO's pixel indices -> pixel centres (+0.5); unlabelled stay 0
            np.testing.assert_array_equal(r.keypoints[S.slice(part)][labelled], in_file[labelled] + [0.5, 0.5, 0])
            assert not r.keypoints[S.slice(part)][~labelled].any()
        for j, part in enumerate(BOX_PARTS):
            assert r.part_valid[j] == a[S.valid_keys[part]]
            if r.part_valid[j]:
                x, y, w, h = a[S.box_keys[part]]
                np.testing.assert_allclose(r.part_boxes[j], [x, y, x + w, y + h])
            else:
                assert not r.part_boxes[j].any()
        assert (r.bbox[2:] <= r.image_size).all()
    assert {r.image_id for r in s.records} == {im["id"] for im in raw["images"]}


# ----------------------------------------------------------------------------- bad input
def _error(tmp_path, doc) -> AnnotationError:
    path = _write(tmp_path, doc)
    with pytest.raises(AnnotationError) as e:
        load_coco_wholebody(path)
    assert path in str(e.value)
    return e.value


def test_malformed_json_names_the_file(tmp_path):
    e = _error(tmp_path, '{"images": [}')
    assert "not valid JSON" in str(e)


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(AnnotationError, match="nope.json"):
        read_json(tmp_path / "nope.json")


@pytest.mark.parametrize("field", ["face_kpts", "lefthand_valid", "bbox", "area", "num_keypoints"])
def test_missing_required_field(tmp_path, field):
    a = _ann(42)
    del a[field]
    e = _error(tmp_path, _doc([_ann(1), a]))
    assert "annotation id 42" in str(e) and field in str(e) and e.record == "annotation id 42"


@pytest.mark.parametrize("field,n", [("keypoints", 50), ("foot_kpts", 21), ("righthand_kpts", 60), ("face_box", 3)])
def test_wrong_length_arrays(tmp_path, field, n):
    e = _error(tmp_path, _doc([_ann(9, **{field: [1.0] * n})]))
    assert "annotation id 9" in str(e) and field in str(e)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("field", ["keypoints", "lefthand_kpts", "bbox"])
def test_non_finite_numbers(tmp_path, field, value):
    a = _ann(11)
    a[field] = list(a[field])
    a[field][1] = value
    e = _error(tmp_path, json.dumps(_doc([a])))  # json writes NaN / Infinity literals
    assert "annotation id 11" in str(e) and "non-finite" in str(e) and field in str(e)


def test_non_numeric_values(tmp_path):
    a = _ann(12)
    a["face_kpts"] = ["x"] * 204
    e = _error(tmp_path, _doc([a]))
    assert "annotation id 12" in str(e) and "face_kpts" in str(e) and "is not a number" in str(e)


@pytest.mark.parametrize("field", ["bbox", "face_box"])
def test_negative_boxes(tmp_path, field):
    e = _error(tmp_path, _doc([_ann(13, **{field: [1.0, 1.0, -2.0, 3.0]})]))
    assert "annotation id 13" in str(e) and field in str(e) and "negative" in str(e)


@pytest.mark.parametrize(
    "over,needle",
    [
        ({"id": "abc"}, "'id' must be an integer"),
        ({"image_id": [1]}, "'image_id' must be an integer"),
        ({"num_keypoints": "x"}, "'num_keypoints'"),
        ({"num_keypoints": None}, "'num_keypoints'"),
        ({"foot_valid": "yes"}, "'foot_valid'"),
        ({"face_valid": 2}, "'face_valid'"),
        ({"iscrowd": "0"}, "'iscrowd'"),
    ],
)
def test_wrongly_typed_fields_name_the_field(tmp_path, over, needle):
    e = _error(tmp_path, _doc([_ann(1), _ann(16, **over)]))
    assert needle in str(e) and str(tmp_path) in str(e)
    assert "annotation" in e.record


def test_duplicate_ids_and_bad_file_names(tmp_path):
    e = _error(tmp_path, _doc([_ann(17), _ann(17)]))
    assert "duplicate annotation id" in str(e) and e.record.startswith("annotation id 17 (#1")
    e = _error(tmp_path, _doc([], images=[{"id": 1, "file_name": None, "width": 5, "height": 5}]))
    assert "'file_name'" in str(e) and "image entry #0 (id 1)" in str(e)


def test_crowd_annotations_need_only_their_ids(tmp_path):
    """A crowd region in a minimal form (no category, no keypoints) is dropped and counted."""
    s = load_coco_wholebody(_write(tmp_path, _doc([_ann(18), {"id": 19, "image_id": 1, "iscrowd": 1}])))
    assert [r.ann_id for r in s.records] == [18] and s.stats.crowd == 1


def test_unknown_image_and_bad_images(tmp_path):
    e = _error(tmp_path, _doc([_ann(14, image_id=99)]))
    assert "annotation id 14" in str(e) and "image_id 99" in str(e)
    e = _error(tmp_path, _doc([], images=[{"id": 1, "file_name": "a.jpg", "width": 0, "height": 5}]))
    assert "image entry #0 (id 1)" in str(e)
    e = _error(tmp_path, {"annotations": []})
    assert "images" in str(e)


def test_valid_part_without_area_becomes_invalid(tmp_path, caplog):
    s = load_coco_wholebody(_write(tmp_path, _doc([_ann(15, lefthand_box=[33.0, 55.0, 0.0, 6.0])])))
    assert not s.records[0].part_valid.any() and s.stats.degenerate_part_box == 1
    assert "annotation id 15" in caplog.text


# ----------------------------------------------------------------------------- detections
def _images(tmp_path):
    return load_coco_wholebody(_write(tmp_path, _doc([_ann(1)]))).images


def test_detections_threshold_category_and_clipping(tmp_path):
    dets = [
        {"image_id": 1, "category_id": 1, "bbox": [10, 20, 30, 40], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [10, 20, 30, 40], "score": 0.2},
        {"image_id": 1, "category_id": 2, "bbox": [10, 20, 30, 40], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [50, 80, 40, 40], "score": 0.5},
        {"image_id": 1, "category_id": 1, "bbox": [64, 10, 5, 5], "score": 0.95},
    ]
    table, st = load_detections(_write(tmp_path, dets, "dets.json"), _images(tmp_path), score_thr=0.3)
    recs = [table.record(i) for i in range(len(table))]
    assert [(r.ann_id, r.bbox_id, r.score) for r in recs] == [(-1, 0, 0.9), (-1, 3, 0.5)]  # index in the file
    np.testing.assert_array_equal(recs[1].bbox, [50, 80, 64, 96])
    assert recs[1].area == 14 * 16 and not recs[0].part_valid.any() and not recs[0].keypoints.any()
    assert (st.low_score, st.other_category, st.small_box, st.kept) == (1, 1, 1, 2)


@pytest.mark.parametrize(
    "det,needle",
    [
        ({"image_id": 5, "category_id": 1, "bbox": [1, 1, 2, 2], "score": 1}, "image_id 5 is not in"),
        ({"image_id": 1, "category_id": 1, "bbox": [1, 1, 2], "score": 1}, "'bbox' has 3 values, expected 4"),
        ({"image_id": 1, "category_id": 1, "bbox": [1, 1, -2, 2], "score": 1}, "negative"),
        ({"image_id": 1, "category_id": 1, "bbox": [1, math.nan, 2, 2], "score": 1}, "non-finite"),
        ({"image_id": 1, "bbox": [1, 1, 2, 2], "score": 1}, "category_id"),
    ],
)
def test_bad_detections(tmp_path, det, needle):
    images = _images(tmp_path)
    path = _write(tmp_path, json.dumps([{"image_id": 1, "category_id": 1, "bbox": [1, 1, 9, 9], "score": 1}, det]),
                  "dets.json")
    with pytest.raises(AnnotationError) as e:
        load_detections(path, images)
    assert path in str(e.value) and "detection #1" in str(e.value) and needle in str(e.value)
