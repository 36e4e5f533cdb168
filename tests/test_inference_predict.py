"""wholebody-predict: inputs (image, folder, video), box sources, results the evaluator accepts,
overlays, bad input and the command's one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from wholebody.data.coco import AnnotationError, load_coco_wholebody
from wholebody.evaluation import evaluate_files
from wholebody.inference import InputError, WholeBodyEstimator, predict
from wholebody.inference.io import Inputs, assign_image_ids, discover_inputs

PARTS = ("body", "foot", "face", "lefthand", "righthand", "wholebody")


pytestmark = pytest.mark.usefixtures("one_thread")




@pytest.fixture(scope="module")
def estimator(memorised):
    return WholeBodyEstimator.from_checkpoint(memorised.ckpt)


def _cli(*args: str, tool: str = "predict") -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", f"wholebody.cli.{tool}", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def _rows(path: Path) -> list[dict]:
    return json.loads(path.read_text())


# ----------------------------------------------------------------------------- the command, end to end
def test_predict_command_with_ground_truth_boxes_gives_results_the_evaluator_scores(memorised, tmp_path):
    out = tmp_path / "out"
    proc = _cli(f"ckpt={memorised.ckpt}", f"input={memorised.image_dir}", f"output={out}",
                f"boxes={memorised.ann_file}", "progress=false")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "3 images, 5 persons" in proc.stdout
    gt = load_coco_wholebody(memorised.ann_file, memorised.image_dir)
    rows = _rows(out / "results.json")
    assert sorted(r["ann_id"] for r in rows) == sorted(r.ann_id for r in gt.records)
    images = json.loads((out / "images.json").read_text())["images"]
    assert {im["id"]: im["file_name"] for im in images} == {i: im.file_name for i, im in gt.images.items()}
    assert sorted(p.name for p in (out / "overlays").iterdir()) == sorted(im.file_name for im in gt.images.values())
    assert not (out / ".hydra").exists() and not (out / "detections.json").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["persons"] == 5 and summary["skipped"] == [] and summary["estimator"]["net"] == "ZoomNet"
    ev = _cli(str(memorised.ann_file), str(out / "results.json"), tool="evaluate")
    assert ev.returncode == 0, ev.stderr
    assert all(any(line.startswith(p) for line in ev.stdout.splitlines()) for p in PARTS)
    stats = evaluate_files(memorised.ann_file, out / "results.json")
    assert stats["wholebody"]["AP"] > 0.5 and stats["body"]["AP"] > 0.3, stats  # the persons it memorised


def test_predict_on_the_real_sample_with_ground_truth_boxes_as_detections(real_sample, real_sample_json, estimator, tmp_path):
    """Acceptance: the sample's GT person boxes as a COCO detection file -> results -> wholebody-eval."""
    gt = json.loads(real_sample_json.read_text())
    dets = [{"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 1.0} for a in gt["annotations"]]
    det_file = tmp_path / "dets.json"
    det_file.write_text(json.dumps(dets))
    out = tmp_path / "out"
    report = predict(estimator, real_sample, out, boxes=str(det_file), progress=False)
    assert report.images == 4 and report.persons == len(dets) and not report.skipped
    rows = _rows(out / "results.json")
    assert sorted(r["bbox_id"] for r in rows) == list(range(len(dets)))
    for r in rows:
        assert r["image_id"] == dets[r["bbox_id"]]["image_id"] and "ann_id" not in r
    assert len(list((out / "overlays").iterdir())) == 4
    ev = _cli(str(real_sample_json), str(out / "results.json"), tool="evaluate")
    assert ev.returncode == 0, ev.stderr
    assert all(any(line.startswith(p) for line in ev.stdout.splitlines()) for p in PARTS)


# ----------------------------------------------------------------------------- box sources
def test_detection_files_keep_persons_of_these_images_and_their_file_index(memorised, estimator, tmp_path):
    gt = load_coco_wholebody(memorised.ann_file, memorised.image_dir)
    r0, r1 = gt.records[0], gt.records[1]
    xywh = lambda b: [b[0], b[1], b[2] - b[0], b[3] - b[1]]  # noqa: E731
    dets = [
        {"image_id": r0.image_id, "category_id": 1, "bbox": xywh(r0.bbox), "score": 0.9},   # 0 kept
        {"image_id": r0.image_id, "category_id": 2, "bbox": xywh(r0.bbox), "score": 0.9},   # 1 not a person
        {"image_id": r1.image_id, "category_id": 1, "bbox": xywh(r1.bbox), "score": 0.05},  # 2 below det_score_thr
        {"image_id": 999999, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9},        # 3 another image
        {"image_id": r1.image_id, "category_id": 1, "bbox": [5000, 10, 20, 20], "score": 0.9},  # 4 outside the image
        {"image_id": r1.image_id, "category_id": 1, "bbox": xywh(r1.bbox), "score": 0.7},   # 5 kept
    ]
    det_file = tmp_path / "dets.json"
    det_file.write_text(json.dumps(dets))
    report = predict(estimator, memorised.image_dir, tmp_path / "out", boxes=str(det_file), det_score_thr=0.1,
                     overlay=False, progress=False)
    rows = _rows(tmp_path / "out" / "results.json")
    assert sorted(r["bbox_id"] for r in rows) == [0, 5]
    assert report.dropped_boxes == 1 and report.persons == 2
    by_id = {r["bbox_id"]: r for r in rows}
    assert by_id[5]["score"] < 0.7 + 1e-9 and by_id[0]["image_id"] == r0.image_id
    assert not (tmp_path / "out" / "overlays").exists()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [0, 0, -5, 3], "score": 1}]))
    with pytest.raises(AnnotationError, match=r"detection #0 \(image_id 1\).*negative"):
        predict(estimator, memorised.image_dir, tmp_path / "out2", boxes=str(bad), progress=False)


def test_full_image_and_detector_boxes_are_written_as_detections(memorised, estimator, tmp_path):
    out = tmp_path / "full"
    predict(estimator, memorised.image_dir, out, boxes="full", progress=False)
    dets, rows = _rows(out / "detections.json"), _rows(out / "results.json")
    images = {im["id"]: im for im in json.loads((out / "images.json").read_text())["images"]}
    assert len(dets) == len(rows) == 3
    for r in rows:
        d = dets[r["bbox_id"]]
        assert d["image_id"] == r["image_id"] and d["bbox"] == [0, 0, images[d["image_id"]]["width"],
                                                                 images[d["image_id"]]["height"]]
    gt = load_coco_wholebody(memorised.ann_file, memorised.image_dir)

    def detector(image_rgb):  # the ground-truth persons, as a detector would report them
        h, w = image_rgb.shape[:2]
        recs = [r for r in gt.records if r.image_size == (w, h)]
        return np.stack([r.bbox for r in recs]), np.linspace(0.9, 0.6, len(recs))

    out = tmp_path / "det"
    report = predict(estimator, memorised.image_dir, out, boxes="detector", detector=detector, progress=False)
    dets, rows = _rows(out / "detections.json"), _rows(out / "results.json")
    assert report.persons == len(rows) == len(dets) >= 5
    assert sorted(r["bbox_id"] for r in rows) == list(range(len(dets)))
    with pytest.raises(InputError, match="needs a person detector"):
        predict(estimator, memorised.image_dir, tmp_path / "x", boxes="detector", progress=False)


# ----------------------------------------------------------------------------- videos
def _write_video(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(f)
    writer.release()
    return path


def _count_frames(path: Path) -> tuple[int, tuple[int, int]]:
    cap = cv2.VideoCapture(str(path))
    n, size = 0, None
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        n, size = n + 1, (frame.shape[1], frame.shape[0])
    cap.release()
    return n, size


def test_video_gives_one_result_per_frame_and_an_overlay_video(memorised, estimator, tmp_path):
    image = cv2.imread(str(sorted(memorised.image_dir.iterdir())[0]))
    frames = [np.roll(image, 3 * i, axis=1) for i in range(8)]
    video = _write_video(tmp_path / "clip.mp4", frames)
    out = tmp_path / "out"
    report = predict(estimator, video, out, boxes="full", progress=False)
    assert report.frames == 8 and report.images == 0
    rows = _rows(out / "clip.results.json")
    assert sorted(r["image_id"] for r in rows) == list(range(8))
    assert _count_frames(out / "clip.overlay.mp4") == (8, (image.shape[1], image.shape[0]))
    assert len(_rows(out / "clip.detections.json")) == 8
    assert sorted(p.name for p in out.iterdir()) == ["clip.detections.json", "clip.overlay.mp4", "clip.results.json",
                                                     "summary.json"]
    out2 = tmp_path / "strided"
    predict(estimator, video, out2, boxes="full", video_stride=3, overlay=False, progress=False)
    assert sorted(r["image_id"] for r in _rows(out2 / "clip.results.json")) == [0, 3, 6]
    out3 = tmp_path / "short"
    predict(estimator, video, out3, boxes="full", max_frames=2, progress=False)
    assert _count_frames(out3 / "clip.overlay.mp4")[0] == 2
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 1000)
    with pytest.raises(InputError, match="none of the inputs"):
        predict(estimator, broken, tmp_path / "out4", boxes="full", progress=False)


def test_a_video_whose_frames_exceed_the_pixel_limit_is_skipped_before_any_frame(memorised, estimator, tmp_path):
    from wholebody.inference.io import open_video

    image = cv2.imread(str(sorted(memorised.image_dir.iterdir())[0]))
    h, w = image.shape[:2]
    folder = tmp_path / "in"
    folder.mkdir()
    _write_video(folder / "clip.mp4", [image] * 3)
    cv2.imwrite(str(folder / "still.jpg"), image[: h // 2, : w // 2])
    report = predict(estimator, folder, tmp_path / "out", boxes="full", progress=False, overlay=False,
                     max_image_pixels=w * h - 1)
    assert report.frames == 0 and report.images == 1
    assert [(Path(p).name, why) for p, why in report.skipped] == [
        ("clip.mp4", f"frames of {w}x{h} pixels, more than the limit of {w * h - 1:,} (max_image_pixels)")]
    assert not (tmp_path / "out" / "clip.results.json").exists()
    cap, info = open_video(folder / "clip.mp4", max_pixels=w * h)  # at the limit: read
    cap.release()
    assert (info.width, info.height) == (w, h)


# ----------------------------------------------------------------------------- bad input
def test_unreadable_images_are_skipped_and_listed(memorised, estimator, tmp_path):
    folder = tmp_path / "in"
    shutil.copytree(memorised.image_dir, folder)
    good = sorted(folder.iterdir())[0]
    (folder / "truncated.jpg").write_bytes(good.read_bytes()[:2000])
    (folder / "notes.jpg").write_text("not an image")
    (folder / "readme.txt").write_text("ignored: not an image type")
    report = predict(estimator, folder, tmp_path / "out", boxes="full", progress=False)
    assert report.images == 3
    assert sorted(Path(p).name for p, _ in report.skipped) == ["notes.jpg", "truncated.jpg"]
    reasons = dict((Path(p).name, why) for p, why in report.skipped)
    assert "truncated" in reasons["truncated.jpg"] and "decode" in reasons["notes.jpg"]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert sorted(Path(s["input"]).name for s in summary["skipped"]) == ["notes.jpg", "truncated.jpg"]
    assert len(list((tmp_path / "out" / "overlays").iterdir())) == 3


def test_bad_inputs_and_existing_outputs_are_clear_errors(memorised, estimator, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no images"):
        predict(estimator, tmp_path / "empty", tmp_path / "o", boxes="full", progress=False)
    with pytest.raises(InputError, match="does not exist"):
        predict(estimator, tmp_path / "missing", tmp_path / "o", boxes="full", progress=False)
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(InputError, match="not an image"):
        predict(estimator, tmp_path / "x.txt", tmp_path / "o", boxes="full", progress=False)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_text("not an image")
    with pytest.raises(InputError, match="none of the inputs"):
        predict(estimator, bad, tmp_path / "o", boxes="full", progress=False)
    assert not (tmp_path / "o").exists()  # nothing half-written that would block the next run
    out = tmp_path / "out"
    predict(estimator, memorised.image_dir, out, boxes="full", progress=False)
    before = (out / "results.json").stat().st_mtime_ns
    with pytest.raises(InputError, match="overwrite=true"):
        predict(estimator, memorised.image_dir, out, boxes="full", progress=False)
    assert (out / "results.json").stat().st_mtime_ns == before
    predict(estimator, memorised.image_dir, out, boxes="full", overwrite=True, progress=False)
    assert not [p for p in out.rglob(".*")]  # no temporary files left behind
    with pytest.raises(FileNotFoundError, match="no such file"):
        predict(estimator, memorised.image_dir, tmp_path / "o2", boxes=str(tmp_path / "nope.json"), progress=False)


def test_image_ids_follow_the_annotation_file_then_numeric_names_then_order(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("b.png", "a.jpg", "sub/000000000042.jpg"):
        (tmp_path / name).write_bytes(b"x")
    inputs = discover_inputs(tmp_path, recursive=True)
    assert [inputs.name(p) for p in inputs.images] == ["a.jpg", "b.png", "sub/000000000042.jpg"]
    ids, missing = assign_image_ids(inputs)
    assert sorted(ids.values()) == [1, 2, 3] and not missing
    numeric = Inputs(tmp_path, images=[tmp_path / "000000000785.jpg", tmp_path / "12.jpg"])
    assert assign_image_ids(numeric)[0] == {tmp_path / "000000000785.jpg": 785, tmp_path / "12.jpg": 12}

    class Info:
        def __init__(self, file_name):
            self.file_name = file_name

    ids, missing = assign_image_ids(inputs, {7: Info("sub/000000000042.jpg"), 8: Info("elsewhere/a.jpg")})
    assert ids == {tmp_path / "sub" / "000000000042.jpg": 7, tmp_path / "a.jpg": 8}
    assert missing == [tmp_path / "b.png"]
    assert discover_inputs(tmp_path).images == [tmp_path / "a.jpg", tmp_path / "b.png"]  # not recursive


# ----------------------------------------------------------------------------- the command's errors
def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_module("wholebody.conf", version_base="1.3"):
        return compose("predict", overrides=overrides)


def test_command_errors_are_one_line(memorised, tmp_path, capsys):
    from wholebody.cli.errors import run_or_exit
    from wholebody.cli.predict import run

    corrupted = tmp_path / "bad.ckpt"
    corrupted.write_bytes(memorised.ckpt.read_bytes()[:3000])
    cases = {
        "missing": ([], "ckpt= is required"),
        "corrupted": ([f"ckpt={corrupted}"], "not a readable checkpoint"),
        "no weights": ([f"ckpt={memorised.ckpt}"], "boxes="),
        "empty": ([f"ckpt={memorised.ckpt}", "boxes=full", f"input={tmp_path / 'empty'}"], "holds no images"),
    }
    (tmp_path / "empty").mkdir()
    for name, (extra, message) in cases.items():
        cfg = _compose([f"input={memorised.image_dir}", f"output={tmp_path / name}", "progress=false", *extra])
        with pytest.raises(SystemExit) as e:
            run_or_exit(run, cfg)
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2 and err.startswith("error: ") and "\n" not in err and message in err, (name, err)
    cfg = _compose([f"ckpt={memorised.ckpt}", f"input={memorised.image_dir}", f"output={tmp_path / 'det'}",
                    "progress=false", "detector.random_weights=true", "detector.num_classes=2",
                    "detector.min_size=128", "detector.max_size=256", "detector.score_thr=0.0", "detector.max_persons=3"])
    assert run(cfg) == 0  # boxes=detector through the config's _target_: an untrained detector finds "persons"
    dets = _rows(tmp_path / "det" / "detections.json")
    assert 0 < len(dets) <= 9 and all(d["category_id"] == 1 for d in dets)


def test_overlay_video_appears_only_when_complete(tmp_path):
    from wholebody.inference.io import AtomicVideoWriter

    frame = np.zeros((48, 64, 3), np.uint8)
    with pytest.raises(RuntimeError):
        with AtomicVideoWriter(tmp_path / "a.mp4", 10, (64, 48)) as w:
            w.write(frame)
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    with AtomicVideoWriter(tmp_path / "b.mp4", 10, (64, 48)) as w:
        for _ in range(3):
            w.write(frame)
        with pytest.raises(ValueError, match="frame is 32x48"):
            w.write(frame[:, :32])
    assert [p.name for p in tmp_path.iterdir()] == ["b.mp4"] and _count_frames(tmp_path / "b.mp4") == (3, (64, 48))
