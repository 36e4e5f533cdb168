"""wholebody-predict and checkpoints for inference against clumsy and hostile inputs (issue 19, items 5-6):
inputs whose outputs would share a name, earlier runs' drawings inside the input folder, ``output=`` an
existing file, stored model configs with sizes out of range, and bit flips that keep the weights finite."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from wholebody.inference import InputError, WholeBodyEstimator, predict
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


def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_module("wholebody.conf", version_base="1.3"):
        return compose("predict", overrides=overrides)


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
