"""Raw COCO-WholeBody annotation files as column arrays, for dataset statistics and extraction.

Every annotation row of the file is kept (crowd persons, persons without keypoints, invalid parts):
the statistics decide what they include, and say so. The file is read by the one reader
(:mod:`wholebody.cocowb`); a malformed record is reported by file, index and id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wholebody.cocowb import AnnotationError, WholeBodyColumns, read_wholebody
from wholebody.cocowb import parse_wholebody as read_columns
from wholebody.geometry import keypoints_from_file
from wholebody.keypoints import BOX_PARTS, COCO_WHOLEBODY, PARTS, KeypointSpec

#: An annotation file that is not in the COCO-WholeBody format (names the file and the record): the
#: package's one error type for malformed files.
AnnotationFormatError = AnnotationError


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
        part_usable: (N, 3) bool, the reader's one rule for a usable part box (``BOX_PARTS`` order;
            :meth:`~wholebody.cocowb.WholeBodyColumns.part_box_usable`): flagged valid and with area.
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
    part_usable: np.ndarray
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

    def usable(self, part: str) -> np.ndarray:
        """(N,) bool: the part's box is usable (flagged valid and with area)."""
        return self.part_usable[:, BOX_PARTS.index(part)]


def _fail(path: Path, what: str) -> AnnotationFormatError:
    return AnnotationFormatError(f"{path}: {what}")


def table_from_columns(c: WholeBodyColumns, path: str | Path, spec: KeypointSpec = COCO_WHOLEBODY) -> WholeBodyTable:
    """The dataset tools' policy on top of the reader: every annotation row is kept (crowd, unlabelled,
    invalid parts: the statistics decide), but every image needs ``file_name``, ``width`` and ``height``,
    every annotation the keypoint lists, the part boxes, the ``*_valid`` flags and ``bbox``, and every
    annotation's image must be listed. Keypoints move to the package's pixel convention."""
    path = Path(path)
    if not c.image_present.all():
        j = int(np.argmin(c.image_present.all(1)))
        raise _fail(path, f"image #{j} (id {int(c.image_ids[j])}) needs id, file_name, width and height")
    need = (["bbox"] + [spec.annotation_keys[p] for p in PARTS] + [spec.box_keys[p] for p in BOX_PARTS]
            + [spec.valid_keys[p] for p in WholeBodyColumns.FLAG_PARTS])
    for key in need:
        have = c.present_field(key, spec)
        if not have.all():
            i = int(np.argmin(have))
            raise _fail(path, f"{c.record_name(i)} has no field {key!r} (is this a COCO-WholeBody file?)")
    if (c.image_index < 0).any():
        i = int(np.argmax(c.image_index < 0))
        raise _fail(path, f"{c.record_name(i)} refers to image_id {int(c.image_id[i])}, which is not in 'images'")
    images = {int(c.image_ids[j]): ImageInfo(int(c.image_ids[j]), c.file_name(j), int(c.widths[j]), int(c.heights[j]))
              for j in range(c.num_images)}
    valid = {p: c.flag(p) for p in spec.valid_keys if p in WholeBodyColumns.FLAG_PARTS}
    kpts = keypoints_from_file(c.keypoints)  # COCO's pixel indices -> the package's pixel centres (geometry.py)
    return WholeBodyTable(path, images, c.ann_ids, c.image_id, c.iscrowd, c.bbox, kpts, c.part_boxes, valid,
                          c.part_box_usable(), spec)


def parse_wholebody(data: Mapping[str, Any], path: str | Path = "<memory>", spec: KeypointSpec = COCO_WHOLEBODY) -> WholeBodyTable:
    """Turn a loaded COCO-WholeBody dict into a :class:`WholeBodyTable` (no file access; ``data`` unchanged)."""
    return table_from_columns(read_columns(data, str(path), spec), path, spec)


def load_wholebody(path: str | Path, spec: KeypointSpec = COCO_WHOLEBODY) -> WholeBodyTable:
    """Read a COCO-WholeBody annotation file (``coco_wholebody_{train,val}_v1.0.json`` layout) with the one
    reader (:func:`wholebody.cocowb.read_wholebody`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    return table_from_columns(read_wholebody(path, spec), path, spec)
