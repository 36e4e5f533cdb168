"""Raw COCO-WholeBody annotation files as column arrays, for dataset statistics and extraction.

Every annotation row of the file is kept (crowd persons, persons without keypoints, invalid parts):
the statistics decide what they include, and say so. Parsing is a single pass with orjson; the
arrays are then built in bulk, and a malformed record is reported by file, index and id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wholebody.geometry import keypoints_from_file
from wholebody.images import relative_file_name
from wholebody.keypoints import BOX_PARTS, COCO_WHOLEBODY, PARTS, KeypointSpec


class AnnotationFormatError(ValueError):
    """An annotation file that is not in the COCO-WholeBody format (names the file and the record)."""


@dataclass(frozen=True)
class ImageInfo:
    id: int
    file_name: str
    width: int
    height: int


@dataclass(frozen=True)
class WholeBodyTable:
    """All person annotations of one file, as arrays (N persons).

    Attributes:
        path: the annotation file.
        images: image id -> :class:`ImageInfo`, for every image of the file (with or without persons).
        ann_id, image_id: (N,) int64.
        iscrowd: (N,) bool.
        bbox: (N, 4) person boxes, xywh image px (as in the file).
        keypoints: (N, K, 3) image px + visibility, K = 133 in the spec's order; v > 0 is labelled.
        part_boxes: (N, 3, 4) face / lefthand / righthand boxes, xywh image px (zeros when absent).
        valid: part -> (N,) bool: the file's ``*_valid`` flags (face, lefthand, righthand, foot).
    """

    path: Path
    images: Mapping[int, ImageInfo]
    ann_id: np.ndarray
    image_id: np.ndarray
    iscrowd: np.ndarray
    bbox: np.ndarray
    keypoints: np.ndarray
    part_boxes: np.ndarray
    valid: Mapping[str, np.ndarray]
    spec: KeypointSpec = COCO_WHOLEBODY

    def __len__(self) -> int:
        return int(self.ann_id.shape[0])

    def labelled(self, part: str) -> np.ndarray:
        """(N, K_part) bool: keypoints of ``part`` with v > 0."""
        return self.keypoints[:, self.spec.slice(part), 2] > 0

    def part_box_xyxy(self, part: str) -> np.ndarray:
        """(N, 4) xyxy image px of a box part (face, lefthand, righthand)."""
        b = self.part_boxes[:, BOX_PARTS.index(part)]
        return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)

    def has_box(self, part: str) -> np.ndarray:
        """(N,) bool: the part's box has a positive width and height."""
        b = self.part_boxes[:, BOX_PARTS.index(part)]
        return (b[:, 2] > 0) & (b[:, 3] > 0)


def _fail(path: Path, what: str) -> AnnotationFormatError:
    return AnnotationFormatError(f"{path}: {what}")


def _record_name(i: int, rec: Any) -> str:
    rid = rec.get("id", "?") if isinstance(rec, dict) else "?"
    return f"annotation #{i} (id={rid})"


def _column(path: Path, records: Sequence[dict], key: str, shape: tuple[int, ...], dtype=np.float64) -> np.ndarray:
    """Stack ``rec[key]`` of every record into an (N, *shape) array; a bad record is named."""
    try:
        values = [rec[key] for rec in records]
        arr = np.asarray(values, dtype=dtype)
        if arr.shape == (len(records),) + shape:
            return arr
    except (KeyError, TypeError, ValueError):
        pass
    size = int(np.prod(shape)) if shape else 1
    for i, rec in enumerate(records):
        if not isinstance(rec, dict) or key not in rec:
            raise _fail(path, f"{_record_name(i, rec)} has no field {key!r} (is this a COCO-WholeBody file?)")
        v = rec[key]
        try:
            a = np.asarray(v, dtype=dtype)
        except (TypeError, ValueError):
            raise _fail(path, f"{_record_name(i, rec)}: field {key!r} is not numeric: {str(v)[:80]}") from None
        if a.size != size:
            raise _fail(path, f"{_record_name(i, rec)}: field {key!r} has {a.size} values, expected {size}")
    raise _fail(path, f"field {key!r} could not be read")  # pragma: no cover - caught above


def parse_wholebody(data: Mapping[str, Any], path: str | Path = "<memory>", spec: KeypointSpec = COCO_WHOLEBODY) -> WholeBodyTable:
    """Turn a loaded COCO-WholeBody dict into a :class:`WholeBodyTable` (no file access)."""
    path = Path(path)
    if not isinstance(data, Mapping) or "annotations" not in data or "images" not in data:
        raise _fail(path, "not a COCO annotation file (needs 'images' and 'annotations' lists)")
    images: dict[int, ImageInfo] = {}
    for i, im in enumerate(data["images"]):
        try:
            info = ImageInfo(int(im["id"]), str(im["file_name"]), int(im["width"]), int(im["height"]))
        except (KeyError, TypeError, ValueError):
            raise _fail(path, f"image #{i} needs id, file_name, width and height: {str(im)[:120]}") from None
        try:
            relative_file_name(im["file_name"])
        except ValueError as e:
            raise _fail(path, f"image #{i} (id {info.id}): {e}") from None
        images[info.id] = info
    anns = data["annotations"]
    if not isinstance(anns, list):
        raise _fail(path, "'annotations' is not a list")
    n = len(anns)
    kpts = np.zeros((n, spec.num_keypoints, 3))
    for part in PARTS:
        s = spec.slice(part)
        kpts[:, s] = _column(path, anns, spec.annotation_keys[part], (spec.num_part(part) * 3,)).reshape(n, -1, 3)
    boxes = np.stack([_column(path, anns, spec.box_keys[p], (4,)) for p in BOX_PARTS], axis=1) if n else np.zeros((0, 3, 4))
    valid = {p: _column(path, anns, k, (), dtype=bool) for p, k in spec.valid_keys.items()}
    ann_id = _column(path, anns, "id", (), dtype=np.int64)
    image_id = _column(path, anns, "image_id", (), dtype=np.int64)
    iscrowd = np.asarray([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool)
    bbox = _column(path, anns, "bbox", (4,))
    missing = np.flatnonzero(~np.isin(image_id, np.fromiter(images, dtype=np.int64, count=len(images))))
    if missing.size:
        i = int(missing[0])
        raise _fail(path, f"{_record_name(i, anns[i])} refers to image_id {int(image_id[i])}, which is not in 'images'")
    bad = ~np.isfinite(kpts).all(axis=(1, 2)) | ~np.isfinite(boxes).all(axis=(1, 2))
    kpts = keypoints_from_file(kpts)  # COCO's pixel indices -> the package's pixel centres (geometry.py)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise _fail(path, f"{_record_name(i, anns[i])} has non-finite keypoints or boxes")
    return WholeBodyTable(path, images, ann_id, image_id, iscrowd, bbox, kpts, boxes, valid, spec)


def load_wholebody(path: str | Path, spec: KeypointSpec = COCO_WHOLEBODY) -> WholeBodyTable:
    """Read a COCO-WholeBody annotation file (``coco_wholebody_{train,val}_v1.0.json`` layout)."""
    import orjson

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        data = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as e:
        raise _fail(path, f"not valid JSON ({e})") from None
    return parse_wholebody(data, path, spec)
