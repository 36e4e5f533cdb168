"""A stranger's annotation, detection and results files: every numeric field holding a numeric string, a
boolean or an out-of-range integer is one line naming the file, the record and the field (never read as a
number); the batched reader of large files gives exactly what the whole-file parse gives, or its error."""

from __future__ import annotations

import json

import numpy as np
import pytest

import wholebody.cocowb as cocowb
from wholebody.cocowb import AnnotationError, read_detections, read_wholebody
from wholebody.evaluation.results import read_rows
from wholebody.keypoints import BOX_PARTS
from wholebody.keypoints import COCO_WHOLEBODY as S

KPT_KEYS = [S.annotation_keys[p] for p in S.parts]
BOX_KEYS = [S.box_keys[p] for p in BOX_PARTS]


def _ann(ann_id: int, image_id: int = 1, **over) -> dict:
    a = {"id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0, "area": 900.0, "num_keypoints": 1,
         "bbox": [10.0, 20.0, 30.0, 60.0], **{k: [0.0] * (3 * S.num_part(p)) for p, k in zip(S.parts, KPT_KEYS)},
         **{k: [1.0, 2.0, 3.0, 4.0] for k in BOX_KEYS}, **{S.valid_keys[p]: True for p in S.valid_keys}}
    a["keypoints"][0:3] = [25.0, 30.0, 2]
    a.update(over)
    return a


def _doc(anns: list, **image) -> dict:
    return {"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 96, **image}], "annotations": anns,
            "categories": [{"id": 1, "name": "person"}]}


@pytest.fixture(params=["whole", "batched"])
def path_kind(request, monkeypatch):
    """Read through the whole-file parse, or through the batched reader with one annotation a batch."""
    if request.param == "batched":
        monkeypatch.setattr(cocowb, "BATCHED_MIN_BYTES", 0)
        monkeypatch.setattr(cocowb, "BATCH_ANNOTATIONS", 1)
        monkeypatch.setattr(cocowb, "SCAN_BLOCK", 64)
    return request.param


def _one_line(e: pytest.ExceptionInfo, *needles: str) -> None:
    msg = str(e.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg, (needle, msg)


# ----------------------------------------------------------------------------- annotation files
@pytest.mark.parametrize("key, index", [(k, 4) for k in KPT_KEYS] + [("bbox", 2)] + [(k, 3) for k in BOX_KEYS])
@pytest.mark.parametrize("bad", ["12.5", True, False])
def test_numbers_in_lists_are_json_numbers(tmp_path, path_kind, key, index, bad):
    a = _ann(2)
    a[key][index] = bad
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(_doc([_ann(1), a])))
    with pytest.raises(AnnotationError) as e:
        read_wholebody(path)
    _one_line(e, str(path), "annotation id 2 (#1, image_id 1)", f"{key!r}[{index}] is not a number ({bad!r})")


@pytest.mark.parametrize("bad", ["12.5", True, [900.0]])
def test_area_is_a_json_number(tmp_path, path_kind, bad):
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(_doc([_ann(1), _ann(2, area=bad)])))
    with pytest.raises(AnnotationError) as e:
        read_wholebody(path)
    _one_line(e, str(path), "annotation id 2 (#1, image_id 1)", f"'area' is not a number ({bad!r})")


@pytest.mark.parametrize("key", ["id", "image_id", "category_id", "num_keypoints"])
@pytest.mark.parametrize("bad", ["1", True, 2**64 - 1, 2**63])
def test_integer_fields_are_json_integers_in_range(tmp_path, path_kind, key, bad):
    """2**64 - 1 read as uint64 used to wrap to -1 (a category_id of -1, a negative count)."""
    a = _ann(2, **{key: bad})
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(_doc([_ann(1), a])))
    with pytest.raises(AnnotationError) as e:
        read_wholebody(path)
    _one_line(e, str(path), "#1", f"{key!r} must be an integer, got {bad!r}")


@pytest.mark.parametrize("key", ["width", "height"])
@pytest.mark.parametrize("bad", ["640", True])
def test_image_sizes_are_json_integers(tmp_path, path_kind, key, bad):
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(_doc([_ann(1)], **{key: bad})))
    with pytest.raises(AnnotationError) as e:
        read_wholebody(path)
    _one_line(e, str(path), "image entry #0 (id 1)", f"got {key} {bad!r}")


@pytest.mark.parametrize("change, needle", [
    ({"bbox": [1, 2, "30", 40]}, "'bbox'[2] is not a number ('30')"),
    ({"bbox": [1, 2, True, 40]}, "'bbox'[2] is not a number (True)"),
    ({"score": "0.9"}, "'score' is not a number ('0.9')"),
    ({"category_id": True}, "'category_id' must be an integer, got True"),
    ({"category_id": 2**64 - 1}, f"'category_id' must be an integer, got {2**64 - 1}"),
])
def test_detection_fields_are_json_numbers(tmp_path, change, needle):
    rows = [{"image_id": 1, "category_id": 1, "bbox": [1, 2, 30, 40], "score": 0.9}] * 2
    path = tmp_path / "dets.json"
    path.write_text(json.dumps([rows[0], {**rows[1], **change}]))
    with pytest.raises(AnnotationError) as e:
        read_detections(path)
    _one_line(e, str(path), "detection #1 (image_id 1)", needle)


def test_a_valid_file_reads_the_same_numbers_either_way(tmp_path, monkeypatch):
    """The guard refuses only what is not a number: ints and floats read as before on both paths."""
    anns = [_ann(1), _ann(2, area=7, bbox=[1, 2, 3, 4])]
    anns[1]["face_kpts"][:3] = [5, 6.5, 1]
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(_doc(anns)))
    whole = read_wholebody(path)
    assert whole.area.tolist() == [900.0, 7.0] and whole.bbox[1].tolist() == [1, 2, 3, 4]
    assert whole.keypoints[1, S.slice("face").start].tolist() == [5, 6.5, 1]
    monkeypatch.setattr(cocowb, "BATCHED_MIN_BYTES", 0)
    monkeypatch.setattr(cocowb, "BATCH_ANNOTATIONS", 1)
    batched = read_wholebody(path)
    for name, arr in whole.arrays().items():
        assert np.array_equal(getattr(batched, name), arr), name


# ----------------------------------------------------------------------------- results files
def _row(**change) -> dict:
    row = {"image_id": 1, "category_id": 1, "score": 0.9, **{k: [1.0] * (3 * S.num_part(p))
                                                             for p, k in zip(S.parts, KPT_KEYS)}}
    row.update(change)
    return row


@pytest.mark.parametrize("change, needle", [
    ({"image_id": True}, "'image_id' must be an integer, got True"),
    ({"image_id": "1"}, "'image_id' must be an integer, got '1'"),
    ({"image_id": 2**64 - 1}, f"'image_id' must be an integer, got {2**64 - 1}"),
    ({"category_id": True}, "'category_id' must be an integer, got True"),
    ({"category_id": 2**63}, f"'category_id' must be an integer, got {2**63}"),
    ({"score": "0.9"}, "'score' is not a number ('0.9')"),
    ({"keypoints": [1.0] * 50 + ["1"]}, "'keypoints'[50] is not a number ('1')"),
    ({"keypoints": [True] + [1.0] * 50}, "'keypoints'[0] is not a number (True)"),
    ({"face_kpts": [1.0] * 203 + [False]}, "'face_kpts'[203] is not a number (False)"),
    ({"righthand_kpts": ["12.5"] + [1.0] * 62}, "'righthand_kpts'[0] is not a number ('12.5')"),
    ({"face_score": True}, "'face_score' is not a number (True)"),
    ({"wholebody_score": "0.5"}, "'wholebody_score' is not a number ('0.5')"),
    ({"bbox": [1, 2, True, 4]}, "'bbox'[2] is not a number (True)"),
    ({"face_box": [1, 2, "3", 4]}, "'face_box'[2] is not a number ('3')"),
    ({"face_box": [1, 2, 3, 4], "face_box_score": True}, "'face_box_score' is not a number (True)"),
])
def test_results_fields_are_json_numbers(change, needle):
    """true read as 1 (an image_id, a category, a keypoint) or "0.5" as a score: refused, naming the row."""
    first = _row(bbox=[1, 2, 3, 4]) if "bbox" in change else _row()
    with pytest.raises(AnnotationError) as e:
        read_rows([first, _row(**change)], source="res.json")
    _one_line(e, "res.json: result #1 (image_id", needle)


def test_valid_results_still_read():
    rows = read_rows([_row(), _row(image_id=2, category_id=3, score=1, face_score=0.5)], source="res.json")
    assert rows.image_id.tolist() == [1, 2] and rows.category_id.tolist() == [1, 3]
    assert rows.scores["face"].tolist() == [0.9, 0.5]


# ----------------------------------------------------------------------------- the batched reader
def _outcome(path, monkeypatch, batched: bool, block: int = 1 << 24):
    """What reading ``path`` gives: ("ok", arrays) or ("error", message)."""
    monkeypatch.setattr(cocowb, "BATCHED_MIN_BYTES", 0 if batched else 1 << 60)
    monkeypatch.setattr(cocowb, "BATCH_ANNOTATIONS", 1)
    monkeypatch.setattr(cocowb, "SCAN_BLOCK", block)
    try:
        cols = read_wholebody(path)
    except AnnotationError as e:
        return "error", str(e)
    return "ok", {k: v.tolist() for k, v in cols.arrays().items()}


A1, A2 = json.dumps(_ann(1)), json.dumps(_ann(2))
IMAGES = '[{"id": 1, "file_name": "a.jpg", "width": 64, "height": 96}]'


@pytest.mark.parametrize("text, whole_gives", [
    # invalid JSON between, before and after the elements of the array
    (f'{{"images": {IMAGES}, "annotations": [{A1}, x {A2}]}}', "not valid JSON"),
    (f'{{"images": {IMAGES}, "annotations": [{A1} {A2}]}}', "not valid JSON"),
    (f'{{"images": {IMAGES}, "annotations": [{A1},, {A2}]}}', "not valid JSON"),
    (f'{{"images": {IMAGES}, "annotations": [, {A1}, {A2}]}}', "not valid JSON"),
    (f'{{"images": {IMAGES}, "annotations": [{A1}, {A2},]}}', "not valid JSON"),
    (f'{{"images": {IMAGES}, "annotations": [\x0c]}}', "not valid JSON"),
    (f'{{"images": {IMAGES}, "annotations": [{A1},\x0c{A2}]}}', "not valid JSON"),
    # valid JSON with something that is no annotation between two
    (f'{{"images": {IMAGES}, "annotations": [{A1}, 5, {A2}]}}', "annotation #1: not a JSON object"),
    (f'{{"images": {IMAGES}, "annotations": [{A1}, "x", {A2}]}}', "annotation #1: not a JSON object"),
    # a bad record (an annotation, an image) and invalid JSON in a later batch: the JSON is reported
    (f'{{"images": {IMAGES}, "annotations": [{json.dumps(_ann(1, bbox="x"))}, {A2}, ]}}', "not valid JSON"),
    (f'{{"images": {IMAGES}, "annotations": [{json.dumps(_ann(1, bbox="x"))}, {{"id": tru}}]}}', "not valid JSON"),
    (f'{{"images": [{{"id": true}}], "annotations": [{A1}, {{"id": tru}}]}}', "not valid JSON"),
    # decoy "annotations": a second key (the last wins), an escaped quote in a key, a string, an image
    (f'{{"annotations": [{A1}, {A2}], "images": {IMAGES}, "annotations": []}}', "ok 0"),
    (f'{{"annotations": [{A1}], "images": {IMAGES}, "annotations": [{A2}]}}', "ok 1"),
    (f'{{"x\\"annotations": [{A1}, {A2}], "images": {IMAGES}, "annotations": []}}', "ok 0"),
    (f'{{"annotations": [{A1}, {A2}], "images": {IMAGES}, "annot\\u0061tions": []}}', "ok 0"),
    (f'{{"info": "\\"annotations\\": [{{}}, {{}}]", "images": {IMAGES}, "annotations": [{A1}]}}', "ok 1"),
    (f'{{"images": [{{"id": 1, "annotations": [{A2}]}}], "annotations": [{A1}]}}', "ok 1"),
])
def test_the_batched_reader_gives_what_the_whole_file_parse_gives(tmp_path, monkeypatch, text, whole_gives):
    path = tmp_path / "ann.json"
    path.write_text(text)
    whole = _outcome(path, monkeypatch, batched=False)
    if whole_gives.startswith("ok"):
        assert whole[0] == "ok" and len(whole[1]["ann_ids"]) == int(whole_gives.split()[1])
    else:
        assert whole[0] == "error" and whole_gives in whole[1] and str(path) in whole[1]
    for block in (7, 64, 1 << 24):  # scan blocks that cut the file anywhere
        assert _outcome(path, monkeypatch, batched=True, block=block) == whole, block
