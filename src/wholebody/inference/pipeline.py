"""The ``wholebody-predict`` job as a function: inputs -> persons -> poses -> results, overlays, videos.

Output folder::

    results.json        COCO-WholeBody results rows of the images (wholebody-eval's input)
    images.json         {"images": [{id, file_name, width, height}]}: which file each image id is
    detections.json     with boxes=detector|full: the person boxes used (COCO bbox results); rows' bbox_id indexes it
    overlays/<name>     each image with its poses drawn (viz.draw_wholebody)
    <video>.results.json, <video>.overlay.mp4[, <video>.detections.json]   per video (image_id = frame index)
    summary.json        settings, counts, timings, skipped inputs

``<name>`` / ``<video>``: the input's path relative to the input folder without its suffix, or with it
where two inputs would otherwise write one file (:func:`wholebody.inference.io.output_names`); the
drawings of earlier runs in the input folder are never read (:func:`wholebody.inference.io.is_predict_output`).

Poses of detected persons (``boxes=detector`` or a detection file) go through OKS-NMS per image before
anything is written (``nms_thr``, as the evaluation does: :mod:`wholebody.evaluation.nms`); the persons of
an annotation file (``ann_id``) and ``boxes=full`` are kept as they are.

Persons of consecutive images share forward passes (up to the estimator's ``batch_size`` crops), and
images are decoded on a helper thread while the network runs.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wholebody.geometry import xyxy_to_xywh
from wholebody.images import ImageReadError, exif_orientation, read_image
from wholebody.inference.boxes import BoxFile, PersonBoxes, read_box_file, read_image_list
from wholebody.inference.estimator import PoseResult, WholeBodyEstimator
from wholebody.inference.io import (
    OVERLAY_DIR,
    OVERLAY_VIDEO_SUFFIX,
    AtomicVideoWriter,
    InputError,
    Inputs,
    OutputNames,
    assign_image_ids,
    check_output_folder,
    check_outputs,
    discover_inputs,
    open_video,
    output_names,
    video_frames,
    write_image_atomic,
)
from wholebody.io_utils import FolderInUseError, folder_lock, write_json_atomic

log = logging.getLogger(__name__)

Detector = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class PredictReport:
    """What a run did."""

    images: int = 0
    frames: int = 0
    persons: int = 0
    suppressed: int = 0  # poses of detected persons removed by OKS-NMS
    dropped_boxes: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (input, reason)
    written: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    exif_rotated: list[str] = field(default_factory=list)  # images whose EXIF tag viewers apply (poses: stored frame)
    full_names: list[str] = field(default_factory=list)  # inputs whose outputs keep their suffix (names collided)
    earlier_outputs: list[str] = field(default_factory=list)  # drawings of earlier runs in the input folder, not read
    _files: dict[tuple[int, int], Path] = field(default_factory=dict, repr=False)  # (device, inode) -> output

    def claim(self, path: Path) -> Path:
        """``path``, unless this run already wrote that very file for another input (a file system that
        ignores letter case maps ``A.jpg`` and ``a.jpg`` to one file): then one :class:`InputError` line."""
        try:
            st = path.stat()
        except FileNotFoundError:
            return path
        other = self._files.get((st.st_dev, st.st_ino))
        if other is not None:
            raise InputError(f"{path} is the file this run already wrote as {other} (the output folder's file system "
                             "ignores letter case?): rename one of the two inputs")
        return path

    def wrote(self, path: Path) -> Path:
        """Record an output file just written (see :meth:`claim`)."""
        st = path.stat()
        self._files[(st.st_dev, st.st_ino)] = path
        self.written.append(path)
        return path

    def summary_line(self) -> str:
        rate = (self.images + self.frames) / self.seconds if self.seconds > 0 else 0.0
        what = f"{self.images} images" + (f", {self.frames} video frames" if self.frames else "")
        line = f"{what}, {self.persons} persons in {self.seconds:.1f} s ({rate:.2f} images/s); {len(self.skipped)} skipped"
        if self.suppressed:
            line += f"; {self.suppressed} duplicate poses removed by OKS-NMS"
        if self.full_names:
            line += f"; {len(self.full_names)} input(s) share a name up to the suffix: their outputs keep it"
        if self.earlier_outputs:
            line += f"; {len(self.earlier_outputs)} drawing(s) of earlier runs in the input folder not read"
        if self.exif_rotated:
            line += (f"; {len(self.exif_rotated)} image(s) carry an EXIF orientation tag: their poses are in the "
                     "stored pixel frame, which viewers show rotated or mirrored")
        return line


@dataclass
class _Item:
    image_id: int
    name: str
    image_bgr: np.ndarray
    persons: PersonBoxes


def _suppress(item: _Item, res: PoseResult, nms_thr: float | None, report: PredictReport) -> tuple[PoseResult, np.ndarray]:
    """OKS-NMS of one image's poses when its persons are detected ones (``bbox_id``): the poses kept and
    their person keys."""
    ids = item.persons.ids
    if not nms_thr or item.persons.id_field != "bbox_id" or len(res) < 2:
        return res, ids
    keep = res.nms_keep(nms_thr)
    report.suppressed += len(res) - len(keep)
    return res.select(keep), ids[keep]


class _Boxes:
    """Person boxes per image from the chosen source, with the running box index of generated boxes."""

    def __init__(self, mode: str, box_file: BoxFile | None, detector: Detector | None, min_box_size: float):
        self.mode, self.box_file, self.detector, self.min_box_size = mode, box_file, detector, min_box_size
        self.generated: list[dict[str, Any]] = []  # detections.json rows of detector/full boxes
        self.dropped = 0

    def reset(self) -> None:
        self.generated = []

    def __call__(self, image_id: int, image_bgr: np.ndarray) -> PersonBoxes:
        h, w = image_bgr.shape[:2]
        if self.mode in ("detector", "full"):
            if self.mode == "full":
                boxes, scores = np.array([[0.0, 0.0, w, h]]), np.ones(1)
            else:
                boxes, scores = self.detector(image_bgr[:, :, ::-1])
            start = len(self.generated)
            pb = PersonBoxes(np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(scores, np.float64).reshape(-1),
                             np.arange(start, start + len(boxes), dtype=np.int64), "bbox_id")
            pb, dropped = pb.clipped(w, h, self.min_box_size)
            pb.ids = np.arange(start, start + len(pb), dtype=np.int64)
            for b, s in zip(pb.boxes, pb.scores):
                self.generated.append({"image_id": int(image_id), "category_id": 1,
                                       "bbox": [round(float(v), 3) for v in xyxy_to_xywh(b)], "score": float(s)})
        else:
            pb, dropped = self.box_file.for_image(image_id).clipped(w, h, self.min_box_size)
        self.dropped += dropped
        return pb


def _prefetch(paths: list[Path], depth: int = 4,
              max_pixels: int | None = None) -> Iterator[tuple[Path, tuple[np.ndarray | ImageReadError, int]]]:
    """(path, (BGR image as stored or the read error, EXIF orientation)) in order, decoded on a helper
    thread ``depth`` images ahead; an image of more than ``max_pixels`` pixels is a read error, from its
    header (:func:`wholebody.images.read_image`)."""

    def read(p: Path) -> tuple[np.ndarray | ImageReadError, int]:
        try:
            return read_image(str(p), max_pixels=max_pixels), exif_orientation(p)
        except ImageReadError as e:
            return e, 1

    with ThreadPoolExecutor(max_workers=1) as pool:
        futures = [pool.submit(read, p) for p in paths[:depth]]
        for i, p in enumerate(paths):
            if i + depth < len(paths):
                futures.append(pool.submit(read, paths[i + depth]))
            yield p, futures[i].result()
            futures[i] = None  # drop the decoded image once used


class _Batcher:
    """Collect items until ``batch_size`` persons wait, then run them through the estimator together."""

    def __init__(self, estimator: WholeBodyEstimator, sink: Callable[[_Item, PoseResult], None]):
        self.estimator, self.sink = estimator, sink
        self.items: list[_Item] = []
        self.persons = 0

    def add(self, item: _Item) -> None:
        self.items.append(item)
        self.persons += len(item.persons)
        if self.persons >= self.estimator.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self.items:
            return
        results = self.estimator.estimate_many(
            [it.image_bgr for it in self.items], [it.persons.boxes for it in self.items],
            [it.persons.scores for it in self.items], bgr=True)
        for it, res in zip(self.items, results):
            self.sink(it, res)
        self.items, self.persons = [], 0


def plan_outputs(inputs: Inputs, out: Path, ids: dict[Path, int], mode: str, overlay: bool,
                 names: OutputNames) -> list[Path]:
    """Every file a run would write (checked against ``overwrite`` before any work); ``names``: the
    inputs' :func:`~wholebody.inference.io.output_names`."""
    paths = [out / "summary.json"]
    if inputs.images:
        paths += [out / "results.json", out / "images.json"]
        paths += [out / "detections.json"] if mode in ("detector", "full") else []
        paths += [out / names.overlays[p] for p in inputs.images if p in ids] if overlay else []
    for v in inputs.videos:
        stem = names.videos[v]
        paths += [out / f"{stem}.results.json"]
        paths += [out / f"{stem}.overlay.mp4"] if overlay else []
        paths += [out / f"{stem}.detections.json"] if mode in ("detector", "full") else []
    return paths


def predict(
    estimator: WholeBodyEstimator,
    input: str | Path,
    output: str | Path,
    *,
    boxes: str = "detector",
    detector: Detector | None = None,
    ann: str | Path | None = None,
    det_score_thr: float = 0.0,
    min_box_size: float = 1.0,
    overlay: bool = True,
    score_thr: float = 0.3,
    overwrite: bool = False,
    recursive: bool = False,
    video_stride: int = 1,
    max_frames: int | None = None,
    progress: bool = True,
    nms_thr: float | None = 0.9,
    settings: dict[str, Any] | None = None,
    max_image_pixels: int | None = None,
) -> PredictReport:
    """Run pose estimation on an image, a folder or a video and write the outputs (module docstring).

    Args:
        boxes: ``detector`` | ``full`` | a detection results or COCO-WholeBody annotation file (see
            :mod:`wholebody.inference.boxes`).
        detector: callable image_rgb -> (boxes, scores), needed for ``boxes="detector"``.
        ann: COCO-style file whose ``images`` give the image ids (see :mod:`wholebody.inference.io`).
        det_score_thr: for a detection file, drop persons scoring below it.
        overlay / score_thr: draw the poses (keypoints and boxes scoring below ``score_thr`` hidden).
        overwrite: replace existing outputs (otherwise the run stops before any work and names them).
        video_stride / max_frames: process every n-th frame, at most this many per video.
        nms_thr: OKS-NMS threshold for the poses of detected persons (module docstring); None or 0: none.
        max_image_pixels: images of more pixels are skipped (counted and listed) before decoding (None:
            :data:`wholebody.images.MAX_IMAGE_PIXELS`, 100 megapixels).
    Raises:
        InputError, CheckpointError, AnnotationError, FileNotFoundError: expected problems, one line each.
    """
    t0 = time.perf_counter()
    out = check_output_folder(output)
    if video_stride < 1:
        raise InputError(f"video_stride must be >= 1, got {video_stride}")
    if nms_thr is not None and not 0 <= nms_thr <= 1:
        raise InputError(f"nms_thr must be in [0, 1] (0 or null: no OKS-NMS), got {nms_thr}")
    if max_image_pixels is not None:
        if type(max_image_pixels) not in (int, float) or not 1 <= max_image_pixels < 2**63 \
                or max_image_pixels != int(max_image_pixels):
            raise InputError(f"max_image_pixels must be a positive whole number (null: 100 megapixels), "
                             f"got {max_image_pixels!r}")
        max_image_pixels = int(max_image_pixels)
    inputs = discover_inputs(input, recursive)
    names = output_names(inputs)  # before any work: inputs whose outputs would collide
    box_file = None
    if boxes not in ("detector", "full"):
        box_file = read_box_file(boxes, det_score_thr)
        for why, n in box_file.dropped.items():
            log.info("boxes=%s: %d left out (%s)", boxes, n, why)
    elif boxes == "detector" and detector is None:
        raise InputError("boxes=detector needs a person detector")
    mode = boxes if boxes in ("detector", "full") else "file"
    ann_images = read_image_list(ann) if ann else (box_file.images if box_file is not None else None)
    ids, unlisted = assign_image_ids(inputs, ann_images)
    report = PredictReport()
    src = ann or boxes
    report.skipped += [(str(p), f"not listed in {src} (no image id)") for p in unlisted]
    report.full_names = [inputs.name(p) for p in names.full_names]
    report.earlier_outputs = [inputs.name(p) for p in inputs.earlier_outputs]
    if report.full_names:
        log.warning("%d input(s) share a name up to the suffix; their outputs keep the suffix: %s",
                    len(report.full_names), ", ".join(report.full_names[:5]) + (" ..." if len(report.full_names) > 5 else ""))
    if report.earlier_outputs:
        log.warning("%d file(s) in %s are drawings of an earlier wholebody-predict run (in %s/ folders or named *%s): "
                    "not read as inputs", len(report.earlier_outputs), input, OVERLAY_DIR, OVERLAY_VIDEO_SUFFIX)
    with _output_folder(out):  # two runs into one folder would overwrite each other
        check_outputs(plan_outputs(inputs, out, ids, mode, overlay, names), overwrite)
        source = _Boxes(mode, box_file, detector, min_box_size)

        # ------------------------------------------------------------------ images
        rows: list[dict[str, Any]] = []
        image_list: list[dict[str, Any]] = []
        todo = [p for p in inputs.images if p in ids]
        overlay_of = {inputs.name(p): out / names.overlays[p] for p in todo}
        if todo:
            bar = _bar(len(todo), "images", progress)

            def sink(item: _Item, res: PoseResult) -> None:
                res, ids = _suppress(item, res, nms_thr, report)
                rows.extend(res.rows(item.image_id, ids, item.persons.id_field))
                if overlay:
                    path = report.claim(overlay_of[item.name])
                    report.wrote(write_image_atomic(path, res.draw(item.image_bgr[:, :, ::-1], score_thr)))
                report.persons += len(res)
                bar.update(1)

            batcher = _Batcher(estimator, sink)
            for path, (image, orientation) in _prefetch(todo, max_pixels=max_image_pixels):
                if orientation != 1:
                    report.exif_rotated.append(str(path))
                if isinstance(image, ImageReadError):
                    log.warning("skipping %s: %s", path, image.reason)
                    report.skipped.append((str(path), image.reason))
                    bar.update(1)
                    continue
                iid = ids[path]
                h, w = image.shape[:2]
                image_list.append({"id": iid, "file_name": inputs.name(path), "width": w, "height": h})
                batcher.add(_Item(iid, inputs.name(path), image, source(iid, image)))
                report.images += 1
            batcher.flush()
            bar.close()
        if image_list:  # nothing is written for images when none of them could be read
            rows.sort(key=lambda r: (r["image_id"], r.get("ann_id", r.get("bbox_id", 0))))
            report.written.append(write_json_atomic(out / "results.json", rows, indent=False))
            report.written.append(write_json_atomic(out / "images.json", {"images": image_list}))
            if mode != "file":
                report.written.append(write_json_atomic(out / "detections.json", source.generated, indent=False))

        # ------------------------------------------------------------------ videos
        for video in inputs.videos:
            _predict_video(estimator, names.videos[video], video, out, source, overlay, score_thr, video_stride,
                           max_frames, progress, report, nms_thr, max_image_pixels)

        report.dropped_boxes = source.dropped
        if report.images == 0 and report.frames == 0:
            raise InputError(f"none of the inputs of {input} could be read: "
                             + "; ".join(f"{p}: {why}" for p, why in report.skipped[:3]))
        report.seconds = time.perf_counter() - t0
        summary = {
            "input": str(input), "output": str(out), "boxes": str(boxes), "estimator": dict(estimator.describe()),
            "settings": settings or {}, "images": report.images, "video_frames": report.frames, "persons": report.persons,
            "nms_thr": nms_thr or None, "nms_suppressed": report.suppressed,
            "boxes_dropped_small": report.dropped_boxes, "seconds": round(report.seconds, 3),
            "skipped": [{"input": p, "reason": why} for p, why in report.skipped],
            "exif_orientation_not_applied": report.exif_rotated,
            "outputs_named_with_suffix": report.full_names,
            "earlier_outputs_not_read": report.earlier_outputs,
            "files": [str(p.relative_to(out)) for p in report.written if not str(p.relative_to(out)).startswith("overlays")],
        }
        report.written.append(write_json_atomic(out / "summary.json", summary))
        return report


@contextlib.contextmanager
def _output_folder(out: Path) -> Iterator[Path]:
    """Hold the output folder for this run (:func:`wholebody.io_utils.folder_lock`; in use: one
    :class:`InputError` line); a failed run leaves no empty folder behind."""
    created = not out.exists()
    try:
        with folder_lock(out, what="predict"):
            yield out
    except FolderInUseError as e:
        raise InputError(str(e)) from None
    finally:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()


def _predict_video(estimator, stem, video, out, source, overlay, score_thr, stride, max_frames, progress, report,
                   nms_thr=None, max_pixels=None) -> None:
    """Poses of one video's frames into ``<stem>.results.json`` (and its detections and overlay video)."""
    try:
        cap, info = open_video(video, max_pixels=max_pixels)
    except InputError as e:
        log.warning("skipping %s", e)
        report.skipped.append((str(video), str(e).removeprefix(f"{video}: ")))
        return
    source.reset()
    rows: list[dict[str, Any]] = []
    writer = None
    try:
        if overlay:
            fps = info.fps / stride
            writer = AtomicVideoWriter(report.claim(out / f"{stem}.overlay.mp4"), fps, (info.width, info.height))
        total = info.frames // stride if info.frames > 0 else None
        total = min(total, max_frames) if (total is not None and max_frames) else (total or max_frames)
        bar = _bar(total, f"{video.name} frames", progress)

        def sink(item: _Item, res: PoseResult) -> None:
            res, ids = _suppress(item, res, nms_thr, report)
            rows.extend(res.rows(item.image_id, ids, item.persons.id_field))
            if writer is not None:
                writer.write(res.draw(item.image_bgr[:, :, ::-1], score_thr))
            report.persons += len(res)
            bar.update(1)

        batcher = _Batcher(estimator, sink)
        n = 0
        for index, frame in video_frames(cap, stride, max_frames):
            batcher.add(_Item(index, f"{stem}#{index}", frame, source(index, frame)))
            n += 1
        batcher.flush()
        bar.close()
        if n == 0:
            raise InputError(f"{video}: no frame could be decoded")
        report.frames += n
        report.wrote(write_json_atomic(report.claim(out / f"{stem}.results.json"), rows, indent=False))
        if source.mode != "file":
            report.wrote(write_json_atomic(report.claim(out / f"{stem}.detections.json"), source.generated, indent=False))
        if writer is not None:
            report.wrote(writer.close())
            writer = None
    except InputError as e:
        log.warning("skipping %s", e)
        report.skipped.append((str(video), str(e).split(": ", 1)[-1]))
    finally:
        cap.release()
        if writer is not None:
            writer.abort()


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(total: int | None, unit: str, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, unit=unit.split()[-1].rstrip("s"), desc=unit, dynamic_ncols=True)

