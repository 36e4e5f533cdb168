"""Where person boxes come from in ``wholebody-predict`` (``boxes=``):

* ``detector``: the person detector (:class:`~wholebody.inference.detector.PersonDetector`); rows carry
  ``bbox_id``, the index of the box in the ``detections.json`` the run writes beside the results;
* ``full``: each image (frame) is one person; ``bbox_id`` likewise;
* a COCO detection results file (a JSON list of ``{image_id, category_id, bbox: [x, y, w, h], score}``):
  persons (category 1) scoring at least ``det_score_thr``; rows carry ``bbox_id``, the index of the
  entry in that file;
* a COCO-WholeBody annotation file (a JSON object with ``images`` and ``annotations``): its ground-truth
  person boxes, as validation uses them (crowd and unlabelled persons dropped, boxes clipped);
  rows carry ``ann_id``. Its ``images`` also give the image ids.

Every box is clipped to its image; boxes with less than ``min_box_size`` px left either way are
dropped and counted, as the data loaders do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wholebody.cocowb import PERSON_CATEGORY, AnnotationError, json_id, read_json
from wholebody.cocowb import read_detections as read_detection_file
from wholebody.data.coco import ImageInfo, load_coco_wholebody
from wholebody.geometry import xywh_to_xyxy
from wholebody.images import relative_file_name


@dataclass
class PersonBoxes:
    """The persons of one image: (N, 4) xyxy image px, (N,) scores, (N,) person keys and their field."""

    boxes: np.ndarray
    scores: np.ndarray
    ids: np.ndarray
    id_field: str  # "ann_id" | "bbox_id"

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def clipped(self, width: int, height: int, min_box_size: float = 1.0) -> tuple[PersonBoxes, int]:
        """Boxes clipped to the image; those smaller than ``min_box_size`` dropped (returns their count)."""
        b = np.clip(self.boxes.reshape(-1, 4), 0.0, [width, height, width, height])
        bw, bh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        keep = (bw >= min_box_size) & (bh >= min_box_size) & (bw > 0) & (bh > 0)
        return PersonBoxes(b[keep], self.scores[keep], self.ids[keep], self.id_field), int((~keep).sum())


def _empty(id_field: str) -> PersonBoxes:
    return PersonBoxes(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64), id_field)


@dataclass
class BoxFile:
    """Person boxes read from a file, per image id.

    Attributes:
        path: the file; kind: ``"detections"`` or ``"annotations"``.
        images: the annotation file's images (id -> ImageInfo), ``None`` for detections.
        dropped: what was left out while reading (category, low score), counted.
    """

    path: Path
    kind: str
    by_image: dict[int, PersonBoxes]
    images: dict[int, ImageInfo] | None = None
    dropped: dict[str, int] = field(default_factory=dict)

    def for_image(self, image_id: int) -> PersonBoxes:
        return self.by_image.get(int(image_id), _empty("ann_id" if self.kind == "annotations" else "bbox_id"))

    @property
    def num_boxes(self) -> int:
        return sum(len(b) for b in self.by_image.values())


def read_detections(path: str | Path, score_thr: float = 0.0) -> BoxFile:
    """A COCO detection results file (read by :func:`wholebody.cocowb.read_detections`): persons scoring
    >= ``score_thr``, keyed by their index in the file.

    Raises:
        AnnotationError: naming the file and the entry (``detection #i (image_id ...)``) for a malformed entry.
    """
    path = Path(path)
    d = read_detection_file(path)
    person = d.category_id == PERSON_CATEGORY
    high = d.score >= score_thr
    dropped = {"not category 1 (person)": int((~person).sum()), f"score below {score_thr}": int((person & ~high).sum())}
    sel = np.flatnonzero(person & high)
    by_image = _group(d.image_id[sel], xywh_to_xyxy(d.bbox[sel]), d.score[sel], sel.astype(np.int64), "bbox_id")
    return BoxFile(path, "detections", by_image, None, {k: v for k, v in dropped.items() if v})


def _group(image_id: np.ndarray, boxes: np.ndarray, scores: np.ndarray, ids: np.ndarray, id_field: str
           ) -> dict[int, PersonBoxes]:
    """Persons per image id, in their given order within each image."""
    order = np.argsort(image_id, kind="stable")
    uniq, starts = np.unique(image_id[order], return_index=True)
    ends = np.append(starts[1:], len(order))
    return {int(u): PersonBoxes(boxes[order[a:b]].reshape(-1, 4), scores[order[a:b]], ids[order[a:b]], id_field)
            for u, a, b in zip(uniq, starts, ends)}


def read_annotation_boxes(path: str | Path) -> BoxFile:
    """The ground-truth person boxes of a COCO-WholeBody annotation file (as validation uses them)."""
    path = Path(path)
    ann = load_coco_wholebody(path)
    p = ann.persons
    by_image = _group(p.image_id, p.bbox, p.score, p.ann_id, "ann_id")
    s = ann.stats
    dropped = {"crowd": s.crowd, "without labelled keypoints": s.no_keypoints, "box < 1 px": s.small_box,
               "not category 1 (person)": s.other_category}
    return BoxFile(path, "annotations", by_image, ann.images, {k: v for k, v in dropped.items() if v})


def read_box_file(path: str | Path, score_thr: float = 0.0) -> BoxFile:
    """Detections (a JSON list) or a COCO-WholeBody annotation file (a JSON object), told apart by content."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"boxes={path}: no such file (or use boxes=detector / boxes=full)")
    head = path.open("rb").read(4096).lstrip()
    if head.startswith(b"["):
        return read_detections(path, score_thr)
    if head.startswith(b"{"):
        return read_annotation_boxes(path)
    raise AnnotationError(path, "neither a detection results list nor a COCO-WholeBody annotation object")


def read_image_list(path: str | Path) -> dict[int, ImageInfo]:
    """The ``images`` of a COCO-style file (``ann=``): id -> ImageInfo (file_name, width, height)."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise AnnotationError(path, "no 'images' list at the top level (ann= takes a COCO-style annotation file)")
    out: dict[int, ImageInfo] = {}
    for i, im in enumerate(data["images"]):
        where = f"image entry #{i}"
        if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
            raise AnnotationError(path, "needs 'id' and 'file_name'", where)
        iid = json_id(im["id"])
        if iid is None:
            raise AnnotationError(path, f"'id' must be an integer, got {im['id']!r}", where)
        try:
            name = relative_file_name(im["file_name"])
        except ValueError as e:
            raise AnnotationError(path, str(e), where) from None
        size = [json_id(im.get(k) or 0) for k in ("width", "height")]
        if None in size or not all(0 <= v < 2**31 for v in size):
            raise AnnotationError(path, f"'width' and 'height' must be integers in [0, 2^31), got {im.get('width')!r} x "
                                        f"{im.get('height')!r}", where)
        out[iid] = ImageInfo(iid, name, size[0], size[1], name)
    return out
