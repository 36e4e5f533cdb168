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
    # two bad records, the later one's field checked first within a batch: the same one is named
    (f'{{"images": {IMAGES}, "annotations": [{json.dumps(_ann(1, bbox=[1, 2, 3, "4"]))}, {json.dumps(_ann(2, id="x"))}]}}',
     "annotation id 1 (#0, image_id 1): 'bbox'[3] is not a number ('4')"),
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


# ----------------------------------------------------------------------------- weights (wholebody-convert mmpose)
@pytest.fixture(scope="module")
def mmpose_sd() -> dict:
    """An mmpose 1.x top-down HRNet-W32 whole-body state dict with random weights (its layout:
    test_model_pretrained.mmpose_state_dict)."""
    import re

    import timm
    import torch

    torch.manual_seed(0)
    m = timm.create_model("hrnet_w32", pretrained=False)
    head = ("incre_modules", "downsamp_modules", "final_layer", "classifier")
    sd = {f"backbone.{k}": v for k, v in m.state_dict().items()
          if k.split(".")[0] not in head and not re.match(r"stage4\.2\.fuse_layers\.[123]\.", k)}
    sd["head.final_layer.weight"] = torch.randn(133, 32, 1, 1) * 0.05
    sd["head.final_layer.bias"] = torch.zeros(133)
    return sd


def _convert(sd: dict, tmp_path, capsys) -> tuple[int, str]:
    import torch

    from wholebody.cli.convert import main

    src = tmp_path / "td-hm_hrnet-w32_coco-wholebody-256x192.pth"
    torch.save({"state_dict": sd, "meta": {"epoch": 210}}, src)
    out = tmp_path / "out.ckpt"
    rc = main(["mmpose", str(src), str(out)])
    err = capsys.readouterr().err
    assert rc == 0 or not out.exists()
    return rc, err


def _nan(t):
    t = t.clone()
    t.view(-1)[3] = float("nan")
    return t


def _inf(t):
    t = t.clone()
    t.view(-1)[0] = -float("inf")
    return t


@pytest.mark.parametrize("key, change, needle", [
    ("backbone.stage3.1.branches.2.0.conv1.weight", _nan, "holds 1 non-finite value(s) (NaN / inf)"),
    ("head.final_layer.bias", _inf, "holds 1 non-finite value(s) (NaN / inf)"),
    ("backbone.conv1.weight", lambda t: (t * 100).to(__import__("torch").int32), "is int32, not floating point"),
    ("backbone.bn1.weight", lambda t: t > 0, "is bool, not floating point"),
    ("head.final_layer.weight", lambda t: t.to(__import__("torch").complex64), "is complex64, not floating point"),
    ("backbone.bn1.num_batches_tracked", lambda t: t.float(), "is float32, not an integer tensor"),
])
def test_conversion_refuses_weights_that_copy_would_change(mmpose_sd, tmp_path, capsys, key, change, needle):
    """copy_ into the network's float tensors took NaN, inf, truncated integers, booleans and complex
    numbers (exit 0, a wrong checkpoint): one line naming the file and the tensor, exit 2, nothing written."""
    rc, err = _convert({**mmpose_sd, key: change(mmpose_sd[key])}, tmp_path, capsys)
    assert rc == 2 and err.count("\n") == 1, err
    assert "coco-wholebody-256x192.pth" in err and f"tensor {key.removeprefix('backbone.')} {needle}" in err


def test_the_unchanged_file_converts(mmpose_sd, tmp_path, capsys):
    """(The file the cases above change is complete: without the change it converts.)"""
    assert _convert(dict(mmpose_sd), tmp_path, capsys)[0] == 0


@pytest.mark.parametrize("key, value, needle", [
    ("head.final_layer.weight", lambda: __import__("torch").tensor(1.0), "must be convolution weights"),
    ("backbone.transition1.0.0.weight", lambda: __import__("torch").zeros(10**6, 1, 1, 1), "says HRNet-W1000000"),
])
def test_conversion_refuses_sizes_it_would_build_a_network_from(mmpose_sd, tmp_path, capsys, key, value, needle):
    """A 0-d heatmap layer was an IndexError traceback; a width of 10^6 built a network of terabytes."""
    rc, err = _convert({**mmpose_sd, key: value()}, tmp_path, capsys)
    assert rc == 2 and err.count("\n") == 1 and needle in err, err


def test_training_refuses_non_finite_pretrained_weights(mmpose_sd, tmp_path):
    """The other reader of weights files (model.net.pretrained) shares the check."""
    import torch

    from wholebody.inference.checkpoint import build_net, load_model_config
    from wholebody.models.pretrained import PretrainedError, place_tensors, read_source
    from wholebody.models.pretrained_mmpose import MODEL_CONFIG, mmpose_model_config

    src = tmp_path / "w.pth"
    torch.save({"state_dict": {**mmpose_sd, "backbone.layer1.0.conv2.weight": _nan(mmpose_sd["backbone.layer1.0.conv2.weight"])}}, src)
    net = build_net(mmpose_model_config(load_model_config(MODEL_CONFIG), 32, 133, (192, 256), "quarter"))
    with pytest.raises(PretrainedError, match=r"w\.pth: tensor layer1\.0\.conv2\.weight holds 1 non-finite"):
        place_tensors(net, net.pretrained_plan()["body"], read_source(str(src)), str(src))


# ----------------------------------------------------------------------------- wholebody-data's numeric options
@pytest.mark.parametrize("args, needle", [
    (["extract", "a.json", "img", "out", "--padding", "nan"], "argument --padding: nan is not a crop padding"),
    (["extract", "a.json", "img", "out", "--padding", "inf"], "argument --padding: inf is not a crop padding"),
    (["extract", "a.json", "img", "out", "--padding", "0"], "argument --padding: 0 is not a crop padding"),
    (["extract", "a.json", "img", "out", "--padding", "-1.25"], "argument --padding: -1.25 is not a crop padding"),
    (["extract", "a.json", "img", "out", "--size", "0"], "argument --size: 0 is out of range"),
    (["extract", "a.json", "img", "out", "--size", "1000000"], "argument --size: 1000000 is out of range"),
    (["extract", "a.json", "img", "out", "--jpeg-quality", "101"], "argument --jpeg-quality: 101 is out of range"),
    (["extract", "a.json", "img", "out", "--workers", "-1"], "argument --workers: -1 is out of range"),
    (["stats", "a.json", "out", "--clusters", "0"], "argument --clusters: 0 is out of range"),
    (["stats", "a.json", "out", "--clusters", "-3"], "argument --clusters: -3 is out of range"),
    (["stats", "a.json", "out", "--seed", "-1"], "argument --seed: -1 is out of range"),
    (["stats", "a.json", "out", "--blur-size", "0"], "argument --blur-size: 0 is out of range"),
    (["stats", "a.json", "out", "--workers", "1000000"], "argument --workers: 1000000 is out of range"),
])
def test_data_tool_options_out_of_range_are_usage_errors(args, needle, capsys):
    """Refused while parsing the command line (exit 2, argparse's usage and one error line), before the
    annotation file is read: --padding nan cut NaN crops, --clusters 0 was a traceback in k-means."""
    from wholebody.cli.data_tools import main

    with pytest.raises(SystemExit) as e:
        main(args)
    err = capsys.readouterr().err
    assert e.value.code == 2 and needle in err and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("wholebody-data")


def test_extract_sets_refuses_a_nan_padding(tmp_path):
    from wholebody.datatools.extract import extract_sets

    with pytest.raises(ValueError, match="padding > 0"):
        extract_sets(None, tmp_path, tmp_path / "out", padding=float("nan"))


def test_a_cache_built_by_the_reader_that_took_strings_is_not_reused(tmp_path, monkeypatch):
    """Column caches are keyed by the reader's version: one built when "12.5" passed as a number is
    rebuilt by this reader, which refuses the file."""
    from wholebody import column_cache

    a = _ann(2)
    a["face_kpts"][0] = "12.5"
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(_doc([_ann(1), a])))
    with monkeypatch.context() as m:  # the reader of version 1
        m.setattr(column_cache, "READER_VERSION", 1)
        m.setattr(cocowb, "only_numbers", lambda lists: True)
        assert column_cache.cached_columns(path, tmp_path / "cache").keypoints[1, S.slice("face").start, 0] == 12.5
    with pytest.raises(AnnotationError, match=r"annotation id 2 \(#1, image_id 1\): 'face_kpts'\[0\] is not a number"):
        column_cache.cached_columns(path, tmp_path / "cache")


@pytest.mark.parametrize("categories", [{"id": 1, "name": "person"}, None, "person"])
def test_categories_that_are_not_a_list_are_refused(tmp_path, path_kind, categories):
    """(Read as a file without categories before: results of every category_id then counted.)"""
    doc = _doc([_ann(1)])
    doc["categories"] = categories
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(AnnotationError) as e:
        read_wholebody(path)
    _one_line(e, str(path), "'categories' must be a list")


@pytest.mark.parametrize("change, needle", [
    ({"image_id": True}, "row #1: 'image_id' must be an integer, got True"),
    ({"image_id": 2.5}, "row #1: 'image_id' must be an integer, got 2.5"),
    ({"image_id": "2"}, "row #1: 'image_id' must be an integer, got '2'"),
    ({"keypoints": ["12.5"] + [1.0] * 62}, "row #1 (image_id 2): 'keypoints'[0] is not a number ('12.5')"),
    ({"keypoints": [1.0] * 62 + [False]}, "row #1 (image_id 2): 'keypoints'[62] is not a number (False)"),
    ({"keypoints": [1.0] * 62 + [float("nan")]}, "row #1 (image_id 2): 'keypoints'[62] is nan (non-finite)"),
])
def test_crop_metrics_predictions_are_json_numbers(tmp_path, capsys, change, needle):
    """wholebody-data crop-metrics read true as image_id 1, 2.5 as 2, "12.5" and NaN as keypoints (an EPE of nan)."""
    from wholebody.cli.data_tools import main

    crops = tmp_path / "hand"
    (crops / "images").mkdir(parents=True)
    kp = [[10.0, 10.0, 2] * 21, [12.0, 14.0, 2] * 21]
    anns = [{"id": i + 1, "image_id": i + 1, "category_id": 1, "keypoints": kp[i], "bbox": [0, 0, 20, 20], "area": 400,
             "iscrowd": 0, "num_keypoints": 21, "side": "right", "image_to_crop": [[1, 0, 0], [0, 1, 0]],
             "source_ann_id": i + 1} for i in range(2)]
    images = [{"id": i + 1, "file_name": f"images/{i + 1}.jpg", "width": 64, "height": 64} for i in range(2)]
    (crops / "annotations.json").write_text(json.dumps({
        "images": images, "annotations": anns,
        "categories": [{"id": 1, "name": "hand", "keypoints": [f"k{j}" for j in range(21)]}],
        "info": {"set": "hand", "crop_size": 64, "padding": 1.25}}))
    rows = [{"image_id": i + 1, "keypoints": [float(v) for v in kp[i]], "score": 1.0} for i in range(2)]
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(rows))
    assert main(["crop-metrics", str(crops), str(pred)]) == 0, capsys.readouterr().err  # (a set as extract writes it)
    assert "EPE 0.0000 px" in capsys.readouterr().out
    pred.write_text(json.dumps([rows[0], {**rows[1], **change}]))
    assert main(["crop-metrics", str(crops), str(pred)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(pred) in err and needle in err, err


@pytest.mark.parametrize("size", ["0x0", "-32x64", "100x100", "40960x256"])
def test_convert_input_sizes_out_of_range_are_usage_errors(size, tmp_path, capsys):
    """(0x0 and -32x64 failed later, 40960x256 wrote a checkpoint whose crops need gigabytes.)"""
    from wholebody.cli.convert import main

    with pytest.raises(SystemExit) as e:
        main(["mmpose", str(tmp_path / "x_256x192.pth"), str(tmp_path / "out.ckpt"), f"--input-size={size}"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "argument --input-size" in err and "multiples of 32" in err
