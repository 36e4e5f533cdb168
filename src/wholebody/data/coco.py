"""COCO-WholeBody annotation files -> :class:`PersonRecord` lists, validated; detection-result files too.

A record is one person ready for top-down cropping: the 133x3 keypoint array in the
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
* anything malformed (bad JSON, missing fields, wrong array lengths, non-numeric or non-finite
  numbers, negative box sizes or visibilities, unknown image ids) raises :class:`AnnotationError`
  naming the file and the annotation.

Part boxes of invalid parts are zeros. A part flagged valid whose box has no area is made invalid
(counted, logged): it cannot be a RoI target.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson

from wholebody.geometry import keypoints_from_file, xywh_to_xyxy
from wholebody.images import relative_file_name
from wholebody.keypoints import BOX_PARTS, COCO_WHOLEBODY, KeypointSpec

log = logging.getLogger(__name__)

PERSON_CATEGORY = 1


class AnnotationError(ValueError):
    """A malformed annotation or detection file. The message names the file and the record."""

    def __init__(self, file: str | os.PathLike, problem: str, record: str | None = None):
        self.file = str(file)
        self.record = record
        self.problem = problem
        super().__init__(f"{self.file}: {record}: {problem}" if record else f"{self.file}: {problem}")


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


@dataclass
class AnnotationSet:
    """A loaded annotation file: its images, the usable person records and the load statistics."""

    ann_file: str
    image_dir: str
    images: dict[int, ImageInfo]
    records: list[PersonRecord]
    stats: LoadStats


# ----------------------------------------------------------------------------- JSON
def read_json(path: str | os.PathLike) -> object:
    """Parse a JSON file; :class:`AnnotationError` naming the file when it is missing or malformed.

    Standard JSON goes through orjson; a file with ``NaN``/``Infinity`` literals (not JSON, but what
    Python's ``json.dump`` writes) is parsed by the stdlib so that validation can name the record.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise AnnotationError(path, f"cannot read file: {e.strerror or e}") from e
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AnnotationError(path, f"malformed JSON: {e}") from None
    except RecursionError:
        raise AnnotationError(path, "not an annotation file (JSON nested too deeply)") from None


# ----------------------------------------------------------------------------- images
def _parse_images(data: Mapping, ann_file: str, image_dir: Path) -> dict[int, ImageInfo]:
    images = data.get("images")
    if not isinstance(images, list):
        raise AnnotationError(ann_file, "no 'images' list at the top level")
    out: dict[int, ImageInfo] = {}
    for i, im in enumerate(images):
        where = f"image entry #{i}" + (f" (id {im.get('id')})" if isinstance(im, dict) and "id" in im else "")
        if not isinstance(im, dict):
            raise AnnotationError(ann_file, "not a JSON object", where)
        missing = [k for k in ("id", "file_name", "width", "height") if k not in im]
        if missing:
            raise AnnotationError(ann_file, f"missing field(s) {missing}", where)
        bad = [k for k in ("id", "width", "height")
               if not (_is_int(im[k]) or k != "id" and isinstance(im[k], float) and im[k].is_integer())]
        if bad:
            raise AnnotationError(ann_file, "id, width and height must be integers, got "
                                  + ", ".join(f"{k} {im[k]!r}" for k in bad), where)
        iid, w, h = int(im["id"]), int(im["width"]), int(im["height"])
        if w <= 0 or h <= 0:
            raise AnnotationError(ann_file, f"image size {w}x{h} is not positive", where)
        if iid in out:
            raise AnnotationError(ann_file, "duplicate image id", where)
        try:
            name = relative_file_name(im["file_name"])
        except ValueError as e:
            raise AnnotationError(ann_file, str(e), where) from None
        out[iid] = ImageInfo(iid, name, w, h, str(image_dir / name))
    return out


# ----------------------------------------------------------------------------- annotations
def _is_int(v: object) -> bool:
    """A JSON integer (``true``/``false`` are not ids or counts)."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_flag(v: object) -> bool:
    """A JSON boolean, or the integers 0 / 1 some files use for one."""
    return isinstance(v, bool) or (_is_int(v) and v in (0, 1))


def _layout(spec: KeypointSpec) -> list[tuple[str, str, int]]:
    """(part, file key, number of floats) of each keypoint part, in keypoint order."""
    return [(p, spec.annotation_keys[p], 3 * spec.num_part(p)) for p in spec.parts]


def required_fields(spec: KeypointSpec = COCO_WHOLEBODY) -> tuple[str, ...]:
    """Fields a non-crowd person annotation must carry (segmentation is not needed)."""
    base = ("id", "image_id", "category_id", "bbox", "area", "iscrowd", "num_keypoints")
    kpts = tuple(spec.annotation_keys[p] for p in spec.parts)
    boxes = tuple(spec.box_keys[p] for p in BOX_PARTS)
    valid = tuple(spec.valid_keys[p] for p in spec.parts if p in spec.valid_keys)
    return base + kpts + boxes + valid


def _floats(ann: Mapping, keys: Sequence[str], ann_file: str, where: str) -> np.ndarray:
    """The numbers of ``keys`` (lists or scalars) concatenated; an error names the first bad field."""
    vals: list = []
    for k in keys:
        v = ann[k]
        if isinstance(v, list):
            vals.extend(v)
        else:
            vals.append(v)
    try:
        arr = np.array(vals)
    except (TypeError, ValueError):
        arr = np.array(vals, dtype=object)
    if arr.dtype.kind not in "fiu" or arr.ndim != 1:
        for k in keys:
            try:
                sub = np.array(ann[k])
            except (TypeError, ValueError):
                sub = np.array([None], dtype=object)
            if sub.dtype.kind not in "fiu" or sub.ndim > 1:
                raise AnnotationError(ann_file, f"'{k}' holds non-numeric values", where)
    return arr.astype(np.float64)


def load_coco_wholebody(
    ann_file: str | os.PathLike,
    image_dir: str | os.PathLike | None = None,
    *,
    spec: KeypointSpec = COCO_WHOLEBODY,
    min_box_size: float = 1.0,
) -> AnnotationSet:
    """Load and validate a COCO-WholeBody annotation file.

    Args:
        ann_file: the ``coco_wholebody_*.json`` file.
        image_dir: folder of the images (``file_name`` is relative to it); default: the file's folder.
        spec: the keypoint layout (fields and lengths come from it).
        min_box_size: person boxes narrower or lower than this (image px, after clipping) are dropped.
    Returns:
        an :class:`AnnotationSet`, records sorted by (image id, file order).
    Raises:
        AnnotationError: naming the file and the annotation id, for any malformed entry.
    """
    from pycocotools.coco import COCO  # indexing as the COCO tools do (images, anns per image)

    ann_file = str(ann_file)
    image_dir = Path(image_dir) if image_dir is not None else Path(ann_file).parent
    data = read_json(ann_file)
    if not isinstance(data, dict):
        raise AnnotationError(ann_file, "top level is not a JSON object")
    images = _parse_images(data, ann_file, image_dir)
    anns = data.get("annotations")
    if not isinstance(anns, list):
        raise AnnotationError(ann_file, "no 'annotations' list at the top level")
    ann_ids: set[int] = set()
    for i, a in enumerate(anns):
        if not isinstance(a, dict):
            raise AnnotationError(ann_file, "not a JSON object", f"annotation #{i}")
        for k in ("id", "image_id"):
            if k not in a:
                where = f"annotation id {a['id']}" if "id" in a else f"annotation #{i}"
                raise AnnotationError(ann_file, f"missing field(s) ['{k}']", where)
        if not _is_int(a["id"]):
            raise AnnotationError(ann_file, f"'id' must be an integer, got {a['id']!r}", f"annotation #{i}")
        where = f"annotation id {a['id']}"
        if a["id"] in ann_ids:
            raise AnnotationError(ann_file, "duplicate annotation id", where)
        ann_ids.add(a["id"])
        if not _is_int(a["image_id"]):
            raise AnnotationError(ann_file, f"'image_id' must be an integer, got {a['image_id']!r}", where)
        if a["image_id"] not in images:
            raise AnnotationError(ann_file, f"image_id {a['image_id']} is not in 'images'", where)
        if not _is_flag(a.get("iscrowd", 0)):
            raise AnnotationError(ann_file, f"'iscrowd' must be 0 or 1, got {a['iscrowd']!r}", where)

    coco = COCO()  # only its per-image index is used: categories stay out (crowd entries may lack one)
    coco.dataset = {"images": data["images"], "annotations": anns}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()

    stats = LoadStats(file=ann_file, annotations=len(anns), images=len(images))
    layout = _layout(spec)
    kpt_keys = [k for _, k, _ in layout]
    box_keys = ["bbox"] + [spec.box_keys[p] for p in BOX_PARTS]
    required = required_fields(spec)
    kept: list[tuple[dict, ImageInfo]] = []
    for iid in sorted(coco.imgs):
        for a in coco.imgToAnns.get(iid, []):
            where = f"annotation id {a['id']}"
            if a.get("iscrowd", 0):
                stats.crowd += 1
                continue
            missing = [k for k in required if k not in a]
            if missing:
                raise AnnotationError(ann_file, f"missing field(s) {missing}", where)
            if a["category_id"] != PERSON_CATEGORY:
                stats.other_category += 1
                continue
            if not _is_int(a["num_keypoints"]) or a["num_keypoints"] < 0:
                raise AnnotationError(ann_file, f"'num_keypoints' must be a count, got {a['num_keypoints']!r}", where)
            for p in spec.valid_keys:
                if not _is_flag(a[spec.valid_keys[p]]):
                    raise AnnotationError(
                        ann_file, f"'{spec.valid_keys[p]}' must be true/false, got {a[spec.valid_keys[p]]!r}", where
                    )
            for _, key, n in layout:
                if not isinstance(a[key], list) or len(a[key]) != n:
                    got = len(a[key]) if isinstance(a[key], list) else type(a[key]).__name__
                    raise AnnotationError(ann_file, f"'{key}' must hold {n} numbers ({n // 3} x 3), got {got}", where)
            for key in box_keys:
                if not isinstance(a[key], list) or len(a[key]) != 4:
                    raise AnnotationError(ann_file, f"'{key}' must be [x, y, w, h]", where)
            kept.append((a, images[iid]))

    n = len(kept)
    kpts = np.zeros((n, spec.num_keypoints * 3))
    boxes = np.zeros((n, 1 + len(BOX_PARTS), 4))
    area = np.zeros(n)
    for i, (a, _) in enumerate(kept):
        where = f"annotation id {a['id']}"
        kpts[i] = _floats(a, kpt_keys, ann_file, where)
        boxes[i] = _floats(a, box_keys, ann_file, where).reshape(-1, 4)
        area[i] = _floats(a, ["area"], ann_file, where)[0]
    kpts = kpts.reshape(n, spec.num_keypoints, 3)

    def fail(i: int, problem: str) -> None:
        raise AnnotationError(ann_file, problem, f"annotation id {kept[i][0]['id']}")

    bad = ~np.isfinite(kpts).all(axis=(1, 2))
    if bad.any():
        i = int(np.argmax(bad))
        k = int(np.argmax(~np.isfinite(kpts[i]).all(axis=1)))
        fail(i, f"non-finite value in '{spec.annotation_keys[spec.part_of(k)]}' (keypoint {spec.names[k]})")
    bad = ~np.isfinite(boxes).all(axis=(1, 2))
    if bad.any():
        i = int(np.argmax(bad))
        fail(i, f"non-finite value in '{box_keys[int(np.argmax(~np.isfinite(boxes[i]).all(axis=1)))]}'")
    if not np.isfinite(area).all():
        fail(int(np.argmax(~np.isfinite(area))), "non-finite 'area'")
    bad = (kpts[..., 2] < 0).any(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        fail(i, f"negative visibility for keypoint {spec.names[int(np.argmax(kpts[i, :, 2] < 0))]}")
    bad = (boxes[..., 2:] < 0).any(axis=(1, 2))
    if bad.any():
        i = int(np.argmax(bad))
        fail(i, f"'{box_keys[int(np.argmax((boxes[i, :, 2:] < 0).any(axis=1)))]}' has a negative width or height")
    if (area < 0).any():
        fail(int(np.argmax(area < 0)), "negative 'area'")

    records: list[PersonRecord] = []
    for i, (a, im) in enumerate(kept):
        kp = kpts[i]
        labelled = kp[:, 2] > 0
        if not labelled.any():
            stats.no_keypoints += 1
            continue
        kp[~labelled, :2] = 0.0
        kp = keypoints_from_file(kp)  # COCO's pixel indices -> the package's pixel centres (geometry.py)
        box = xywh_to_xyxy(boxes[i, 0])
        box = np.clip(box, 0.0, [im.width, im.height, im.width, im.height])
        if box[2] - box[0] < min_box_size or box[3] - box[1] < min_box_size:
            stats.small_box += 1
            continue
        part_boxes = np.zeros((len(BOX_PARTS), 4))
        part_valid = np.zeros(len(BOX_PARTS), dtype=bool)
        for j, p in enumerate(BOX_PARTS):
            if not a[spec.valid_keys[p]]:
                continue
            if boxes[i, 1 + j, 2] <= 0 or boxes[i, 1 + j, 3] <= 0:
                stats.degenerate_part_box += 1
                log.warning("%s: annotation id %s: %s is valid but has no area; treated as invalid",
                            ann_file, a["id"], spec.box_keys[p])
                continue
            part_boxes[j] = xywh_to_xyxy(boxes[i, 1 + j])
            part_valid[j] = True
        foot_flag = a[spec.valid_keys["foot"]] if "foot" in spec.valid_keys else False
        records.append(
            PersonRecord(
                image_id=im.id,
                ann_id=int(a["id"]),
                image_path=im.path,
                image_size=(im.width, im.height),
                bbox=box,
                keypoints=kp,
                part_boxes=part_boxes,
                part_valid=part_valid,
                foot_valid=bool(foot_flag),
                area=float(area[i]),
                num_keypoints=int(a["num_keypoints"]),
                score=1.0,
            )
        )
    stats.kept = len(records)
    log.info(stats.summary())
    return AnnotationSet(ann_file=ann_file, image_dir=str(image_dir), images=images, records=records, stats=stats)


# ----------------------------------------------------------------------------- detections
def load_detections(
    det_file: str | os.PathLike,
    images: Mapping[int, ImageInfo],
    *,
    score_thr: float = 0.0,
    category_id: int = PERSON_CATEGORY,
    min_box_size: float = 1.0,
    spec: KeypointSpec = COCO_WHOLEBODY,
) -> tuple[list[PersonRecord], LoadStats]:
    """Person boxes from a COCO ``bbox`` results file, for top-down evaluation with detected people.

    The file is a JSON list of ``{image_id, category_id, bbox: [x, y, w, h], score}``. Entries of
    other categories and below ``score_thr`` are dropped and counted; boxes are clipped to the image
    and dropped (counted) when smaller than ``min_box_size``.

    Args:
        det_file: the results file.
        images: the images of the matching annotation file (``AnnotationSet.images``).
    Returns:
        records (``ann_id`` -1, ``bbox_id`` the entry's index in the file, keypoints zeros, no valid
        parts, ``score`` the detector's) and stats.
    Raises:
        AnnotationError: naming the file and the entry, for malformed entries or unknown image ids.
    """
    det_file = str(det_file)
    dets = read_json(det_file)
    if not isinstance(dets, list):
        raise AnnotationError(det_file, "a detection results file must hold a JSON list")
    stats = LoadStats(file=det_file, annotations=len(dets), images=len(images))
    out: list[PersonRecord] = []
    for i, d in enumerate(dets):
        where = f"detection #{i}"
        if not isinstance(d, dict):
            raise AnnotationError(det_file, "not a JSON object", where)
        missing = [k for k in ("image_id", "category_id", "bbox", "score") if k not in d]
        if missing:
            raise AnnotationError(det_file, f"missing field(s) {missing}", where)
        where += f" (image_id {d['image_id']})"
        im = images.get(d["image_id"])
        if im is None:
            raise AnnotationError(det_file, f"image_id {d['image_id']} is not in the annotation file's images", where)
        try:
            box = np.asarray(d["bbox"], dtype=np.float64)
            score = float(d["score"])
        except (TypeError, ValueError):
            raise AnnotationError(det_file, "'bbox' and 'score' must be numbers", where) from None
        if box.shape != (4,):
            raise AnnotationError(det_file, "'bbox' must be [x, y, w, h]", where)
        if not (np.isfinite(box).all() and np.isfinite(score)):
            raise AnnotationError(det_file, "non-finite 'bbox' or 'score'", where)
        if (box[2:] < 0).any():
            raise AnnotationError(det_file, "'bbox' has a negative width or height", where)
        if d["category_id"] != category_id:
            stats.other_category += 1
            continue
        if score < score_thr:
            stats.low_score += 1
            continue
        xyxy = np.clip(xywh_to_xyxy(box), 0.0, [im.width, im.height, im.width, im.height])
        w, h = xyxy[2] - xyxy[0], xyxy[3] - xyxy[1]
        if w < min_box_size or h < min_box_size:
            stats.small_box += 1
            continue
        out.append(
            PersonRecord(
                image_id=im.id,
                ann_id=-1,
                image_path=im.path,
                image_size=(im.width, im.height),
                bbox=xyxy,
                keypoints=np.zeros((spec.num_keypoints, 3)),
                part_boxes=np.zeros((len(BOX_PARTS), 4)),
                part_valid=np.zeros(len(BOX_PARTS), dtype=bool),
                area=float(w * h),
                score=score,
                bbox_id=i,
            )
        )
    stats.kept = len(out)
    log.info(stats.summary())
    return out, stats
