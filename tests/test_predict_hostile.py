"""wholebody-predict and checkpoints for inference against clumsy and hostile inputs (issue 19, items 5-6):
inputs whose outputs would share a name, earlier runs' drawings inside the input folder, ``output=`` an
existing file, stored model configs with sizes out of range, and bit flips that keep the weights finite."""

from __future__ import annotations

import json
import os
import struct
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from wholebody.inference import CheckpointError, InputError, WholeBodyEstimator, load_checkpoint, predict
from wholebody.inference.pipeline import PredictReport

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def estimator(tiny_ckpt):
    return WholeBodyEstimator.from_checkpoint(tiny_ckpt[0])  # untrained: these tests are about files, not poses


def _image(path: Path, seed: int, size: tuple[int, int] = (64, 48)) -> Path:
    """A small noise image (distinct per seed) written by its extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    assert cv2.imwrite(str(path), rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    return path


def _video(path: Path, frames: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 48))
    assert writer.isOpened()
    for _ in range(frames):
        writer.write(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    writer.release()
    return path


def _compose(overrides: list[str], name: str = "predict"):
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_module("wholebody.conf", version_base="1.3"):
        return compose(name, overrides=overrides)


# ----------------------------------------------------------------------------- outputs named per input
def test_inputs_sharing_a_stem_each_keep_their_own_outputs(estimator, tmp_path):
    src = tmp_path / "in"
    _image(src / "img.jpg", 1)
    _image(src / "img.JPG", 2, (80, 40))
    _image(src / "img.png", 3)  # its overlay (img.png) collides with nothing: the documented name
    _image(src / "a" / "x.jpg", 4)
    _image(src / "b" / "x.jpg", 5, (32, 64))
    _video(src / "clip.mp4", 3)
    _video(src / "clip.avi", 5, seed=1)
    out = tmp_path / "out"
    report = predict(estimator, src, out, boxes="full", recursive=True, progress=False)
    assert report.images == 5 and report.frames == 8
    overlays = sorted(p.relative_to(out / "overlays").as_posix() for p in (out / "overlays").rglob("*") if p.is_file())
    assert overlays == ["a/x.jpg", "b/x.jpg", "img.JPG.jpg", "img.jpg.jpg", "img.png"]
    assert cv2.imread(str(out / "overlays" / "img.JPG.jpg")).shape[:2] == (40, 80)  # each drawn on its own input
    assert cv2.imread(str(out / "overlays" / "b" / "x.jpg")).shape[:2] == (64, 32)
    # both videos' rows are kept, each in its own file
    assert [r["image_id"] for r in json.loads((out / "clip.mp4.results.json").read_text())] == [0, 1, 2]
    assert [r["image_id"] for r in json.loads((out / "clip.avi.results.json").read_text())] == [0, 1, 2, 3, 4]
    assert (out / "clip.mp4.overlay.mp4").is_file() and (out / "clip.avi.overlay.mp4").is_file()
    assert not (out / "clip.results.json").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(summary["outputs_named_with_suffix"]) == ["clip.avi", "clip.mp4", "img.JPG", "img.jpg"]
    assert "share a name up to the suffix" in report.summary_line()
    # a single video keeps the documented name
    predict(estimator, src / "clip.mp4", tmp_path / "one", boxes="full", overlay=False, progress=False)
    assert (tmp_path / "one" / "clip.results.json").is_file()


def test_outputs_that_collide_even_with_their_suffix_are_refused_before_any_work(estimator, tmp_path):
    src = tmp_path / "in"
    for i, name in enumerate(("a.jpg", "a.JPG", "a.jpg.jpeg")):  # a.jpg -> a.jpg.jpg, and so is a.jpg.jpeg's
        _image(src / name, i)
    with pytest.raises(InputError, match="would both write overlays/a.jpg.jpg") as e:
        predict(estimator, src, tmp_path / "out", boxes="full", progress=False)
    assert "\n" not in str(e.value) and not (tmp_path / "out").exists()


def test_an_output_already_written_by_the_run_is_never_replaced(tmp_path):
    """Two output names a file system takes for one file (letter case on macOS / Windows, here a hard
    link): the second write is one error line, the first output stays."""
    report = PredictReport()
    first = tmp_path / "A.results.json"
    first.write_text("[1]")
    report.wrote(first)
    os.link(first, tmp_path / "a.results.json")
    with pytest.raises(InputError, match="already wrote as .*A.results.json"):
        report.claim(tmp_path / "a.results.json")
    assert report.claim(tmp_path / "b.results.json") == tmp_path / "b.results.json"
    assert first.read_text() == "[1]"


# ----------------------------------------------------------------------------- earlier outputs in the input folder
def test_drawings_of_earlier_runs_inside_the_input_folder_are_not_read(estimator, tmp_path):
    src = tmp_path / "photos"
    for i in range(3):
        _image(src / f"p{i}.jpg", i)
    _video(src / "clip.mp4", 2)
    first = predict(estimator, src, src / "out", boxes="full", progress=False)  # the output inside the input folder
    assert first.images == 3 and len(list((src / "out" / "overlays").iterdir())) == 3
    predict(estimator, src, src, boxes="full", progress=False)  # and into the input folder itself
    assert (src / "clip.overlay.mp4").is_file() and (src / "overlays" / "p0.jpg").is_file()

    again = predict(estimator, src, tmp_path / "again", boxes="full", recursive=True, progress=False)
    assert again.images == 3 and again.frames == 2  # the photos and the clip, nothing drawn by predict
    names = json.loads((tmp_path / "again" / "images.json").read_text())["images"]
    assert sorted(im["file_name"] for im in names) == ["p0.jpg", "p1.jpg", "p2.jpg"]
    assert sorted(again.earlier_outputs) == ["clip.overlay.mp4", "out/clip.overlay.mp4", "out/overlays/p0.jpg",
                                             "out/overlays/p1.jpg", "out/overlays/p2.jpg", "overlays/p0.jpg",
                                             "overlays/p1.jpg", "overlays/p2.jpg"]
    summary = json.loads((tmp_path / "again" / "summary.json").read_text())
    assert len(summary["earlier_outputs_not_read"]) == 8 and "8 drawing(s) of earlier runs" in again.summary_line()
    flat = predict(estimator, src, tmp_path / "flat", boxes="full", overlay=False, progress=False)
    assert flat.frames == 2 and flat.earlier_outputs == ["clip.overlay.mp4"]  # not recursive: the top level only
    # a folder holding nothing but drawings says so
    with pytest.raises(InputError, match="4 drawing"):
        predict(estimator, src / "out", tmp_path / "o", boxes="full", recursive=True, progress=False)
    # named directly, an overlays folder is read: the user asked for it
    assert predict(estimator, src / "overlays", tmp_path / "o2", boxes="full", progress=False).images == 3


# ----------------------------------------------------------------------------- output= an existing file
def test_output_naming_an_existing_file_is_one_line_before_any_work(estimator, tmp_path, capsys):
    from wholebody.cli.errors import run_or_exit
    from wholebody.cli.predict import run

    src = tmp_path / "in"
    _image(src / "p.jpg", 0)
    taken = tmp_path / "results.json"
    taken.write_text("[]")
    for output in (taken, taken / "sub"):
        with pytest.raises(InputError, match="output=.* a file") as e:
            predict(estimator, src, output, boxes="full", progress=False)
        assert "\n" not in str(e.value)
    assert taken.read_text() == "[]"
    # the command says it before it reads the checkpoint (here a missing one)
    cfg = _compose([f"ckpt={tmp_path / 'missing.ckpt'}", f"input={src}", f"output={taken}", "boxes=full",
                    "progress=false"])
    with pytest.raises(SystemExit) as e:
        run_or_exit(run, cfg)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err.startswith("error: output=") and "is a file" in err and "\n" not in err
    assert taken.read_text() == "[]"


# ----------------------------------------------------------------------------- checkpoints from strangers
def _error_lines(ckpt: Path, tmp_path: Path, capsys) -> dict[str, str]:
    """The one error line of every way inference reads a checkpoint: the API (load_checkpoint, the
    estimator) and the commands wholebody-predict, wholebody-export and wholebody-eval-ckpt (in-process)."""
    from wholebody.cli import export as export_cli
    from wholebody.cli import predict as predict_cli
    from wholebody.cli.errors import run_or_exit
    from wholebody.training.evaluate import evaluate
    from wholebody.training.run import compose_config

    lines = {}
    for name, load in (("load_checkpoint", load_checkpoint), ("estimator", WholeBodyEstimator.from_checkpoint)):
        with pytest.raises(CheckpointError) as e:
            load(ckpt)
        lines[name] = str(e.value)
    src = tmp_path / "in"
    _image(src / "p.jpg", 0)
    runs = {
        "predict": (predict_cli.run, _compose([f"ckpt={ckpt}", f"input={src}", f"output={tmp_path / 'pred'}",
                                               "boxes=full", "progress=false"])),
        "export": (export_cli.run, _compose([f"ckpt={ckpt}", f"output={tmp_path / 'm.onnx'}"], "export")),
        "eval-ckpt": (evaluate, compose_config(["data=synthetic", f"data.root={tmp_path / 'data'}", "trainer=cpu",
                                                "data.num_workers=0", "logger=csv", "~callbacks.progress", f"ckpt={ckpt}",
                                                f"paths.output_dir={tmp_path}"], config_name="eval",
                                               run_dir=tmp_path / "eval")),
    }
    for name, (fn, cfg) in runs.items():
        capsys.readouterr()
        with pytest.raises(SystemExit) as e:
            run_or_exit(fn, cfg)
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2 and err.startswith("error: ") and "\n" not in err, (name, err)
        lines[name] = err
    assert not (tmp_path / "pred").exists() and not (tmp_path / "m.onnx").exists()
    return lines


def _training_checkpoint(tiny_ckpt: Path) -> dict:
    """The tiny checkpoint as wholebody-train writes one: the network entry plus Lightning's keys (which
    wholebody-eval-ckpt may look for before it reads the network)."""
    obj = torch.load(tiny_ckpt, weights_only=True)
    return {**obj, "pytorch-lightning_version": "2.4.0", "epoch": 0, "global_step": 0, "optimizer_states": [],
            "lr_schedulers": [], "loops": {}, "callbacks": {}}


def _edit_config(key: str, value) -> callable:
    def edit(obj: dict) -> None:
        mc = obj["wholebody"]["model_config"]
        *path, last = key.split(".")
        for k in path:
            mc = mc[k]
        mc[last] = value
        if key == "input_size":  # a consistent file: the entry's copy says the same
            obj["wholebody"]["input_size"] = value
    return edit


@pytest.mark.parametrize("edit,key", [
    (_edit_config("net.roi_size", 0), "model_config.net.roi_size"),
    (_edit_config("net.roi_size", -8), "model_config.net.roi_size"),
    (_edit_config("net.roi_size", 30), "model_config.net.roi_size"),  # not a multiple of 4: a shape error per forward
    (_edit_config("input_size", [96000, 128000]), "model_config.input_size"),  # 34 GiB for one crop batch
    (_edit_config("input_size", [96.5, 128]), "model_config.input_size"),
    (_edit_config("net.input_size", [192, 256]), "model_config.net.input_size"),  # not the crops it is given
    (_edit_config("net.stem_width", 10 ** 9), "model_config.net.stem_width"),  # a 108 GB allocation
    (_edit_config("net.body_modules", [1, 10 ** 6, 1]), "model_config.net.body_modules"),
    (_edit_config("net.body_upsample", 0), "model_config.net.body_upsample"),
    (_edit_config("net.min_roi_size", 1e6), "model_config.net.min_roi_size"),  # bad_alloc in the first forward
    (_edit_config("net.roi_margin", -1.0), "model_config.net.roi_margin"),
    (_edit_config("loss.body_sigma", 0.0), "model_config.loss.body_sigma"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_sizes_out_of_range_in_a_stored_config_are_one_line_naming_the_key(tiny_ckpt, tmp_path, capsys, edit, key):
    obj = _training_checkpoint(tiny_ckpt[0])
    edit(obj)
    hostile = tmp_path / "stranger.ckpt"
    torch.save(obj, hostile)
    for name, line in _error_lines(hostile, tmp_path, capsys).items():
        assert str(hostile) in line and key in line and "cannot build" not in line, (name, line)


def test_an_entry_whose_input_size_differs_from_its_config_is_refused(tiny_ckpt, tmp_path):
    obj = torch.load(tiny_ckpt[0], weights_only=True)
    obj["wholebody"]["input_size"] = [192, 256]
    hostile = tmp_path / "stranger.ckpt"
    torch.save(obj, hostile)
    with pytest.raises(CheckpointError, match="input_size \\[192, 256\\] differs from model_config.input_size"):
        load_checkpoint(hostile)


def _flip_weight_bit(src: Path, dst: Path) -> str:
    """Copy ``src`` with one exponent bit flipped in a float32 of its largest tensor (the value x or / 256:
    finite); returns the name of the changed tensor, checked with a load that skips the CRCs."""
    data = bytearray(src.read_bytes())
    with zipfile.ZipFile(src) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    assert info.compress_type == zipfile.ZIP_STORED
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26: info.header_offset + 30])
    word = info.header_offset + 30 + name_len + extra_len + (info.file_size // 8) * 4
    data[word + 3] ^= 0b100  # bit 26 of the little-endian word: exponent bit 3
    dst.write_bytes(bytes(data))
    before, after = (torch.load(p, weights_only=True)["state_dict"] for p in (src, dst))  # torch.load: no CRC check
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(changed) == 1 and bool(torch.isfinite(after[changed[0]]).all())
    return changed[0]


def test_a_bit_flip_that_keeps_the_weights_finite_is_refused_everywhere(tiny_ckpt, tmp_path, capsys):
    intact, damaged = tmp_path / "intact.ckpt", tmp_path / "flipped.ckpt"
    torch.save(_training_checkpoint(tiny_ckpt[0]), intact)
    _flip_weight_bit(intact, damaged)
    for name, line in _error_lines(damaged, tmp_path, capsys).items():
        assert str(damaged) in line and "fails its CRC check" in line, (name, line)


def test_the_crc_check_is_the_one_resume_uses():
    from wholebody.models import checkpoint as models_checkpoint
    from wholebody.training import checkpoint_io

    assert checkpoint_io.checkpoint_problem is models_checkpoint.checkpoint_problem


def test_sizes_out_of_range_in_onnx_metadata_are_one_line_naming_the_key(tmp_path):
    """An exported model's metadata carries the same model config: the same ranges apply."""
    onnx = pytest.importorskip("onnx", reason="onnx comes with the export extra: pip install -e .[export]")
    from onnx import TensorProto, helper

    from wholebody.inference import load_model_config

    node = helper.make_node("Cast", ["images"], ["body_heatmaps"], to=TensorProto.FLOAT)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("images", TensorProto.UINT8, [1, 3, 128, 96])],
                              [helper.make_tensor_value_info("body_heatmaps", TensorProto.FLOAT, [1, 3, 128, 96])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    mc = load_model_config("zoomnet_tiny")
    mc["net"]["roi_size"] = 0
    entry = model.metadata_props.add()
    entry.key, entry.value = "wholebody", json.dumps({"batch_size": 1, "flip_test": False, "model_config": mc,
                                                      "input_size": [96, 128]})
    path = tmp_path / "stranger.onnx"
    onnx.save(model, str(path))
    with pytest.raises(CheckpointError, match="model_config.net.roi_size: 0 must be") as e:
        WholeBodyEstimator.from_onnx(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)
