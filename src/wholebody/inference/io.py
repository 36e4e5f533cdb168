"""Inputs and outputs of ``wholebody-predict``: finding images and videos, image ids, person-box
files, and writing overlays and videos atomically.

Image ids (what results rows carry, so that ``wholebody-eval`` can match them to ground truth):

1. with an annotation file (``ann=``, or ``boxes=`` pointing at a COCO-WholeBody file), the id of the
   ``images`` entry whose ``file_name`` is the image's path relative to the input folder, or else its
   file name; images it does not list are skipped (and listed);
2. else the file name's number when every name is a number (COCO's ``000000000785.jpg`` -> 785);
3. else 1, 2, ... in sorted path order.

Video frames use the frame index (0-based) as image id, one results file per video.

Output names (:func:`output_names`): an image's overlay is ``overlays/<relative path>`` with its suffix
replaced (PNG stays PNG, else ``.jpg``), a video's files are ``<relative path without suffix>.results.json``
etc. Inputs whose names would give the same output (``clip.mp4`` and ``clip.mkv``, ``img.jpg`` and
``img.JPG``) keep their full file name instead (``clip.mp4.results.json``, ``overlays/img.JPG.jpg``), so
no output overwrites another; the run says which inputs this applied to.

What earlier runs wrote is never read as input (:func:`is_predict_output`): files inside a subfolder
named ``overlays`` and videos named ``*.overlay.mp4``; they are counted and said.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from wholebody.images import MAX_IMAGE_PIXELS
from wholebody.inference.checkpoint import InferenceError
from wholebody.io_utils import atomic_target, write_bytes_atomic

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
#: The output folder's subfolder of drawn images, and the suffix of drawn videos (never read as inputs).
OVERLAY_DIR = "overlays"
OVERLAY_VIDEO_SUFFIX = ".overlay.mp4"


class InputError(InferenceError):
    """Inputs that cannot be used (missing path, unsupported file, empty folder, existing outputs)."""


@dataclass
class Inputs:
    """What ``input=`` names: images and videos (sorted), and the folder their names are relative to."""

    root: Path
    images: list[Path] = field(default_factory=list)
    videos: list[Path] = field(default_factory=list)
    earlier_outputs: list[Path] = field(default_factory=list)  # overlays of earlier runs found there, not read

    def name(self, path: Path) -> str:
        """The path relative to the input folder (POSIX), or the file name for a single file."""
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return path.name


def is_predict_output(rel: str | PurePosixPath) -> bool:
    """Whether a file at ``rel`` (path relative to the input folder) is what ``wholebody-predict`` writes
    as a drawing: below a subfolder named ``overlays``, or a video named ``*.overlay.mp4``."""
    r = PurePosixPath(rel)
    return OVERLAY_DIR in r.parts[:-1] or r.name.lower().endswith(OVERLAY_VIDEO_SUFFIX)


def discover_inputs(path: str | Path, recursive: bool = False) -> Inputs:
    """Images and videos of ``path``: one image, one video, or a folder of them (``recursive``: subfolders too).

    In a folder, the drawings of earlier runs (:func:`is_predict_output`) are left out and listed in
    ``earlier_outputs``; a single file named by ``path`` is always read.

    Raises:
        InputError: missing path, a file of an unsupported type, or a folder without images or videos.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"input {p} does not exist")
    if p.is_file():
        ext = p.suffix.lower()
        if ext in IMAGE_EXTS:
            return Inputs(p.parent, images=[p])
        if ext in VIDEO_EXTS:
            return Inputs(p.parent, videos=[p])
        raise InputError(f"input {p}: not an image ({' '.join(IMAGE_EXTS)}) or video ({' '.join(VIDEO_EXTS)}) file")
    files = sorted(f for f in (p.rglob("*") if recursive else p.iterdir()) if f.is_file() and not f.name.startswith("."))
    media: list[Path] = []
    earlier: list[Path] = []
    for f in files:
        if f.suffix.lower() in IMAGE_EXTS + VIDEO_EXTS:
            (earlier if is_predict_output(f.relative_to(p).as_posix()) else media).append(f)
    inputs = Inputs(p, images=[f for f in media if f.suffix.lower() in IMAGE_EXTS],
                    videos=[f for f in media if f.suffix.lower() in VIDEO_EXTS], earlier_outputs=earlier)
    if not inputs.images and not inputs.videos:
        where = " or its subfolders" if recursive else " (add recursive=true to look into subfolders)"
        left = (f"; {len(earlier)} drawing(s) of earlier wholebody-predict runs (in {OVERLAY_DIR}/ folders or named "
                f"*{OVERLAY_VIDEO_SUFFIX}) are not read as inputs" if earlier else "")
        raise InputError(f"input folder {p} holds no images ({' '.join(IMAGE_EXTS)}) or videos "
                         f"({' '.join(VIDEO_EXTS)}){where}{left}")
    return inputs


def assign_image_ids(
    inputs: Inputs, ann_images: Mapping[int, object] | None = None
) -> tuple[dict[Path, int], list[Path]]:
    """Image id of each input image (rules in the module docstring) and the images left without one.

    ``ann_images``: id -> an object with ``file_name`` (e.g. ``wholebody.data.coco.ImageInfo``).
    """
    if ann_images is not None:
        by_name: dict[str, int] = {}
        by_base: dict[str, list[int]] = {}
        for iid, info in ann_images.items():
            fn = str(info.file_name)
            by_name[fn] = int(iid)
            by_base.setdefault(Path(fn).name, []).append(int(iid))
        ids, missing = {}, []
        for img in inputs.images:
            rel = inputs.name(img)
            if rel in by_name:
                ids[img] = by_name[rel]
            elif len(by_base.get(img.name, [])) == 1:
                ids[img] = by_base[img.name][0]
            else:
                missing.append(img)
        return ids, missing
    stems = [img.stem for img in inputs.images]
    if stems and all(s.isdigit() for s in stems) and len({int(s) for s in stems}) == len(stems):
        return {img: int(img.stem) for img in inputs.images}, []
    return {img: i + 1 for i, img in enumerate(inputs.images)}, []


def check_output_folder(output: str | Path) -> Path:
    """``output`` as a folder path; :class:`InputError` when it, or a folder above it, is an existing file."""
    out = Path(output)
    for q in (out, *out.parents):
        if q.exists():
            if not q.is_dir():
                what = "is a file" if q == out else f"lies inside {q}, which is a file"
                raise InputError(f"output={out} {what}: output= names a folder (created if missing)")
            break
    return out


@dataclass
class OutputNames:
    """Names of the outputs of each input, relative to the output folder (see the module docstring)."""

    overlays: dict[Path, str] = field(default_factory=dict)  # image -> "overlays/<name>.jpg|.png"
    videos: dict[Path, str] = field(default_factory=dict)  # video -> stem of <stem>.results.json etc.
    full_names: list[Path] = field(default_factory=list)  # inputs whose names keep their suffix (collisions)


def _video_stem(rel: str, keep_suffix: bool) -> str:
    return rel if keep_suffix else str(PurePosixPath(rel).with_suffix(""))


def _overlay_name(rel: str, keep_suffix: bool) -> str:
    ext = ".png" if PurePosixPath(rel).suffix.lower() == ".png" else ".jpg"
    return f"{OVERLAY_DIR}/{_video_stem(rel, keep_suffix)}{ext}"


def output_names(inputs: Inputs) -> OutputNames:
    """Output names of every input: by stem, or by full file name for inputs whose stems would collide.

    Raises:
        InputError: (one line, before any work) when names still collide after keeping the suffix
            (e.g. ``a.jpg`` and ``a.jpg.jpeg``), naming them.
    """
    names = OutputNames()
    for paths, rule, into in ((inputs.images, _overlay_name, names.overlays),
                              (inputs.videos, _video_stem, names.videos)):
        default = {p: rule(inputs.name(p), False) for p in paths}
        counts = Counter(default.values())
        for p, n in default.items():
            if counts[n] > 1:
                n = rule(inputs.name(p), True)
                names.full_names.append(p)
            into[p] = n
        seen: dict[str, Path] = {}
        for p, n in into.items():
            if n in seen:
                raise InputError(f"inputs {seen[n]} and {p} would both write {n}: rename one of them")
            seen[n] = p
    return names


def check_outputs(paths: Sequence[Path], overwrite: bool) -> None:
    """Refuse to run when any output already exists, unless ``overwrite``."""
    if overwrite:
        return
    existing = [p for p in paths if p.exists()]
    if existing:
        shown = ", ".join(str(p) for p in existing[:3]) + (f" and {len(existing) - 3} more" if len(existing) > 3 else "")
        raise InputError(f"{shown} already exist(s); pass overwrite=true to replace, or choose another output=")


def write_image_atomic(path: Path, image_rgb: np.ndarray, jpeg_quality: int = 92) -> Path:
    """Encode an (H, W, 3) uint8 RGB image by the path's extension and write it atomically."""
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if path.suffix.lower() in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(path.suffix, np.ascontiguousarray(image_rgb[:, :, ::-1]), params)
    if not ok:
        raise OSError(f"cannot encode {path}")
    return write_bytes_atomic(path, buf.tobytes())


@dataclass
class VideoInfo:
    fps: float
    width: int
    height: int
    frames: int  # as the container states it (may be 0 or approximate)


def open_video(path: Path, max_pixels: int | None = None) -> tuple[cv2.VideoCapture, VideoInfo]:
    """Open a video for reading; ``InputError`` naming the file when it cannot be opened, or when its
    frames, as the container states their size, have more than ``max_pixels`` pixels (default
    :data:`~wholebody.images.MAX_IMAGE_PIXELS`, the image limit): refused before any frame is read."""
    limit = MAX_IMAGE_PIXELS if max_pixels is None else int(max_pixels)
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise InputError(f"{path}: cannot open video")
    info = VideoInfo(fps=float(cap.get(cv2.CAP_PROP_FPS) or 0.0) or 25.0, width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                     height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), frames=int(cap.get(cv2.CAP_PROP_FRAME_COUNT)))
    if info.width * info.height > limit:
        cap.release()
        raise InputError(f"{path}: frames of {info.width}x{info.height} pixels, more than the limit of {limit:,} "
                         "(max_image_pixels)")
    return cap, info


def video_frames(cap: cv2.VideoCapture, stride: int = 1, max_frames: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(frame index, (H, W, 3) uint8 BGR) of every ``stride``-th frame, up to ``max_frames`` of them."""
    index, taken = 0, 0
    while max_frames is None or taken < max_frames:
        ok = cap.grab()
        if not ok:
            return
        if index % stride == 0:
            ok, frame = cap.retrieve()
            if not ok or frame is None:
                return
            yield index, frame
            taken += 1
        index += 1


class AtomicVideoWriter:
    """An mp4v video written to a temporary file beside ``path`` and renamed into place by :meth:`close`;
    :meth:`abort` (or an exception inside ``with``) removes it."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int], fourcc: str = "mp4v") -> None:
        self.path = Path(path)
        self._target = contextlib.ExitStack()
        self.tmp = self._target.enter_context(atomic_target(self.path))  # same folder, same extension
        self.size = (int(size[0]), int(size[1]))
        self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*fourcc), float(fps), self.size)
        if not self.writer.isOpened():
            self.abort()
            raise OSError(f"cannot write video {self.path} (codec {fourcc})")
        self.frames = 0

    def write(self, frame_rgb: np.ndarray) -> None:
        if (frame_rgb.shape[1], frame_rgb.shape[0]) != self.size:
            raise ValueError(f"frame is {frame_rgb.shape[1]}x{frame_rgb.shape[0]}, the video {self.size[0]}x{self.size[1]}")
        self.writer.write(np.ascontiguousarray(frame_rgb[:, :, ::-1]))
        self.frames += 1

    def close(self) -> Path:
        self.writer.release()
        self._target.close()  # renames the finished file into place
        return self.path

    def abort(self) -> None:
        self.writer.release()
        err = RuntimeError("video aborted")
        self._target.__exit__(type(err), err, None)  # removes the temporary file

    def __enter__(self) -> AtomicVideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
