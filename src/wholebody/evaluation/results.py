"""Result rows (COCO-WholeBody results format) as arrays, checked against a ground truth.

Coordinates are image pixels; keypoints in the 133-order of the KeypointSpec; boxes xywh.
Nothing the caller passes in is modified or kept.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..cocowb import (
    _JSON_SPACE,
    _array_elements,
    _batches_tile,
    _orjson_out_of_memory,
    gc_paused,
    out_of_memory,
    read_json,
    room_to_parse,
)
from ..keypoints import BOX_PARTS, COCO_WHOLEBODY, EVAL_PARTS, PARTS, KeypointSpec
from .groundtruth import GroundTruth
from .io import (
    EvalInputError,
    _Ctx,
    _ids,
    _keypoint_widths,
    _keypoints,
    _locate,
    _locate_in,
    _numbers,
    scalar_numbers,
)


@dataclass(frozen=True, eq=False)
class Detections:
    """Result rows as arrays (N rows), checked against a :class:`GroundTruth`.

    Attributes:
        image_index: (N,) int64 index into ``GroundTruth.image_ids``.
        category_index: (N,) int64 index into ``GroundTruth.category_ids``; -1 for a category the
            ground truth does not have (such rows take part in nothing, as in the reference).
        keypoints: (N, K, 3) float64 x, y in image px and the keypoint score.
        scores: part -> (N,) float64 ranking score for each of ``EVAL_PARTS``: the row's part score
            key (``foot_score``, ..., ``wholebody_score``) where present, else ``score``.
        area: (N,) float64 the area used for the medium/large split: the extent of the 17 body
            keypoints ``(max x - min x) * (max y - min y)`` over all of them, whatever their score;
            ``bbox[2] * bbox[3]`` instead when the first row carries a non-empty ``bbox`` (the
            reference's rule).
        boxes: (N, len(BOX_PARTS), 4) float64 predicted part boxes, xywh image px.
        box_present: (N, len(BOX_PARTS)) bool.
        box_scores: (N, len(BOX_PARTS)) float64: ``<part>_box_score``, else the part score, else ``score``.
    """

    image_index: np.ndarray
    category_index: np.ndarray
    keypoints: np.ndarray
    scores: dict[str, np.ndarray]
    area: np.ndarray
    boxes: np.ndarray
    box_present: np.ndarray
    box_scores: np.ndarray

    def __len__(self) -> int:
        return len(self.image_index)

    @staticmethod
    def empty(spec: KeypointSpec = COCO_WHOLEBODY) -> Detections:
        z = np.zeros(0)
        return Detections(
            image_index=np.zeros(0, np.int64),
            category_index=np.zeros(0, np.int64),
            keypoints=np.zeros((0, spec.num_keypoints, 3)),
            scores={p: z for p in EVAL_PARTS},
            area=z,
            boxes=np.zeros((0, len(BOX_PARTS), 4)),
            box_present=np.zeros((0, len(BOX_PARTS)), bool),
            box_scores=np.zeros((0, len(BOX_PARTS))),
        )

    @staticmethod
    def concat(items: Sequence[Detections], spec: KeypointSpec = COCO_WHOLEBODY) -> Detections:
        items = [d for d in items if len(d)]
        if not items:
            return Detections.empty(spec)
        if len(items) == 1:
            return items[0]
        cat = lambda name: np.concatenate([getattr(d, name) for d in items])  # noqa: E731
        return Detections(
            image_index=cat("image_index"),
            category_index=cat("category_index"),
            keypoints=cat("keypoints"),
            scores={p: np.concatenate([d.scores[p] for d in items]) for p in EVAL_PARTS},
            area=cat("area"),
            boxes=cat("boxes"),
            box_present=cat("box_present"),
            box_scores=cat("box_scores"),
        )

    def subset(self, index: np.ndarray) -> Detections:
        """Rows ``index`` (an int or bool array), in that order."""
        return Detections(
            image_index=self.image_index[index],
            category_index=self.category_index[index],
            keypoints=self.keypoints[index],
            scores={p: s[index] for p, s in self.scores.items()},
            area=self.area[index],
            boxes=self.boxes[index],
            box_present=self.box_present[index],
            box_scores=self.box_scores[index],
        )


_NO_CATEGORY = np.iinfo(np.int64).min  # a row without category_id


@dataclass(frozen=True, eq=False)
class ResultRows:
    """Result rows as arrays, checked on their own but not yet against a ground truth (N rows).

    ``image_id`` / ``category_id`` are the rows' own ids (``category_id`` is ``_NO_CATEGORY``
    where absent); the other fields are those of :class:`Detections`.
    """

    source: str
    offset: int
    image_id: np.ndarray
    category_id: np.ndarray
    keypoints: np.ndarray
    scores: dict[str, np.ndarray]
    area: np.ndarray
    boxes: np.ndarray
    box_present: np.ndarray
    box_scores: np.ndarray


@gc_paused()
def read_rows(
    rows: Any,
    *,
    source: str = "<results>",
    offset: int = 0,
    parts: Sequence[str] = EVAL_PARTS,
    bbox_area: bool | None = None,
    boxes: bool = True,
    spec: KeypointSpec = COCO_WHOLEBODY,
) -> ResultRows:
    """Validate result rows on their own and turn them into arrays (see :func:`parse_results`).

    ``boxes=False`` leaves the part boxes out (not read, not checked; none present).
    """
    if not isinstance(rows, list):
        raise EvalInputError(f"{source}: results must be a JSON list of objects, got {type(rows).__name__}")
    n = len(rows)
    ctx = _Ctx(source, "result", offset)
    if not all(type(r) is dict for r in rows):  # (the exact-type test is fast; JSON gives dicts)
        for i, r in enumerate(rows):
            if not isinstance(r, Mapping):
                raise EvalInputError(f"{source}: result #{i + offset} is not an object")
    if n == 0:
        e = Detections.empty(spec)
        z = np.zeros(0, np.int64)
        return ResultRows(
            source, offset, z, z, e.keypoints, e.scores, e.area, e.boxes, e.box_present, e.box_scores
        )

    img = _ids(rows, "image_id", ctx)
    cat = _ids(rows, "category_id", ctx, default=_NO_CATEGORY)

    needed = set(PARTS) if "wholebody" in parts else {"body", *parts}
    widths = _keypoint_widths(spec)
    if needed == set(PARTS):
        kpts = _keypoints(rows, [(spec.annotation_keys[p], widths[p]) for p in PARTS], ctx)
    else:  # parts not evaluated may be absent: zeros
        kpts = np.zeros((n, spec.num_keypoints, 3))
        for p in PARTS:
            if p in needed:
                kpts[:, spec.slice(p)] = _keypoints(rows, [(spec.annotation_keys[p], widths[p])], ctx)

    score = _numbers(rows, "score", None, ctx)
    score_list = score.tolist()
    scores = {"body": score}
    for p in EVAL_PARTS[1:]:
        key = spec.score_keys[p]
        if any(key in r for r in rows):
            arr = scalar_numbers([r.get(key, s) for r, s in zip(rows, score_list)])
            if arr is None:
                raise _locate(rows, key, None, ctx, default=0.0)
            scores[p] = arr
        else:
            scores[p] = score

    if bbox_area is None:
        first = rows[0].get("bbox")
        bbox_area = isinstance(first, (list, tuple)) and len(first) > 0
    if bbox_area:
        bb = _numbers(rows, "bbox", 4, ctx)
        area = bb[:, 2] * bb[:, 3]
    else:
        body = kpts[:, spec.slice("body"), :2]
        lo, hi = body.min(axis=1), body.max(axis=1)
        area = (hi[:, 0] - lo[:, 0]) * (hi[:, 1] - lo[:, 1])

    nb = len(BOX_PARTS)
    box_xywh = np.zeros((n, nb, 4))
    present = np.zeros((n, nb), bool)
    box_scores = np.zeros((n, nb))
    for j, part in enumerate(BOX_PARTS if boxes else ()):
        key = spec.box_keys[part]
        part_score = scores[part]
        box_scores[:, j] = part_score
        vals = [r.get(key) for r in rows]
        has = np.array([v is not None and not (isinstance(v, (list, tuple)) and len(v) == 0) for v in vals])
        if not has.any():
            continue
        idx = np.flatnonzero(has)
        sub = [rows[i] for i in idx]
        try:
            box_xywh[idx, j] = _numbers(sub, key, 4, ctx)
        except EvalInputError:
            raise _locate_in(rows, idx, key, 4, ctx) from None
        present[:, j] = has
        skey = f"{key}_score"
        if any(skey in r for r in sub):
            fallback = part_score[idx].tolist()
            arr = scalar_numbers([r.get(skey, s) for r, s in zip(sub, fallback)])
            if arr is None:
                raise _locate_in(rows, idx, skey, None, ctx)
            box_scores[idx, j] = arr
    return ResultRows(source, offset, img, cat, kpts, scores, area, box_xywh, present, box_scores)


def bind_results(raw: ResultRows, gt: GroundTruth) -> Detections:
    """Check result rows against the ground truth (image ids, categories) into :class:`Detections`."""

    def where(i: int) -> str:
        return f"{raw.source}: result #{i + raw.offset} (image_id {int(raw.image_id[i])})"

    img = raw.image_id
    ii = np.searchsorted(gt.image_ids, img)
    ok = ii < len(gt.image_ids)
    ok[ok] = gt.image_ids[ii[ok]] == img[ok]
    if not ok.all():
        i = int(np.argmin(ok))
        raise EvalInputError(f"{where(i)}: image_id {int(img[i])} is not an image of {gt.source}")
    cat = raw.category_id
    missing = cat == _NO_CATEGORY
    if missing.any():
        if len(gt.category_ids) != 1:
            raise EvalInputError(f"{where(int(np.argmax(missing)))}: missing 'category_id'")
        cat = np.where(missing, gt.category_ids[0], cat)
    ci = np.searchsorted(gt.category_ids, cat)
    cok = ci < len(gt.category_ids)
    cok[cok] = gt.category_ids[ci[cok]] == cat[cok]
    return Detections(
        image_index=ii,
        category_index=np.where(cok, ci, -1),
        keypoints=raw.keypoints,
        scores=raw.scores,
        area=raw.area,
        boxes=raw.boxes,
        box_present=raw.box_present,
        box_scores=raw.box_scores,
    )


def parse_results(
    rows: Any,
    gt: GroundTruth,
    *,
    source: str = "<results>",
    offset: int = 0,
    parts: Sequence[str] = EVAL_PARTS,
    bbox_area: bool | None = None,
    spec: KeypointSpec = COCO_WHOLEBODY,
) -> Detections:
    """Validate COCO-WholeBody result rows and turn them into :class:`Detections`.

    Args:
        rows: a list of result dicts (``image_id``, ``category_id``, ``keypoints`` (17x3),
            ``foot_kpts``, ``face_kpts``, ``lefthand_kpts``, ``righthand_kpts``, ``score``, optional
            part scores and part boxes). An empty list is valid. ``category_id`` may be left out
            when the ground truth has a single category.
        gt: the ground truth; every ``image_id`` must be one of its images.
        source: name used in error messages (the file name).
        offset: index of ``rows[0]`` in the whole result set (for messages across batches).
        parts: the parts to be evaluated; keypoint lists of other parts may be absent (zeros).
        bbox_area: use ``bbox`` w*h as the detection area (``None``: the first row decides, as
            the reference does).

    Raises:
        EvalInputError: naming the file, the record index and its image_id.
    """
    raw = read_rows(rows, source=source, offset=offset, parts=parts, bbox_area=bbox_area, spec=spec)
    return bind_results(raw, gt)


#: Results files at least this large are read in batches of rows (:func:`read_results_file`).
RESULTS_BATCHED_MIN_BYTES = 16 << 20
#: Rows per batch: about 3 MB of JSON, whose Python objects take about 15 MB.
RESULTS_BATCH_ROWS = 1024


def read_results_file(
    path: str | os.PathLike,
    *,
    parts: Sequence[str] = EVAL_PARTS,
    boxes: bool = True,
    spec: KeypointSpec = COCO_WHOLEBODY,
) -> ResultRows:
    """Read a results file (a JSON list of result rows) into :class:`ResultRows` (see :func:`read_rows`).

    A file of :data:`RESULTS_BATCHED_MIN_BYTES` or more is memory-mapped and parsed
    :data:`RESULTS_BATCH_ROWS` rows at a time into arrays allocated once for all rows: the peak is the
    file (mapped) plus the arrays (about 3.5 kB a row) plus one batch's objects, about 2.3 times the file
    for whole-body rows, instead of about 10 times with the whole file's objects at once. The arrays are
    those of the whole-file parse, bit for bit. A file the batches cannot read (not one JSON list of
    objects, ``NaN`` literals, invalid JSON) is read whole, which gives the precise error. Out of memory is
    the one-line :func:`wholebody.cocowb.out_of_memory` error naming the file and its size.
    """
    source = str(path)
    try:
        large = os.path.getsize(path) >= RESULTS_BATCHED_MIN_BYTES
    except OSError:  # read_json says what is wrong with the file
        large = False
    try:
        raw = _read_rows_in_batches(Path(path), parts, boxes, spec) if large else None
        if raw is None:
            raw = read_rows(read_json(path), source=source, parts=parts, boxes=boxes, spec=spec)
    except MemoryError:
        raise out_of_memory(path, os.path.getsize(path), "reading its rows",
                            "reading needs about 3 times its size, docs/evaluation.md") from None
    return raw


@gc_paused()
def _read_rows_in_batches(path: Path, parts: Sequence[str], boxes: bool, spec: KeypointSpec) -> ResultRows | None:
    """The rows of the results file ``path`` read in batches (:func:`read_results_file`); None when the
    file is not a JSON list of objects that the batches read exactly as a whole-file parse would (the
    bytes around the list and between batches only whitespace and one comma, each batch parsed by orjson
    with its count of elements). A row's error is raised only once every batch has parsed, so that a file
    with a bad row *and* invalid JSON gets the whole-file path's message."""
    import mmap

    import orjson

    source = str(path)
    with open(path, "rb") as f:
        try:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as e:
            if e.errno == errno.ENOMEM:  # no address space left for the map
                raise MemoryError from None
            return None  # (a file that cannot be mapped is read whole)
    try:
        span = _array_elements(mm, None)
        if span is None:
            return None
        start, end, firsts, lasts = span
        n = len(firsts)
        step = RESULTS_BATCH_ROWS
        if not (n and not mm[:start].strip(_JSON_SPACE) and not mm[end + 1 :].strip(_JSON_SPACE)
                and _batches_tile(mm, start, end, firsts, lasts, step)):
            return None
        out: ResultRows | None = None
        deferred: EvalInputError | None = None
        bbox_area = None
        for lo in range(0, n, step):
            hi = min(lo + step, n)
            text = b"[" + mm[int(firsts[lo]) : int(lasts[hi - 1]) + 1] + b"]"
            if not room_to_parse(len(text)):
                raise MemoryError
            try:
                batch = orjson.loads(text)
            except orjson.JSONDecodeError as e:
                if _orjson_out_of_memory(e):
                    raise MemoryError from None
                return None
            if len(batch) != hi - lo:
                return None
            if deferred is not None:
                continue
            try:
                if bbox_area is None and type(batch[0]) is dict:  # the first row decides, as in read_rows
                    first = batch[0].get("bbox")
                    bbox_area = isinstance(first, (list, tuple)) and len(first) > 0
                part = read_rows(batch, source=source, offset=lo, parts=parts, bbox_area=bbox_area, boxes=boxes,
                                 spec=spec)
            except EvalInputError as e:
                deferred = e
                continue
            if out is None:
                out = _allocate_rows(source, n, part)
            _fill_rows(out, lo, part)
            del batch, part, text
        if deferred is not None:
            raise deferred
        return out
    finally:
        mm.close()


def _allocate_rows(source: str, n: int, like: ResultRows) -> ResultRows:
    """Arrays for ``n`` rows, of the dtypes and trailing shapes of ``like`` (uninitialised)."""
    def empty(a: np.ndarray) -> np.ndarray:
        return np.empty((n, *a.shape[1:]), a.dtype)

    return ResultRows(source, 0, empty(like.image_id), empty(like.category_id), empty(like.keypoints),
                      {p: empty(v) for p, v in like.scores.items()}, empty(like.area), empty(like.boxes),
                      empty(like.box_present), empty(like.box_scores))


def _fill_rows(out: ResultRows, lo: int, part: ResultRows) -> None:
    """Copy the rows ``part`` into ``out`` from row ``lo`` on."""
    hi = lo + len(part.image_id)
    for name in ("image_id", "category_id", "keypoints", "area", "boxes", "box_present", "box_scores"):
        getattr(out, name)[lo:hi] = getattr(part, name)
    for p, v in part.scores.items():
        out.scores[p][lo:hi] = v


def load_results(
    results: str | os.PathLike | list,
    gt: GroundTruth,
    *,
    parts: Sequence[str] = EVAL_PARTS,
    spec: KeypointSpec = COCO_WHOLEBODY,
) -> Detections:
    """Read (if a path) and parse a results file into :class:`Detections`."""
    if isinstance(results, (str, os.PathLike)):
        return bind_results(read_results_file(results, parts=parts, spec=spec), gt)
    return parse_results(results, gt, parts=parts, spec=spec)


def restrict_images(
    gt: GroundTruth, det: Detections, image_ids: Iterable[int]
) -> tuple[GroundTruth, Detections]:
    """Ground truth and detections of the images ``image_ids`` only (ids not in ``gt`` are ignored):
    the evaluation then measures those images alone, as the reference does with ``params.imgIds``."""
    wanted = np.unique(np.fromiter(image_ids, np.int64))
    keep_img = np.isin(gt.image_ids, wanted)
    new_index = np.cumsum(keep_img) - 1  # old image index -> new one (where kept)
    ga = keep_img[gt.image_index]
    dk = keep_img[det.image_index]
    g = GroundTruth(
        source=gt.source,
        image_ids=gt.image_ids[keep_img],
        category_ids=gt.category_ids,
        ann_ids=gt.ann_ids[ga],
        image_index=new_index[gt.image_index[ga]],
        category_index=gt.category_index[ga],
        keypoints=gt.keypoints[ga],
        area=gt.area[ga],
        bbox=gt.bbox[ga],
        iscrowd=gt.iscrowd[ga],
        part_boxes=gt.part_boxes[ga],
        part_box_valid=gt.part_box_valid[ga],
        has_part_boxes=gt.has_part_boxes,
    )
    d = det.subset(np.flatnonzero(dk))
    d = Detections(**{**d.__dict__, "image_index": new_index[d.image_index]})
    return g, d
