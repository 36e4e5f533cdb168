"""Inputs that lie or are broken: EXIF-tagged, 1-byte and cut-short images, file names leaving their
folder, malformed ids and values, damaged checkpoints, full disks, interrupts, a folder in use.
Each gets a one-line error naming the file and record, or a counted skip; none crashes or is taken
silently."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from wholebody.data.coco import AnnotationError, load_coco_wholebody
from wholebody.data.dataset import TopDownDataset
from wholebody.datatools.annotations import parse_wholebody
from wholebody.evaluation import EvalInputError, evaluate_files
from wholebody.images import ImageReadError, exif_orientation, read_image, relative_file_name
from wholebody.inference import (
    CheckpointError,
    InferenceError,
    InputError,
    WholeBodyEstimator,
    load_checkpoint,
    predict,
)
from wholebody.inference.boxes import read_box_file, read_image_list
from wholebody.io_utils import folder_lock

pytestmark = pytest.mark.usefixtures("one_thread")


def _jpeg(path: Path, image_bgr: np.ndarray, orientation: int | None = None) -> Path:
    rgb = Image.fromarray(image_bgr[:, :, ::-1])
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    rgb.save(path, quality=95, exif=exif.tobytes())
    return path


def _picture(h: int = 425, w: int = 640) -> np.ndarray:
    rng = np.random.default_rng(0)
    return cv2.GaussianBlur((rng.random((h, w, 3)) * 255).astype(np.uint8), (9, 9), 3)


# ----------------------------------------------------------------------------- images that lie
@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_not_applied_anywhere(orientation, tmp_path):
    pixels = _picture()
    plain = _jpeg(tmp_path / "plain.jpg", pixels)
    tagged = _jpeg(tmp_path / "tagged.jpg", pixels, orientation)
    assert exif_orientation(tagged) == orientation and exif_orientation(plain) == 1
    a, b = read_image(plain, (640, 425)), read_image(tagged, (640, 425))  # the annotation's w x h, as stored
    assert a.shape == (425, 640, 3) and np.array_equal(a, b)


def test_a_tagged_training_image_trains_as_stored(memorised, tmp_path):
    records = load_coco_wholebody(memorised.ann_file, memorised.image_dir).records
    rec = records[0]
    tagged = _jpeg(tmp_path / "t.jpg", read_image(rec.image_path), 3)  # a 180-degree tag
    plain = _jpeg(tmp_path / "p.jpg", read_image(rec.image_path))
    import dataclasses

    ds = TopDownDataset([dataclasses.replace(rec, image_path=str(p)) for p in (plain, tagged)], (96, 128))
    assert torch.equal(ds[0]["image"], ds[1]["image"])


def test_predict_on_a_tagged_copy_gives_the_same_poses_and_says_so(memorised, tmp_path):
    est = WholeBodyEstimator.from_checkpoint(memorised.ckpt)
    src = sorted(memorised.image_dir.glob("*.jpg"))[0]
    folder = tmp_path / "in"
    folder.mkdir()
    pixels = read_image(src)
    _jpeg(folder / "a_plain.jpg", pixels)
    _jpeg(folder / "b_tagged.jpg", pixels, 6)
    report = predict(est, folder, tmp_path / "out", boxes="full", overlay=False, progress=False)
    rows = json.loads((tmp_path / "out" / "results.json").read_text())
    assert len(rows) == 2
    np.testing.assert_allclose(rows[0]["keypoints"], rows[1]["keypoints"], atol=1e-4)
    assert report.exif_rotated == [str(folder / "b_tagged.jpg")] and "EXIF orientation" in report.summary_line()
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["exif_orientation_not_applied"] == [str(folder / "b_tagged.jpg")]


def _cut_short_with_end_marker(path: Path) -> Path:
    data = cv2.imencode(".jpg", _picture(480, 640), [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    path.write_bytes(data[: len(data) // 2] + b"\xff\xd9")
    return path


def test_tiny_and_cut_short_images_are_unreadable(tmp_path, capfd):
    one = tmp_path / "one.jpg"
    one.write_bytes(b"\xff")
    with pytest.raises(ImageReadError, match="one.jpg: cannot decode image data"):
        read_image(one)
    cut = _cut_short_with_end_marker(tmp_path / "cut.jpg")
    assert cv2.imread(str(cut)) is not None  # OpenCV alone takes it: half the picture grey
    capfd.readouterr()
    with pytest.raises(ImageReadError, match=r"cut.jpg: damaged JPEG data \(libjpeg: .*premature end"):
        read_image(cut)
    good = _jpeg(tmp_path / "good.jpg", _picture())
    assert read_image(good).shape == (425, 640, 3)
    assert capfd.readouterr().err == ""  # libjpeg's warning became the error, not noise on stderr


def test_tiny_and_cut_short_training_images_are_replaced_and_counted(memorised, tmp_path):
    import dataclasses

    records = load_coco_wholebody(memorised.ann_file, memorised.image_dir).records[:3]
    one = tmp_path / "one.jpg"
    one.write_bytes(b"\xff")
    cut = _cut_short_with_end_marker(tmp_path / "cut.jpg")
    bad = [dataclasses.replace(records[0], image_path=str(one)), dataclasses.replace(records[1], image_path=str(cut))]
    ds = TopDownDataset([*bad, records[2]], (96, 128), train=True)
    sample = ds[0]
    assert int(sample["meta"]["replaced"]) == 1 and int(sample["meta"]["ann_id"]) == records[2].ann_id
    assert set(ds.bad_images) == {str(one), str(cut)}


def test_predict_skips_and_lists_tiny_and_cut_short_images(memorised, tmp_path):
    est = WholeBodyEstimator.from_checkpoint(memorised.ckpt)
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(sorted(memorised.image_dir.glob("*.jpg"))[0], folder / "good.jpg")
    (folder / "one.jpg").write_bytes(b"\xff")
    _cut_short_with_end_marker(folder / "cut.jpg")
    report = predict(est, folder, tmp_path / "out", boxes="full", overlay=False, progress=False)
    assert report.images == 1
    skipped = dict(report.skipped)
    assert sorted(skipped) == sorted([str(folder / "one.jpg"), str(folder / "cut.jpg")])
    assert skipped[str(folder / "one.jpg")] == "cannot decode image data"
    assert skipped[str(folder / "cut.jpg")].startswith("damaged JPEG data")


@pytest.mark.parametrize("name", ["/etc/passwd", "../outside.jpg", "a/../../outside.jpg", "C:\\x.jpg", "..\\x.jpg", ""])
def test_file_names_may_not_leave_the_image_folder(name, tmp_path):
    with pytest.raises(ValueError):
        relative_file_name(name)
    data = {"images": [{"id": 7, "file_name": name, "width": 10, "height": 10}], "annotations": [],
            "categories": [{"id": 1, "name": "person"}]}
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps(data))
    with pytest.raises(AnnotationError, match=r"ann.json.*image entry #0 \(id 7\).*file_name") as e:
        load_coco_wholebody(ann, tmp_path)
    assert "\n" not in str(e.value)
    with pytest.raises(AnnotationError, match=r"image entry #0.*file_name"):
        read_image_list(ann)
    with pytest.raises(Exception, match=r"image entry #0 \(id 7\).*file_name"):
        parse_wholebody(data, ann)
    assert relative_file_name("train2017/000000000139.jpg") == "train2017/000000000139.jpg"


@pytest.mark.parametrize("width", ["abc", 5.5, -3, 1e300])
def test_an_image_list_with_a_bad_size_is_one_line(width, tmp_path):
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({"images": [{"id": 7, "file_name": "a.jpg", "width": width, "height": 10}]}))
    with pytest.raises(AnnotationError, match=r"ann.json.*image entry #0.*'width' and 'height' must be integers") as e:
        read_image_list(ann)
    assert "\n" not in str(e.value)


def test_the_real_sample_follows_the_image_rules(real_sample_json, real_sample, capfd):
    """The rules above hold for real COCO files: every file_name is a plain name inside the folder, every
    image reads as stored at exactly its annotated size (no EXIF tag to apply), and libjpeg says nothing."""
    doc = json.loads(real_sample_json.read_text())
    capfd.readouterr()
    for im in doc["images"]:
        assert relative_file_name(im["file_name"]) == im["file_name"]
        path = real_sample / im["file_name"]
        assert exif_orientation(path) == 1
        assert read_image(path, (im["width"], im["height"])).shape == (im["height"], im["width"], 3)
    assert capfd.readouterr().err == ""
    ann = load_coco_wholebody(real_sample_json, real_sample)
    assert {r.image_path for r in ann.records} <= {str(real_sample / im["file_name"]) for im in doc["images"]}


# ----------------------------------------------------------------------------- values taken silently before
def _ann_file(tmp_path: Path, **image) -> Path:
    im = {"id": 1, "file_name": "a.jpg", "width": 640, "height": 480, **image}
    p = tmp_path / "ann.json"
    p.write_text(json.dumps({"images": [im], "annotations": [], "categories": [{"id": 1, "name": "person"}]}))
    return p


def test_image_sizes_and_ids_must_be_integers(tmp_path):
    with pytest.raises(AnnotationError, match=r"width 640.7"):
        load_coco_wholebody(_ann_file(tmp_path, width=640.7), tmp_path)
    with pytest.raises(AnnotationError, match=r"id '1'"):
        load_coco_wholebody(_ann_file(tmp_path, id="1"), tmp_path)
    assert load_coco_wholebody(_ann_file(tmp_path, width=640.0), tmp_path).images[1].width == 640
    # integral but beyond int64: the same line, not an OverflowError
    with pytest.raises(AnnotationError, match=r"image entry #0 \(id 1\): .*must be integers, got width 1e\+300"):
        load_coco_wholebody(_ann_file(tmp_path, width=1e300), tmp_path)
    with pytest.raises(AnnotationError, match=r"must be integers, got height 1\.18"):  # (orjson: a float)
        load_coco_wholebody(_ann_file(tmp_path, height=2**70), tmp_path)


@pytest.mark.parametrize("image_id, shown", [("1e400", "inf"), ("785.9", "785.9"), ("true", "True"), ('"785"', "'785'"),
                                             ("1e300", r"1e\+300"), (str(2**70), r"1\.18")])
def test_detection_image_ids_are_integers(image_id, shown, tmp_path):
    p = tmp_path / "dets.json"
    p.write_text(f'[{{"image_id": {image_id}, "category_id": 1, "bbox": [1, 2, 30, 40], "score": 0.9}}]')
    with pytest.raises(AnnotationError, match=rf"detection #0.*'image_id' must be an integer, got {shown}") as e:
        read_box_file(p)
    assert "\n" not in str(e.value)


def test_detection_scores_are_numbers(tmp_path):
    p = tmp_path / "dets.json"
    p.write_text('[{"image_id": 785.0, "category_id": 1, "bbox": [1, 2, 30, 40], "score": true}]')
    with pytest.raises(AnnotationError, match=r"detection #0.*'score' is not a number"):
        read_box_file(p)


def test_deeply_nested_annotation_json_is_a_one_line_error(tmp_path):
    p = tmp_path / "deep.json"
    p.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(AnnotationError, match="nested too deeply"):
        load_coco_wholebody(p, tmp_path)


def _results_row(**change):
    row = {"image_id": 1, "category_id": 1, "score": 0.9, "keypoints": [1.0] * 51, "foot_kpts": [1.0] * 18,
           "face_kpts": [1.0] * 204, "lefthand_kpts": [1.0] * 63, "righthand_kpts": [1.0] * 63}
    row.update(change)
    return row


@pytest.mark.parametrize("change, message", [
    ({"keypoints": "1" * 51}, r"result #0 \(image_id 1\): 'keypoints' must be a list of 51 numbers, got str"),
    ({"face_kpts": {str(i): 1.0 for i in range(204)}}, r"'face_kpts' must be a list of 204 numbers, got dict"),
    ({"score": True}, r"result #0 \(image_id 1\): 'score' is not a number \(True\)"),
])
def test_results_fields_of_the_wrong_type_are_named(change, message, tmp_path, memorised):
    res = tmp_path / "res.json"
    res.write_text(json.dumps([_results_row(), _results_row(**change)][1:]))
    with pytest.raises(EvalInputError, match=message):
        evaluate_files(memorised.ann_file, res)


def test_ground_truth_without_annotations_evaluates_to_no_data(tmp_path):
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "width": 640, "height": 480}],
                              "annotations": [], "categories": [{"id": 1, "name": "person"}]}))
    res = tmp_path / "res.json"
    res.write_text(json.dumps([_results_row()]))
    stats = evaluate_files(gt, res)
    assert all(v == -1 for part in stats.values() for v in part.values())  # as xtcocotools: no ground truth


# ----------------------------------------------------------------------------- damaged checkpoints
def test_a_checkpoint_with_non_finite_weights_is_refused(memorised, tmp_path):
    obj = torch.load(memorised.ckpt, weights_only=True)
    key = next(k for k, v in obj["state_dict"].items() if v.is_floating_point() and v.numel() > 4)
    obj["state_dict"][key].view(-1)[3] = float("inf")  # an exponent bit flipped to all ones
    bad = tmp_path / "flipped.ckpt"
    torch.save(obj, bad)
    with pytest.raises(CheckpointError, match=rf"flipped.ckpt: tensor {key[len('net.'):]} holds NaN or infinite"):
        load_checkpoint(bad)


def test_non_finite_outputs_stop_predict(memorised):
    est = WholeBodyEstimator.from_checkpoint(memorised.ckpt)
    with torch.no_grad():
        next(p for p in est.net.parameters() if p.ndim == 4).fill_(float("nan"))
    image = read_image(sorted(memorised.image_dir.glob("*.jpg"))[0])
    with pytest.raises(InferenceError, match="NaN or infinite keypoints"):
        est(image, boxes="full", bgr=True)


def test_init_from_a_text_file_is_one_line(tmp_path):
    from wholebody.models.checkpoint import read_state_dict

    p = tmp_path / "notes.pt"
    p.write_text("hello world\n")
    with pytest.raises(ValueError, match=r"notes.pt is not a checkpoint readable") as e:
        read_state_dict(p)
    assert "\n" not in str(e.value)


# ----------------------------------------------------------------------------- the commands
def test_a_full_disk_is_one_line(capsys):
    from wholebody.cli.errors import run_or_exit

    def full():
        raise OSError(errno.ENOSPC, "No space left on device", "/out/results.json")

    with pytest.raises(SystemExit) as e:
        run_or_exit(full)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: [Errno 28] No space left on device") and "\n" not in err


def test_predict_into_a_really_full_disk(memorised, small_tmpfs):
    mnt = small_tmpfs("64k")
    (mnt / "filler").write_bytes(b"\0" * 60_000)
    proc = subprocess.run([sys.executable, "-m", "wholebody.cli.predict", f"ckpt={memorised.ckpt}",
                           f"input={memorised.image_dir}", f"output={mnt / 'out'}", "boxes=full", "progress=false"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2 and "No space left on device" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not [p for p in (mnt / "out").rglob("*") if p.suffix == ".tmp"]


def test_two_predicts_into_one_folder(memorised, tmp_path):
    est = WholeBodyEstimator.from_checkpoint(memorised.ckpt)
    out = tmp_path / "out"
    with folder_lock(out, what="predict"):
        with pytest.raises(InputError, match=rf"{out} is in use by another predict \(pid {os.getpid()}\)"):
            predict(est, memorised.image_dir, out, boxes="full", overlay=False, progress=False)
    report = predict(est, memorised.image_dir, out, boxes="full", overlay=False, progress=False)
    assert report.images == 3


def test_eval_command_on_sigint_is_one_line(tmp_path):
    """Ctrl-C while the command waits for its results (a FIFO nobody writes): one line, status 130."""
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "width": 640, "height": 480}],
                              "annotations": [], "categories": [{"id": 1, "name": "person"}]}))
    fifo = tmp_path / "results.json"
    os.mkfifo(fifo)
    # a suite started in the background (a shell's `&`, some CI runners) runs with SIGINT ignored, and a
    # child inherits that: give the command the default disposition a terminal's Ctrl-C meets
    proc = subprocess.Popen([sys.executable, "-m", "wholebody.cli.evaluate", str(gt), str(fifo)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wchan = Path(f"/proc/{proc.pid}/wchan")
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:  # wait until it blocks opening the FIFO
        if wchan.exists() and wchan.read_text().strip() in ("wait_for_partner", "fifo_open", "pipe_wait"):
            break
        time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("the command never reached its read of the results file")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.strip() == "interrupted", err[-2000:]


def test_an_error_from_a_loader_worker_is_one_line():
    """Errors raised in a DataLoader worker come back wrapped with the worker's traceback; the CLI prints
    the original message alone."""
    from torch.utils.data import DataLoader, Dataset

    from wholebody.cli.errors import one_line

    class Broken(Dataset):
        def __len__(self):
            return 1

        def __getitem__(self, i):
            raise ImageReadError("/data/x.jpg", "the last of 6 consecutive unreadable images from record 0 on")

    with pytest.raises(ImageReadError) as e:
        next(iter(DataLoader(Broken(), num_workers=1)))
    assert "Traceback" in str(e.value)  # what torch hands back
    assert one_line(e.value) == "/data/x.jpg: the last of 6 consecutive unreadable images from record 0 on"


def test_init_from_a_text_file_stops_training_in_one_line(tmp_path):
    from wholebody.training.run import ConfigError, compose_config, train

    notes = tmp_path / "notes.ckpt"
    notes.write_text("not a checkpoint\n")
    cfg = compose_config([f"model.net.init_from=[{notes}]", "logger=csv", "trainer=cpu", f"paths.output_dir={tmp_path}",
                          "data.synthetic.images=4", "data.synthetic.val_images=2", f"data.root={tmp_path / 'set'}"])
    with pytest.raises(ConfigError, match=r"model: init_from: .*notes.ckpt is not a checkpoint") as e:
        train(cfg)
    assert "\n" not in str(e.value)
