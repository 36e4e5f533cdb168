"""WholeBody-Face / WholeBody-Hand: the paper's cross-dataset sets, cut out of COCO-WholeBody.

Every valid face (``face_valid``, a box, at least one labelled keypoint) and every valid hand
(both sides, same rule) becomes a square crop centred on its region, ``padding`` times the
region's longer side, resized to ``size`` x ``size``. The region is the part box grown to hold every
labelled keypoint of the part (in the released files a few keypoints lie outside their box, and a
crop must not cut off points it is evaluated on). Each set is written as

    OUT/<set>/images/<image_id>_<ann_id>[_left|_right].jpg
    OUT/<set>/annotations.json        COCO-style, keypoints and boxes in crop px

where ``<set>`` is ``face`` or ``hand``. Crop keypoints are exact affine images of the file's
keypoints (:func:`wholebody.geometry.apply_affine` in the package's pixel convention, written in COCO's), and each
annotation keeps its source ids and its 2x3 image->crop matrix, so results can be mapped back.
The annotation file is written last: its presence marks a complete set.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from wholebody.datatools.annotations import ImageInfo, WholeBodyTable
from wholebody.datatools.images import SkippedImage, check_image_dir, run_image_jobs
from wholebody.geometry import (
    affine_matrix,
    apply_affine,
    keypoints_bbox,
    keypoints_from_file,
    keypoints_to_file,
    transform_boxes,
    warp_image,
    xyxy_to_xywh,
)
from wholebody.images import read_image, relative_file_name
from wholebody.io_utils import write_bytes_atomic, write_json_atomic

log = logging.getLogger(__name__)

#: set name -> the parts it draws from.
SETS: dict[str, tuple[str, ...]] = {"face": ("face",), "hand": ("lefthand", "righthand")}
ANNOTATION_FILE = "annotations.json"


@dataclass(frozen=True)
class CropSet:
    """An extracted set read back as arrays (N crops, K keypoints), ready for the crop metrics.

    Attributes:
        annotation_file: the set's ``annotations.json``; image_paths: (N,) crop files.
        keypoints: (N, K, 3) crop px + visibility (> 0: labelled); boxes: (N, 4) part boxes, xywh crop px.
        image_to_crop: (N, 2, 3) source image px -> crop px; source_ann_id: (N,) int64.
        side: (N,) "left"/"right" for hands, ``None`` for faces; mirrored: (N,) bool.
    """

    annotation_file: Path
    image_paths: list[Path]
    keypoints: np.ndarray
    boxes: np.ndarray
    image_to_crop: np.ndarray
    source_ann_id: np.ndarray
    side: np.ndarray | None
    mirrored: np.ndarray


def load_crop_set(annotation_file: str | Path) -> CropSet:
    """Read a set written by :func:`extract_sets` (``OUT/face/annotations.json`` or ``OUT/hand/...``)."""
    from wholebody.cocowb import read_json

    path = Path(annotation_file)
    if path.is_dir():
        path = path / ANNOTATION_FILE
    if not path.is_file():
        raise FileNotFoundError(f"crop-set annotation file not found: {path}")
    data = read_json(path)  # (one line naming the file when it is not JSON)
    try:
        files = {im["id"]: path.parent / relative_file_name(im["file_name"]) for im in data["images"]}
        anns = data["annotations"]
        k = len(data["categories"][0]["keypoints"])
        kp = keypoints_from_file(np.array([a["keypoints"] for a in anns], dtype=np.float64).reshape(len(anns), k, 3))
        boxes = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
        mats = np.array([a["image_to_crop"] for a in anns], dtype=np.float64).reshape(-1, 2, 3)
        src = np.array([a["source_ann_id"] for a in anns], dtype=np.int64)
        paths = [files[a["image_id"]] for a in anns]
    except (KeyError, IndexError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: not a crop set written by wholebody-data extract ({e!r})") from None
    hands = bool(anns) and "side" in anns[0]
    side = np.array([a["side"] for a in anns]) if hands else None
    mirrored = np.array([bool(a.get("mirrored", False)) for a in anns], dtype=bool)
    return CropSet(path, paths, kp, boxes, mats, src, side, mirrored)


class OutputExistsError(FileExistsError):
    """The output already holds a set and ``overwrite`` was not given."""


def _local_names(table: WholeBodyTable, part: str) -> list[str]:
    names = table.spec.names[table.spec.slice(part)]
    for prefix in ("left_", "right_"):
        names = tuple(n[len(prefix) :] if n.startswith(prefix) else n for n in names)
    return list(names)


def _local_edges(table: WholeBodyTable, part: str) -> list[list[int]]:
    s = table.spec.slice(part)
    edges = np.concatenate([table.spec.skeleton_index, table.spec.outline_index], axis=0)
    inside = ((edges >= s.start) & (edges < s.stop)).all(axis=1)
    return (edges[inside] - s.start).tolist()


def part_regions(table: WholeBodyTable, part: str, rows: np.ndarray) -> np.ndarray:
    """(R, 4) xyxy image px: the part box of each row, grown to hold the part's labelled keypoints."""
    box = table.part_box_xyxy(part)[rows]
    kp = table.keypoints[rows, table.spec.slice(part)]
    pts_box, ok = keypoints_bbox(kp[..., :2], kp[..., 2] > 0)
    grown = np.concatenate([np.minimum(box[:, :2], pts_box[:, :2]), np.maximum(box[:, 2:], pts_box[:, 2:])], axis=1)
    return np.where(ok[:, None], grown, box)


def select_parts(table: WholeBodyTable, part: str) -> np.ndarray:
    """Rows whose ``part`` is valid, has a box of positive size and at least one labelled keypoint."""
    return np.flatnonzero(table.usable(part) & table.labelled(part).any(axis=1))


def crop_matrices(boxes_xyxy: np.ndarray, size: int, padding: float, flip: np.ndarray | bool = False) -> np.ndarray:
    """Image -> crop affines of square crops around boxes.

    Args:
        boxes_xyxy: (N, 4) image px; size: crop side (crop px); padding: crop side / box's longer
        side; flip: (N,) bool, mirror the crop (x' = size - x).
    Returns:
        (N, 2, 3) matrices, image px -> crop px.
    """
    b = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    center = (b[:, :2] + b[:, 2:]) / 2.0
    side = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) * padding
    return affine_matrix(center, np.stack([side, side], -1), 0.0, (size, size), flip=np.broadcast_to(flip, side.shape))


@dataclass(frozen=True)
class _CropJob:
    path: Path
    info: ImageInfo
    outputs: tuple[Path, ...]
    matrices: np.ndarray  # (C, 2, 3)
    size: int
    quality: int


def _cut(job: _CropJob) -> int:
    img = read_image(job.path, (job.info.width, job.info.height))  # BGR, as the JPEG encoder takes it
    for out, m in zip(job.outputs, job.matrices):
        crop = warp_image(img, m, (job.size, job.size))
        ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, job.quality])
        if not ok:  # pragma: no cover - encoder failure
            raise RuntimeError(f"JPEG encoding failed for {out}")
        write_bytes_atomic(out, buf.tobytes())
    return len(job.outputs)


@dataclass
class SetReport:
    name: str
    annotation_file: Path
    crops: int
    by_part: dict[str, int]
    skipped_crops: int


@dataclass
class ExtractReport:
    sets: dict[str, SetReport] = field(default_factory=dict)
    skipped: list[SkippedImage] = field(default_factory=list)


def _check_output(set_dir: Path, overwrite: bool) -> None:
    images = set_dir / "images"
    taken = (set_dir / ANNOTATION_FILE).exists() or (images.is_dir() and any(images.iterdir()))
    if taken and not overwrite:
        raise OutputExistsError(f"{set_dir} already holds an extracted set; pass overwrite (--overwrite) to replace it")


def extract_sets(
    table: WholeBodyTable,
    image_dir: str | Path,
    out_dir: str | Path,
    sets: tuple[str, ...] = ("face", "hand"),
    size: int = 256,
    padding: float = 1.25,
    mirror_left_hands: bool = False,
    quality: int = 95,
    workers: int = 0,
    overwrite: bool = False,
    progress: bool | None = None,
) -> ExtractReport:
    """Cut the WholeBody-Face and/or WholeBody-Hand sets out of one annotation file (see module doc).

    Args:
        mirror_left_hands: mirror left-hand crops so every hand looks like a right hand (the
            annotation records ``side`` and ``mirrored``).
    Raises:
        OutputExistsError: a set exists in ``out_dir`` and ``overwrite`` is False.
        FileNotFoundError: the image folder is missing or empty.
    """
    unknown = set(sets) - set(SETS)
    if unknown:
        raise ValueError(f"unknown set(s) {sorted(unknown)}; choose from {sorted(SETS)}")
    if size < 1 or not (padding > 0 and math.isfinite(padding)):  # (nan > 0 is False; inf scales crops to nothing)
        raise ValueError(f"size must be >= 1 and padding > 0, got size={size}, padding={padding}")
    image_dir = check_image_dir(image_dir)
    out_dir = Path(out_dir)
    for name in sets:
        _check_output(out_dir / name, overwrite)

    # one entry per crop: (set, part, row, output path, matrix)
    plan: list[tuple[str, str, int, Path, np.ndarray, bool]] = []
    for name in sets:
        for part in SETS[name]:
            rows = select_parts(table, part)
            flip = mirror_left_hands and part == "lefthand"
            mats = crop_matrices(part_regions(table, part, rows), size, padding, flip)
            suffix = {"lefthand": "_left", "righthand": "_right"}.get(part, "")
            for r, m in zip(rows, mats):
                fname = f"{int(table.image_id[r]):012d}_{int(table.ann_id[r])}{suffix}.jpg"
                plan.append((name, part, int(r), out_dir / name / "images" / fname, m, flip))

    by_image: dict[int, list[int]] = {}
    for i, (_, _, r, _, _, _) in enumerate(plan):
        by_image.setdefault(int(table.image_id[r]), []).append(i)
    jobs, names, job_items = [], [], []
    for img_id, items in by_image.items():
        info = table.images[img_id]
        jobs.append(_CropJob(image_dir / info.file_name, info, tuple(plan[i][3] for i in items),
                             np.stack([plan[i][4] for i in items]), size, quality))
        names.append(info.file_name)
        job_items.append(items)
    for name in sets:
        (out_dir / name / "images").mkdir(parents=True, exist_ok=True)
    _, skipped = run_image_jobs(_cut, jobs, names, workers=workers, desc="extract", progress=progress)
    bad_files = {s.file for s in skipped}
    failed = {i for n, items in zip(names, job_items) if n in bad_files for i in items}

    report = ExtractReport(skipped=skipped)
    for name in sets:
        report.sets[name] = _write_set(table, out_dir / name, name, plan, failed, size, padding, mirror_left_hands)
    return report


def _write_set(table, set_dir, name, plan, failed, size, padding, mirror_left_hands) -> SetReport:
    spec = table.spec
    first = SETS[name][0]
    images, anns = [], []
    by_part = {p: 0 for p in SETS[name]}
    skipped = 0
    for i, (set_name, part, r, out, m, flip) in enumerate(plan):
        if set_name != name:
            continue
        if i in failed:
            skipped += 1
            continue
        kp = table.keypoints[r, spec.slice(part)]
        lab = kp[:, 2] > 0
        xy = apply_affine(m, kp[:, :2])
        crop_kp = np.concatenate([np.where(lab[:, None], xy, 0.0), kp[:, 2:3]], axis=1)
        box = xyxy_to_xywh(transform_boxes(m, table.part_box_xyxy(part)[r][None]))[0]
        src = table.images[int(table.image_id[r])]
        crop_id = len(images) + 1
        images.append({"id": crop_id, "file_name": f"images/{out.name}", "width": size, "height": size,
                       "source_image_id": src.id, "source_file_name": src.file_name})
        ann = {"id": crop_id, "image_id": crop_id, "category_id": 1, "iscrowd": 0,
               "keypoints": keypoints_to_file(crop_kp).reshape(-1).tolist(), "num_keypoints": int(lab.sum()),
               "bbox": box.tolist(), "area": float(box[2] * box[3]),
               "source_ann_id": int(table.ann_id[r]), "source_image_id": src.id,
               "image_to_crop": m.tolist()}
        if name == "hand":
            ann["side"] = "left" if part == "lefthand" else "right"
            ann["mirrored"] = bool(flip)
        anns.append(ann)
        by_part[part] += 1
    data = {
        "info": {"description": f"WholeBody-{name.capitalize()} crops of {table.path.name}",
                 "source": str(table.path), "crop_size": size, "padding": padding,
                 "pixel_convention": "COCO's: keypoints are pixel indices (pixel i's centre at i), boxes and "
                                     "image_to_crop continuous (pixel i covers [i, i+1))",
                 "mirror_left_hands": bool(mirror_left_hands) if name == "hand" else False},
        "categories": [{"id": 1, "name": name, "supercategory": "person",
                        "keypoints": _local_names(table, first), "skeleton": _local_edges(table, first)}],
        "images": images,
        "annotations": anns,
    }
    keep = {Path(im["file_name"]).name for im in images}
    for stale in (set_dir / "images").glob("*.jpg"):  # crops of an earlier run (only reached with overwrite)
        if stale.name not in keep:
            stale.unlink()
    path = write_json_atomic(set_dir / ANNOTATION_FILE, data)
    return SetReport(name, path, len(anns), by_part, skipped)

