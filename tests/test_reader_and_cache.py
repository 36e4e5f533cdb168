"""The one COCO-WholeBody reader (wholebody.cocowb) and the column cache every rank maps.

Every rule the three former readers had is checked here through the one reader, with each consumer's
policy on top: the training data (data.coco), the evaluator (evaluation.groundtruth) and the dataset
tools (datatools.annotations).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import pickle
import struct
import time

import numpy as np
import pytest

from wholebody import column_cache
from wholebody.cocowb import (
    AnnotationError,
    WholeBodyColumns,
    parse_wholebody,
    read_detections,
    read_wholebody,
)
from wholebody.column_cache import CacheError, cache_path, cached_columns, map_columns, write_columns
from wholebody.data.coco import load_coco_wholebody, load_detections
from wholebody.datatools.annotations import load_wholebody
from wholebody.evaluation.groundtruth import load_ground_truth
from wholebody.keypoints import BOX_PARTS
from wholebody.keypoints import COCO_WHOLEBODY as S


def _ann(ann_id: int, image_id: int = 1, **over) -> dict:
    a = {
        "id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0, "area": 900.0, "num_keypoints": 1,
        "bbox": [10.0, 20.0, 30.0, 60.0],
        **{S.annotation_keys[p]: [0.0] * (3 * S.num_part(p)) for p in S.parts},
        **{S.box_keys[p]: [0.0] * 4 for p in BOX_PARTS},
        **{S.valid_keys[p]: False for p in S.valid_keys},
    }
    a["keypoints"][0:3] = [25.0, 30.0, 2]
    a["face_kpts"][0:3] = [26.25, 31.5, 1]
    a["face_box"], a["face_valid"] = [20.0, 25.0, 12.0, 10.0], True
    a.update(over)
    return a


def _doc(anns, images=None, categories=True) -> dict:
    d = {"images": images or [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 96}], "annotations": anns}
    if categories:
        d["categories"] = [{"id": 1, "name": "person"}]
    return d


def _write(tmp_path, doc, name="ann.json"):
    p = tmp_path / name
    p.write_text(json.dumps(doc))
    return p


# ----------------------------------------------------------------------------- the reader
def test_columns_hold_the_file_as_it_is(tmp_path):
    c = read_wholebody(_write(tmp_path, _doc([_ann(7), _ann(8, iscrowd=1)])))
    assert (c.num_images, c.num_annotations) == (1, 2) and c.file_name(0) == "a.jpg"
    assert c.keypoints.dtype == np.float64 and c.keypoints.shape == (2, 133, 3)
    np.testing.assert_array_equal(c.keypoints[0, S.index("nose")], [25.0, 30.0, 2])  # no pixel shift here
    np.testing.assert_array_equal(c.keypoints[0, S.slice("face")][0], [26.25, 31.5, 1])
    np.testing.assert_array_equal(c.labelled[0], [1, 0, 1, 0, 0])
    np.testing.assert_array_equal(c.iscrowd, [False, True])
    np.testing.assert_array_equal(c.bbox[0], [10, 20, 30, 60])  # xywh as in the file
    assert c.present.all() and c.image_index.tolist() == [0, 0]


def test_the_real_sample_reads_identically_through_every_consumer(real_sample_json):
    c = read_wholebody(real_sample_json)
    assert (c.num_images, c.num_annotations) == (4, 14)
    train = load_coco_wholebody(real_sample_json, columns=c)
    assert train.stats.kept == 12 and train.stats.no_keypoints == 2
    gt = load_ground_truth(real_sample_json)
    tools = load_wholebody(real_sample_json)
    np.testing.assert_array_equal(gt.keypoints, c.keypoints)  # the evaluator sees the file's numbers
    np.testing.assert_array_equal(tools.keypoints[..., 2], c.keypoints[..., 2])
    labelled = c.keypoints[..., 2] > 0
    np.testing.assert_allclose(tools.keypoints[labelled][:, :2], c.keypoints[labelled][:, :2] + 0.5)
    np.testing.assert_array_equal(gt.part_box_valid, c.part_box_usable())


def test_a_valid_part_box_without_area_follows_one_rule_everywhere(tmp_path, caplog):
    """The former readers disagreed (training: invalid + warning; evaluator: silently invalid; tools: kept).
    Now: usable = flagged valid and with area, for all; training counts and logs it once; the tools keep
    the file's flag and report the box as having no area."""
    path = _write(tmp_path, _doc([_ann(1, lefthand_box=[33.0, 55.0, 0.0, 6.0], lefthand_valid=True), _ann(2)]))
    c = read_wholebody(path)
    np.testing.assert_array_equal(c.degenerate_part_boxes()[:, BOX_PARTS.index("lefthand")], [True, False])
    with caplog.at_level(logging.WARNING):
        train = load_coco_wholebody(path)
    assert train.stats.degenerate_part_box == 1 and caplog.text.count("no area") == 1
    assert not train.persons.part_valid[0, BOX_PARTS.index("lefthand")]
    assert train.persons.part_valid[:, BOX_PARTS.index("face")].all()
    gt = load_ground_truth(path)
    np.testing.assert_array_equal(gt.part_box_valid, c.part_box_usable())
    tools = load_wholebody(path)
    assert tools.valid["lefthand"][0] and not tools.has_box("lefthand")[0]


def test_consumers_apply_their_own_policy(tmp_path):
    # an annotation of an unlisted image: refused for training and the tools, ignored by the evaluator
    path = _write(tmp_path, _doc([_ann(1), _ann(2, image_id=99)]))
    with pytest.raises(AnnotationError, match="image_id 99 is not in 'images'"):
        load_coco_wholebody(path)
    with pytest.raises(AnnotationError, match="refers to image_id 99"):
        load_wholebody(path)
    assert load_ground_truth(path).ann_ids.tolist() == [1]
    # no categories: the evaluator needs them, training does not
    path = _write(tmp_path, _doc([_ann(1)], categories=False))
    with pytest.raises(AnnotationError, match="categories"):
        load_ground_truth(path)
    assert load_coco_wholebody(path).stats.kept == 1
    # images given by id only: enough for the evaluator; training refuses an image its persons need
    path = _write(tmp_path, _doc([_ann(1)], images=[{"id": 1}]))
    assert load_ground_truth(path).num_annotations == 1
    with pytest.raises(AnnotationError, match=r"image entry #0 \(id 1\): missing field\(s\) \['file_name'"):
        load_coco_wholebody(path)
    # a crowd region needs only its ids for training (dropped, counted); the evaluator needs its keypoints
    path = _write(tmp_path, _doc([_ann(1), {"id": 2, "image_id": 1, "iscrowd": 1}]))
    assert load_coco_wholebody(path).stats.crowd == 1
    with pytest.raises(AnnotationError, match=r"annotation id 2 \(#1, image_id 1\): missing 'category_id'"):
        load_ground_truth(path)


@pytest.mark.parametrize(
    "edit, needle",
    [
        (lambda a: a["face_kpts"].__setitem__(2, -1), "negative visibility in 'face_kpts'"),
        (lambda a: a.__setitem__("bbox", [1, 1, -2, 2]), "'bbox' has a negative width or height"),
        (lambda a: a.__setitem__("face_box", [1, 1, 2, -2]), "'face_box' has a negative width or height"),
        (lambda a: a.__setitem__("area", -1.0), "negative 'area'"),
        (lambda a: a.__setitem__("iscrowd", 2), "'iscrowd' must be true/false"),
        (lambda a: a.__setitem__("face_valid", "yes"), "'face_valid' must be true/false"),
        (lambda a: a.__setitem__("num_keypoints", -3), "'num_keypoints' must be a count"),
        (lambda a: a.__setitem__("lefthand_kpts", [0.0] * 60), "'lefthand_kpts' has 60 values, expected 63"),
        (lambda a: a.__setitem__("id", 1), "duplicate annotation id"),
    ],
)
def test_format_rules_hold_for_every_consumer(tmp_path, edit, needle):
    """The format's rules live in the reader: all three consumers refuse the same file with the same line."""
    a = _ann(2)
    edit(a)
    path = _write(tmp_path, _doc([_ann(1), a]))
    messages = set()
    for load in (load_coco_wholebody, load_ground_truth, load_wholebody):
        with pytest.raises(AnnotationError) as e:
            load(path)
        assert needle in str(e.value) and str(path) in str(e.value) and "\n" not in str(e.value)
        messages.add(str(e.value))
    assert len(messages) == 1


def test_parsing_a_dict_leaves_it_unchanged(tmp_path):
    doc = _doc([_ann(1)])
    before = json.dumps(doc)
    parse_wholebody(doc)
    assert json.dumps(doc) == before


def test_one_detection_reader_for_validation_and_predict(tmp_path):
    from wholebody.inference.boxes import read_detections as predict_boxes

    ann = load_coco_wholebody(_write(tmp_path, _doc([_ann(1)], images=[
        {"id": 1, "file_name": "a.jpg", "width": 64, "height": 96},
        {"id": 2, "file_name": "b.jpg", "width": 64, "height": 96}])))
    dets = [{"image_id": 2, "category_id": 1, "bbox": [1, 1, 9, 9], "score": 0.5},
            {"image_id": 1.0, "category_id": 1, "bbox": [2, 2, 9, 9], "score": 0.9},
            {"image_id": 2, "category_id": 1, "bbox": [3, 3, 9, 9], "score": 0.7}]
    path = _write(tmp_path, dets, "dets.json")
    d = read_detections(path)
    assert d.image_id.tolist() == [2, 1, 2] and d.score.tolist() == [0.5, 0.9, 0.7]
    persons, _ = load_detections(path, ann)
    assert persons.image_id.tolist() == [1, 2, 2] and persons.bbox_id.tolist() == [1, 0, 2]  # by image
    boxes = predict_boxes(path)
    assert boxes.for_image(2).ids.tolist() == [0, 2]
    bad = _write(tmp_path, [{"image_id": 1, "bbox": [1, 1, 2, 2], "score": 1}], "bad.json")
    for load in (read_detections, lambda p: load_detections(p, ann), predict_boxes):
        with pytest.raises(AnnotationError, match=r"bad.json: detection #0: missing field\(s\) \['category_id'\]"):
            load(bad)


# ----------------------------------------------------------------------------- the cache
def test_the_cache_is_built_once_and_reused(tmp_path, monkeypatch):
    path = _write(tmp_path, _doc([_ann(1), _ann(2)]))
    cache = tmp_path / "cache"
    calls = []
    real = column_cache.read_wholebody
    monkeypatch.setattr(column_cache, "read_wholebody", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = cached_columns(path, cache)
    built = cache_path(path, cache)
    assert calls == [1] and first.mapped_from == str(built) and built.is_file()
    stamp = built.stat().st_mtime_ns
    second = cached_columns(path, cache)
    assert calls == [1] and built.stat().st_mtime_ns == stamp  # mapped, not rebuilt
    direct = read_wholebody(path)
    for name, arr in direct.arrays().items():
        got = second.arrays()[name]
        assert got.dtype == arr.dtype and got.shape == arr.shape and np.array_equal(got, arr), name
    assert not second.keypoints.flags.writeable  # a read-only map
    # pickling (spawned workers) sends the path, and the receiver maps the same file
    blob = pickle.dumps(second)
    assert len(blob) < 1000 and np.array_equal(pickle.loads(blob).keypoints, direct.keypoints)


def test_a_changed_source_or_reader_rebuilds(tmp_path, monkeypatch):
    path = _write(tmp_path, _doc([_ann(1)]))
    cache = tmp_path / "cache"
    a = cached_columns(path, cache)
    time.sleep(0.01)
    _write(tmp_path, _doc([_ann(1), _ann(5)]))
    b = cached_columns(path, cache)
    assert b.mapped_from != a.mapped_from and b.ann_ids.tolist() == [1, 5]
    # same content, new mtime (a copy, a touch): the content hash finds the same cache
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert cached_columns(path, cache).mapped_from == b.mapped_from
    monkeypatch.setattr(column_cache, "READER_VERSION", 999)
    c = cached_columns(path, cache)
    assert c.mapped_from != b.mapped_from and "-r999-" in c.mapped_from


def test_an_edited_file_leaves_one_cache_not_one_per_edit(tmp_path, caplog):
    cache = tmp_path / "cache"
    path = _write(tmp_path, _doc([_ann(1)]))
    # a file of the same name and content elsewhere shares the cache file, so it protects it
    twin = tmp_path / "copy"
    twin.mkdir()
    _write(twin, _doc([_ann(1)]))
    first = cached_columns(path, cache)
    assert cached_columns(twin / "ann.json", cache).mapped_from == first.mapped_from
    held, original = first.keypoints, read_wholebody(path).keypoints  # a process still mapping the old cache
    for n, ids in enumerate(([1, 5], [1, 5, 6]), start=1):
        time.sleep(0.01)
        _write(tmp_path, _doc([_ann(i) for i in ids]))
        with caplog.at_level(logging.INFO, logger="wholebody.column_cache"):
            now = cached_columns(path, cache)
        assert now.ann_ids.tolist() == ids
        kept = sorted(p.name for p in cache.glob("*.wbcols"))
        if n == 1:  # the twin still has the first content: both caches stay
            assert kept == sorted([first.mapped_from.rsplit("/", 1)[1], now.mapped_from.rsplit("/", 1)[1]])
            second = now.mapped_from
        else:  # the second content has no other source: its cache goes, the twin's stays
            assert not os.path.exists(second) and os.path.exists(first.mapped_from)
            assert len(kept) == 2 and "an earlier content" in caplog.text
    # once the twin changes too, the first content's cache goes as well
    time.sleep(0.01)
    _write(twin, _doc([_ann(9)]))
    cached_columns(twin / "ann.json", cache)
    assert not os.path.exists(first.mapped_from) and len(list(cache.glob("*.wbcols"))) == 2
    assert np.array_equal(held, original)  # its mapping outlives the deleted file


def _second_column_past_the_end(raw: bytes) -> bytes:
    """The column file ``raw`` with a valid header whose second column runs past the end of the file."""
    from wholebody.column_file import MAGIC

    hlen = struct.unpack("<Q", raw[8:16])[0]
    doc = json.loads(raw[16 : 16 + hlen])
    doc["arrays"][list(doc["arrays"])[1]]["offset"] = 1 << 40
    start = 16 + hlen + 32
    start += -start % 64
    header = json.dumps(doc).encode()
    head = MAGIC + struct.pack("<Q", len(header)) + header + hashlib.sha256(header).digest()
    out = head + b"\0" * (-len(head) % 64) + raw[start:-8]
    return out + struct.pack("<Q", len(out) + 8)


@pytest.mark.parametrize("damage", ["truncate", "header", "end", "garbage", "column"])
def test_a_corrupt_cache_is_detected_and_rebuilt(tmp_path, caplog, damage):
    path = _write(tmp_path, _doc([_ann(1), _ann(2)]))
    cache = tmp_path / "cache"
    built = cached_columns(path, cache).mapped_from
    raw = bytearray(open(built, "rb").read())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "header":
        raw[20] ^= 0xFF
    elif damage == "end":
        raw[-12] ^= 0xFF
    elif damage == "column":  # the first column is mapped before the second fails its check
        raw = _second_column_past_the_end(bytes(raw))
    else:
        raw = bytearray(b"x" * 100)
    with open(built, "wb") as f:
        f.write(raw)
    with pytest.raises(column_cache.CorruptCacheError):
        map_columns(built)
    with caplog.at_level(logging.WARNING):
        again = cached_columns(path, cache)
    assert "rebuilding the cache" in caplog.text
    assert again.ann_ids.tolist() == [1, 2] and map_columns(built)[1]["reader_version"] == column_cache.READER_VERSION


def test_an_unusable_cache_folder_is_one_clear_line(tmp_path):
    path = _write(tmp_path, _doc([_ann(1)]))
    with pytest.raises(CacheError, match=r"cache folder /proc/wholebody-cache cannot be created.*data.cache_dir"):
        cached_columns(path, "/proc/wholebody-cache")  # read-only for everyone, root included
    (tmp_path / "afile").write_text("x")
    with pytest.raises(CacheError, match="data.cache_dir"):
        cached_columns(path, tmp_path / "afile")


def test_a_read_only_cache_folder_is_one_clear_line(tmp_path):
    path = _write(tmp_path, _doc([_ann(1)]))
    if os.geteuid() == 0:  # root writes into a chmod 0555 folder; /proc/self exists and nobody writes into it
        with pytest.raises(CacheError, match=r"cache folder /proc/self is not writable.*data.cache_dir"):
            cached_columns(path, "/proc/self")
        return
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(CacheError, match=r"cache folder .*ro is not writable.*data.cache_dir"):
            cached_columns(path, ro)
    finally:
        ro.chmod(0o755)


def test_column_files_round_trip_any_arrays(tmp_path):
    arrays = {"a": np.arange(7, dtype=np.int16), "b": np.random.default_rng(0).random((3, 4, 5)),
              "c": np.array(True), "d": np.array([b"x.jpg", b"dir/yy.jpg"]), "e": np.zeros((0, 4))}
    write_columns(tmp_path / "f.wbcols", arrays, {"k": 1})
    back, meta = map_columns(tmp_path / "f.wbcols")
    assert meta == {"k": 1}
    for k, v in arrays.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape and np.array_equal(back[k], v)
        assert back[k].ctypes.data % 64 == 0 or v.nbytes == 0  # aligned


# ----------------------------------------------------------------------------- training's use
def test_the_datamodule_maps_the_cache_it_built_in_prepare_data(tmp_path):
    from wholebody.data.datamodule import WholeBodyDataModule

    root = tmp_path / "root"
    (root / "annotations").mkdir(parents=True)
    (root / "train2017").mkdir()
    (root / "val2017").mkdir()
    import cv2

    cv2.imwrite(str(root / "train2017" / "a.jpg"), np.zeros((96, 64, 3), np.uint8))
    cv2.imwrite(str(root / "val2017" / "a.jpg"), np.zeros((96, 64, 3), np.uint8))
    for split in ("train", "val"):
        _write(root / "annotations", _doc([_ann(1), _ann(2)]), f"coco_wholebody_{split}_v1.0.json")
    dm = WholeBodyDataModule(str(root), input_size=(48, 64), batch_size=2, num_workers=0, cache_dir=str(tmp_path / "c"))
    dm.prepare_data()
    files = sorted(p.name for p in (tmp_path / "c").glob("*.wbcols"))
    assert len(files) == 2
    dm.setup("fit")
    table = dm.train_set._table
    assert table.keypoint_source.mapped_from and not table.keypoint_source.keypoints.flags.writeable  # the map
    blob = pickle.dumps(table)  # a spawned worker gets the cache file's path, not the keypoints
    copied = dataclasses.replace(table, keypoint_source=np.array(table.keypoint_source.keypoints))
    assert len(pickle.dumps(copied)) - len(blob) > 0.9 * copied.keypoint_source.nbytes
    np.testing.assert_array_equal(pickle.loads(blob).keypoints(1), table.keypoints(1))
    assert len(dm.train_set) == 2 and dm.train_set[0]["keypoints"].shape == (133, 3)
    # the two persons share one image: one decode outside training
    dm.val_set[0], dm.val_set[1]
    assert dm.val_set.decodes == 1


def test_a_table_holds_no_python_object_per_person(tmp_path):
    ann = load_coco_wholebody(_write(tmp_path, _doc([_ann(i) for i in range(1, 50)])))
    t = ann.persons
    for name in ("image_index", "image_id", "ann_id", "bbox", "part_boxes", "part_valid", "keypoint_rows"):
        assert isinstance(getattr(t, name), np.ndarray) and not getattr(t, name).dtype.hasobject
    assert "records" not in ann.__dict__ and "images" not in ann.__dict__  # built only when asked for
    assert isinstance(WholeBodyColumns.fields_of(), tuple)


# ----------------------------------------------------------------------------- large files, in batches
def _tricky_doc() -> dict:
    """Strings holding brackets, commas, escaped quotes and backslashes before quotes; a nested
    'annotations' key; annotations before images."""
    anns = [_ann(i, name=f'a "quoted" ] [ {{ }}, \\ x{i}\\', segmentation=[[1.5, 2.5, 3.5]]) for i in range(1, 12)]
    return {"info": {"annotations": [1, 2], "note": 'say "annotations": [ ]'}, "annotations": anns,
            "images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 96}],
            "categories": [{"id": 1, "name": "person\\"}]}


def test_large_files_are_parsed_in_batches_with_the_same_columns(tmp_path, monkeypatch):
    import wholebody.cocowb as cocowb

    path = _write(tmp_path, _tricky_doc())
    whole = read_wholebody(path)  # small: parsed whole
    calls = []
    real = cocowb._AnnotationColumns.add
    monkeypatch.setattr(cocowb._AnnotationColumns, "add", lambda self, anns, offset, consume: calls.append(
        (offset, len(anns))) or real(self, anns, offset, consume))
    monkeypatch.setattr(cocowb, "BATCHED_MIN_BYTES", 0)
    monkeypatch.setattr(cocowb, "BATCH_ANNOTATIONS", 4)
    for block in (7, 64, 1 << 24):  # scan blocks that cut strings, escapes and numbers anywhere
        monkeypatch.setattr(cocowb, "SCAN_BLOCK", block)
        calls.clear()
        batched = read_wholebody(path)
        assert calls == [(0, 4), (4, 4), (8, 3)]
        for name, arr in whole.arrays().items():
            assert np.array_equal(getattr(batched, name), arr), (block, name)


def test_batched_parsing_names_the_record_and_falls_back_on_malformed_json(tmp_path, monkeypatch):
    import wholebody.cocowb as cocowb

    monkeypatch.setattr(cocowb, "BATCHED_MIN_BYTES", 0)
    monkeypatch.setattr(cocowb, "BATCH_ANNOTATIONS", 2)
    doc = _tricky_doc()
    doc["annotations"][5]["face_box"] = [1, 2, 3]
    with pytest.raises(AnnotationError, match=r"annotation id 6 \(#5, image_id 1\): 'face_box' has 3 values"):
        read_wholebody(_write(tmp_path, doc))
    doc["annotations"][5]["id"] = 2
    doc["annotations"][5]["face_box"] = [1, 2, 3, 4]
    with pytest.raises(AnnotationError, match=r"annotation id 2 \(#5, image_id 1\): duplicate annotation id"):
        read_wholebody(_write(tmp_path, doc))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_tricky_doc())[:-40] + "}")
    with pytest.raises(AnnotationError, match="bad.json: not valid JSON"):
        read_wholebody(bad)
    nan = tmp_path / "nan.json"  # NaN literals: the whole-file path (standard library) names the record
    d = _tricky_doc()
    d["annotations"][3]["area"] = float("nan")
    nan.write_text(json.dumps(d))
    with pytest.raises(AnnotationError, match=r"annotation id 4 \(#3, image_id 1\): 'area' is nan"):
        read_wholebody(nan)
