"""COCO-WholeBody annotation files -> the persons training and validation crop, as a :class:`PersonTable`;
detection-result files too. Files are read by the one reader (:mod:`wholebody.cocowb`), through the column
cache (:mod:`wholebody.column_cache`) when a cache folder is given; this module applies the training
data's policy on top.

A person (a row of the table, or a :class:`PersonRecord`) is ready for top-down cropping: the 133x3 keypoint array in the
:data:`~wholebody.keypoints.COCO_WHOLEBODY` order (image px in the package's convention: the file's
pixel indices + 0.5, see :mod:`wholebody.geometry`; the file's visibility values), the person
box and the three part boxes (face, left hand, right hand) as ``xyxy`` image px, and part validity.

What is kept, dropped and refused (see ``docs/data.md``):

* crowd annotations (``iscrowd=1``) and persons with no labelled keypoint among all 133 are dropped and
  counted (COCO practice: they carry no keypoint target). ``num_keypoints`` in COCO-WholeBody counts
  the 17 body keypoints only, so it is not used for this test: a person with hands but no body
  keypoints is kept;
* person boxes are clipped to the image; boxes narrower or lower than ``min_box_size`` px after
  clipping (zero-size boxes included) are dropped and counted;
* anything malformed (bad JSON, wrong array lengths, non-numeric or non-finite numbers, negative box
  sizes or visibilities: the reader's rules) raises :class:`AnnotationError` naming the file and the
  annotation; so do a non-crowd person missing a field of :meth:`WholeBodyColumns.fields_of`, an annotation whose
  image is not listed, and an image a kept person needs without ``file_name``, ``width`` or ``height``.

Part boxes of invalid parts are zeros. A part flagged valid whose box has no area is made invalid
(counted, logged once with an example): it cannot be a RoI target (the reader's shared part-box rule,
:meth:`~wholebody.cocowb.WholeBodyColumns.part_box_usable`).

Nothing per person is a Python object: the table's columns are numpy arrays (the keypoints a view of
the mapped cache, converted per person when a sample is built), so forked DataLoader workers share them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path

import numpy as np

from wholebody.cocowb import (
    PERSON_CATEGORY,
    AnnotationError,
    WholeBodyColumns,
    read_detections,
    read_json,
    read_wholebody,
)
from wholebody.geometry import keypoints_from_file, xywh_to_xyxy
from wholebody.keypoints import BOX_PARTS, COCO_WHOLEBODY, KeypointSpec

log = logging.getLogger(__name__)

__all__ = ["PERSON_CATEGORY", "AnnotationError", "AnnotationSet", "ImageInfo", "LoadStats", "PersonRecord",
           "PersonTable", "WholeBodyColumns", "load_coco_wholebody", "load_detections", "read_json"]


@dataclass(frozen=True)
class ImageInfo:
    """One ``images`` entry: id, file name, size (w, h) from the file, and its path on disk."""

    id: int
    file_name: str
    width: int
    height: int
    path: str


@dataclass(frozen=True, eq=False)
class PersonRecord:
    """One person of one image (a GT annotation or a detection).

    Attributes:
        image_id, ann_id: COCO ids (``ann_id`` is -1 for detected persons).
        image_path: path of the image file.
        image_size: (w, h) of the image as the annotation file states it.
        bbox: (4,) float64 person box, xyxy image px, clipped to the image.
        keypoints: (133, 3) float64, image px + the file's visibility (> 0 means labelled); zeros for
            detections.
        part_boxes: (3, 4) float64 xyxy image px of face, left hand, right hand (``BOX_PARTS`` order);
            zeros where invalid.
        part_valid: (3,) bool.
        foot_valid: the file's ``foot_valid``.
        area: the annotation's ``area`` (segment area; for detections the clipped box area).
        num_keypoints: the file's ``num_keypoints`` (body keypoints only, in COCO-WholeBody).
        score: 1.0 for GT boxes, the detector's score otherwise.
        bbox_id: for detections, the index of the box in its detection file (-1 for GT persons); with
            ``image_id`` it identifies the person in results rows.
    """

    image_id: int
    ann_id: int
    image_path: str
    image_size: tuple[int, int]
    bbox: np.ndarray
    keypoints: np.ndarray
    part_boxes: np.ndarray
    part_valid: np.ndarray
    foot_valid: bool = False
    area: float = 0.0
    num_keypoints: int = 0
    score: float = 1.0
    bbox_id: int = -1


@dataclass
class LoadStats:
    """What a load kept and dropped (every skip is counted here and logged)."""

    file: str
    annotations: int = 0
    kept: int = 0
    crowd: int = 0
    no_keypoints: int = 0
    small_box: int = 0
    other_category: int = 0
    low_score: int = 0
    degenerate_part_box: int = 0
    images: int = 0
    extra: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        dropped = {
            "crowd": self.crowd,
            "without labelled keypoints": self.no_keypoints,
            "box < min size after clipping": self.small_box,
            "not category 1 (person)": self.other_category,
            "score below threshold": self.low_score,
        }
        dropped.update(self.extra)
        parts = ", ".join(f"{n} {why}" for why, n in dropped.items() if n)
        msg = f"{self.file}: kept {self.kept} of {self.annotations} persons on {self.images} images"
        msg += f" (dropped {parts})" if parts else ""
        if self.degenerate_part_box:
            msg += f"; {self.degenerate_part_box} valid part boxes without area made invalid"
        return msg


@dataclass(frozen=True, eq=False)
class PersonTable:
    """Persons ready for top-down cropping, as columns (P persons); what :class:`TopDownDataset` reads.

    Attributes:
        image_dir: folder of the images; ``file_names[image_index[i]]`` is person i's image inside it.
        file_names: (I,) bytes, UTF-8 file names of the images the persons index.
        image_index: (P,) int64 into ``file_names``.
        image_id, ann_id, bbox_id: (P,) int64 (``ann_id`` -1 for detections, ``bbox_id`` -1 for GT persons).
        image_size: (P, 2) int64 (w, h) as the annotation file states it.
        bbox: (P, 4) float64 xyxy image px, clipped to the image.
        part_boxes: (P, 3, 4) float64 xyxy image px (``BOX_PARTS`` order), zeros where invalid.
        part_valid: (P, 3) bool.
        foot_valid: (P,) bool; area, score: (P,) float64; num_keypoints: (P,) int64.
        keypoint_source: (M, K, 3) float64 keypoints, or the file's :class:`WholeBodyColumns` (whose
            ``keypoints`` are then the source: mapped from the cache, they pickle as their file's path, so a
            spawned worker maps the file instead of receiving a copy), and keypoint_rows: (P,) int64 the row
            of each person in it (-1: no keypoints, a detection). Columns hold the file's pixel indices,
            converted per person by :meth:`keypoints`; an array is in the package's convention already.
    """

    image_dir: str
    file_names: np.ndarray
    image_index: np.ndarray
    image_id: np.ndarray
    ann_id: np.ndarray
    bbox_id: np.ndarray
    image_size: np.ndarray
    bbox: np.ndarray
    part_boxes: np.ndarray
    part_valid: np.ndarray
    foot_valid: np.ndarray
    area: np.ndarray
    score: np.ndarray
    num_keypoints: np.ndarray
    keypoint_source: np.ndarray | WholeBodyColumns
    keypoint_rows: np.ndarray

    def __len__(self) -> int:
        return int(self.image_id.shape[0])

    def path(self, i: int) -> str:
        """Path of person ``i``'s image."""
        return os.path.join(self.image_dir, bytes(self.file_names[self.image_index[i]]).decode("utf-8"))

    def keypoints(self, i: int) -> np.ndarray:
        """(K, 3) float64 keypoints of person ``i``: image px in the package's convention + visibility;
        unlabelled points (0, 0, 0); zeros for detections."""
        src = self.keypoint_source
        in_file = isinstance(src, WholeBodyColumns)
        src = src.keypoints if in_file else src
        row = int(self.keypoint_rows[i])
        if row < 0:
            return np.zeros(src.shape[1:], np.float64)
        if not in_file:
            return np.array(src[row], dtype=np.float64)
        kp = keypoints_from_file(src[row])  # a float64 copy; COCO's pixel indices -> pixel centres (geometry.py)
        kp[kp[:, 2] <= 0] = 0.0
        return kp

    def take(self, index: np.ndarray) -> PersonTable:
        """The persons ``index`` selects (an index array or a boolean mask), sharing the keypoint source."""
        return replace(self, **{f.name: getattr(self, f.name)[index] for f in fields(self)
                                if f.name not in _SHARED_FIELDS})

    def unique_paths(self) -> tuple[np.ndarray, list[str]]:
        """(used image indices, their paths): each image once."""
        used = np.unique(self.image_index)
        return used, [os.path.join(self.image_dir, bytes(self.file_names[j]).decode("utf-8")) for j in used]

    def record(self, i: int) -> PersonRecord:
        """Person ``i`` as a :class:`PersonRecord` (for small sets, tests and tools)."""
        return PersonRecord(
            image_id=int(self.image_id[i]), ann_id=int(self.ann_id[i]), image_path=self.path(i),
            image_size=(int(self.image_size[i, 0]), int(self.image_size[i, 1])), bbox=self.bbox[i].copy(),
            keypoints=self.keypoints(i), part_boxes=self.part_boxes[i].copy(), part_valid=self.part_valid[i].copy(),
            foot_valid=bool(self.foot_valid[i]), area=float(self.area[i]), num_keypoints=int(self.num_keypoints[i]),
            score=float(self.score[i]), bbox_id=int(self.bbox_id[i]),
        )

    def records(self) -> list[PersonRecord]:
        """Every person as a :class:`PersonRecord` (built on each call; for small sets, tests and tools)."""
        return [self.record(i) for i in range(len(self))]

    @classmethod
    def from_records(cls, records: Sequence[PersonRecord], num_keypoints: int = COCO_WHOLEBODY.num_keypoints
                     ) -> PersonTable:
        """A table of hand-built records (keypoints already in the package's convention)."""
        n = len(records)
        paths = sorted({r.image_path for r in records})
        where = {p: j for j, p in enumerate(paths)}
        return cls(
            image_dir="",
            file_names=np.array([os.fsencode(p) for p in paths], dtype=np.bytes_) if paths else np.zeros(0, "S1"),
            image_index=np.array([where[r.image_path] for r in records], np.int64),
            image_id=np.array([r.image_id for r in records], np.int64),
            ann_id=np.array([r.ann_id for r in records], np.int64),
            bbox_id=np.array([r.bbox_id for r in records], np.int64),
            image_size=np.array([r.image_size for r in records], np.int64).reshape(n, 2),
            bbox=np.array([r.bbox for r in records], np.float64).reshape(n, 4),
            part_boxes=np.array([r.part_boxes for r in records], np.float64).reshape(n, len(BOX_PARTS), 4),
            part_valid=np.array([r.part_valid for r in records], bool).reshape(n, len(BOX_PARTS)),
            foot_valid=np.array([r.foot_valid for r in records], bool),
            area=np.array([r.area for r in records], np.float64),
            score=np.array([r.score for r in records], np.float64),
            num_keypoints=np.array([r.num_keypoints for r in records], np.int64),
            keypoint_source=np.array([r.keypoints for r in records], np.float64).reshape(n, num_keypoints, 3),
            keypoint_rows=np.arange(n, dtype=np.int64),
        )


#: The :class:`PersonTable` fields that are not per person (:meth:`PersonTable.take` shares them).
_SHARED_FIELDS = frozenset({"image_dir", "file_names", "keypoint_source"})


@dataclass(eq=False)
class AnnotationSet:
    """A loaded annotation file: its columns, the usable persons (:attr:`persons`) and the load statistics.

    :attr:`images` and :attr:`records` build Python objects on first use (for tools and small files);
    the training path never asks for them.
    """

    ann_file: str
    image_dir: str
    columns: WholeBodyColumns
    persons: PersonTable
    stats: LoadStats

    @cached_property
    def images(self) -> dict[int, ImageInfo]:
        c = self.columns
        return {int(c.image_ids[j]): ImageInfo(int(c.image_ids[j]), c.file_name(j), int(c.widths[j]),
                                               int(c.heights[j]), os.path.join(self.image_dir, c.file_name(j)))
                for j in range(c.num_images)}

    @cached_property
    def records(self) -> list[PersonRecord]:
        return self.persons.records()


def _columns(ann_file: str, cache_dir: str | os.PathLike | None, spec: KeypointSpec) -> WholeBodyColumns:
    if cache_dir is None:
        return read_wholebody(ann_file, spec)
    from wholebody.column_cache import cached_columns

    return cached_columns(ann_file, cache_dir, spec)


def load_coco_wholebody(
    ann_file: str | os.PathLike,
    image_dir: str | os.PathLike | None = None,
    *,
    spec: KeypointSpec = COCO_WHOLEBODY,
    min_box_size: float = 1.0,
    cache_dir: str | os.PathLike | None = None,
    columns: WholeBodyColumns | None = None,
) -> AnnotationSet:
    """Load and validate a COCO-WholeBody annotation file for top-down training or validation.

    Args:
        ann_file: the ``coco_wholebody_*.json`` file.
        image_dir: folder of the images (``file_name`` is relative to it); default: the file's folder.
        spec: the keypoint layout (fields and lengths come from it).
        min_box_size: person boxes narrower or lower than this (image px, after clipping) are dropped.
        cache_dir: map the file's columns from this column-cache folder (built on first use); None: parse
            the file in memory.
        columns: the file's columns, already read (``ann_file`` then only names it).
    Returns:
        an :class:`AnnotationSet`, persons sorted by (image id, file order).
    Raises:
        AnnotationError: naming the file and the annotation id, for any malformed entry.
    """
    ann_file = str(ann_file)
    image_dir = Path(image_dir) if image_dir is not None else Path(ann_file).parent
    c = columns if columns is not None else _columns(ann_file, cache_dir, spec)
    stats = LoadStats(file=ann_file, annotations=c.num_annotations, images=c.num_images)

    def fail(i: int, problem: str) -> None:
        raise AnnotationError(ann_file, problem, f"annotation id {int(c.ann_ids[i])}")

    if (c.image_index < 0).any():
        i = int(np.argmax(c.image_index < 0))
        fail(i, f"image_id {int(c.image_id[i])} is not in 'images'")
    crowd = c.iscrowd
    stats.crowd = int(crowd.sum())
    fields = WholeBodyColumns.fields_of(spec)
    lacking = ~crowd[:, None] & ~c.present
    if lacking.any():
        i = int(np.argmax(lacking.any(1)))
        fail(i, f"missing field(s) {[f for f, m in zip(fields, lacking[i]) if m]}")
    person = ~crowd & (c.category_id == PERSON_CATEGORY)
    stats.other_category = int((~crowd & ~person).sum())
    has_kpts = c.labelled.sum(1) > 0
    stats.no_keypoints = int((person & ~has_kpts).sum())
    cand = person & has_kpts

    ii = c.image_index
    need = np.unique(ii[cand])
    lacks = ~c.image_present[need].all(1)
    if lacks.any():
        j = int(need[np.argmax(lacks)])
        what = [k for k, m in zip(("file_name", "width", "height"), c.image_present[j]) if not m]
        raise AnnotationError(ann_file, f"missing field(s) {what}", f"image entry #{j} (id {int(c.image_ids[j])})")
    box, small = _clip(c.bbox, c.widths[ii], c.heights[ii], min_box_size)
    stats.small_box = int((cand & small).sum())
    keep = cand & ~small

    usable = c.part_box_usable()
    degenerate = c.degenerate_part_boxes() & keep[:, None]
    stats.degenerate_part_box = int(degenerate.sum())
    if stats.degenerate_part_box:
        i, j = (int(v) for v in np.argwhere(degenerate)[0])
        log.warning("%s: %d part boxes are flagged valid but have no area; treated as invalid (e.g. annotation "
                    "id %d, %s)", ann_file, stats.degenerate_part_box, int(c.ann_ids[i]), spec.box_keys[BOX_PARTS[j]])

    sel = np.flatnonzero(keep)
    sel = sel[np.argsort(c.image_id[sel], kind="stable")]
    part_boxes = xywh_to_xyxy(c.part_boxes[sel])
    part_valid = usable[sel]
    part_boxes[~part_valid] = 0.0
    persons = PersonTable(
        image_dir=str(image_dir),
        file_names=c.file_names,
        image_index=ii[sel],
        image_id=c.image_id[sel],
        ann_id=c.ann_ids[sel],
        bbox_id=np.full(len(sel), -1, np.int64),
        image_size=_image_sizes(c.widths, c.heights, ii[sel]),
        bbox=box[sel],
        part_boxes=part_boxes,
        part_valid=part_valid,
        foot_valid=c.flag("foot")[sel],
        area=c.area[sel],
        score=np.ones(len(sel)),
        num_keypoints=c.num_keypoints[sel],
        keypoint_source=c,
        keypoint_rows=sel.astype(np.int64),
    )
    stats.kept = len(persons)
    log.info(stats.summary())
    return AnnotationSet(ann_file=ann_file, image_dir=str(image_dir), columns=c, persons=persons, stats=stats)


def _clip(xywh: np.ndarray, w: np.ndarray, h: np.ndarray, min_box_size: float) -> tuple[np.ndarray, np.ndarray]:
    """(N, 4) xywh boxes -> (xyxy clipped to their images' (N,) width and height, (N,) bool: narrower or lower
    than ``min_box_size`` after clipping)."""
    w, h = w.astype(np.float64), h.astype(np.float64)
    xyxy = np.clip(xywh_to_xyxy(xywh), 0.0, np.stack([w, h, w, h], axis=1).reshape(-1, 4))
    return xyxy, (xyxy[:, 2] - xyxy[:, 0] < min_box_size) | (xyxy[:, 3] - xyxy[:, 1] < min_box_size)


def _image_sizes(widths: np.ndarray, heights: np.ndarray, index: np.ndarray) -> np.ndarray:
    """(P, 2) (w, h) of the images ``index`` selects."""
    return np.stack([widths[index], heights[index]], axis=1).reshape(len(index), 2)


# ----------------------------------------------------------------------------- detections
def load_detections(
    det_file: str | os.PathLike,
    images: AnnotationSet | Mapping[int, ImageInfo],
    *,
    score_thr: float = 0.0,
    category_id: int = PERSON_CATEGORY,
    min_box_size: float = 1.0,
    spec: KeypointSpec = COCO_WHOLEBODY,
) -> tuple[PersonTable, LoadStats]:
    """Person boxes from a COCO ``bbox`` results file, for top-down evaluation with detected people.

    The file is read by :func:`wholebody.cocowb.read_detections`. Entries of other categories and below
    ``score_thr`` are dropped and counted; boxes are clipped to the image and dropped (counted) when
    smaller than ``min_box_size``.

    Args:
        det_file: the results file.
        images: the matching annotation file (its :class:`AnnotationSet`), or its images by id.
    Returns:
        persons sorted by image id (``ann_id`` -1, ``bbox_id`` the entry's index in the file, no keypoints,
        no valid parts, ``score`` the detector's) and stats.
    Raises:
        AnnotationError: naming the file and the entry, for malformed entries or unknown image ids.
    """
    det_file = str(det_file)
    if isinstance(images, AnnotationSet):
        image_dir, ids, widths, heights, names = (images.image_dir, images.columns.image_ids, images.columns.widths,
                                                  images.columns.heights, images.columns.file_names)
    else:  # id -> ImageInfo
        infos = list(images.values())
        image_dir = ""
        ids = np.array([im.id for im in infos], np.int64)
        widths, heights = np.array([im.width for im in infos], np.int64), np.array([im.height for im in infos], np.int64)
        names = np.array([os.fsencode(im.path) for im in infos], np.bytes_) if infos else np.zeros(0, "S1")
    d = read_detections(det_file)
    stats = LoadStats(file=det_file, annotations=len(d), images=len(ids))
    order = np.argsort(ids, kind="stable")
    pos = np.minimum(np.searchsorted(ids[order], d.image_id), max(len(ids) - 1, 0))
    found = ids[order][pos] == d.image_id if len(ids) else np.zeros(len(d), bool)
    if not found.all():
        i = int(np.argmin(found))
        raise AnnotationError(det_file, f"image_id {int(d.image_id[i])} is not in the annotation file's images",
                              f"detection #{i} (image_id {int(d.image_id[i])})")
    ii = order[pos] if len(ids) else np.zeros(0, np.int64)
    other = d.category_id != category_id
    low = ~other & (d.score < score_thr)
    stats.other_category, stats.low_score = int(other.sum()), int(low.sum())
    xyxy, small = _clip(d.bbox, widths[ii], heights[ii], min_box_size)
    small &= ~other & ~low
    stats.small_box = int(small.sum())
    sel = np.flatnonzero(~(other | low | small))
    sel = sel[np.argsort(d.image_id[sel], kind="stable")]  # by image: the boxes of one image share a decode
    n = len(sel)
    persons = PersonTable(
        image_dir=image_dir, file_names=names, image_index=ii[sel].astype(np.int64),
        image_id=d.image_id[sel], ann_id=np.full(n, -1, np.int64), bbox_id=sel.astype(np.int64),
        image_size=_image_sizes(widths, heights, ii[sel]),
        bbox=xyxy[sel], part_boxes=np.zeros((n, len(BOX_PARTS), 4)), part_valid=np.zeros((n, len(BOX_PARTS)), bool),
        foot_valid=np.zeros(n, bool), area=(xyxy[sel, 2] - xyxy[sel, 0]) * (xyxy[sel, 3] - xyxy[sel, 1]),
        score=d.score[sel], num_keypoints=np.zeros(n, np.int64),
        keypoint_source=np.zeros((1, spec.num_keypoints, 3)), keypoint_rows=np.full(n, -1, np.int64),
    )
    stats.kept = n
    log.info(stats.summary())
    return persons, stats
