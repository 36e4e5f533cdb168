"""Reading and validating COCO-WholeBody ground truth and results into arrays.

Everything the evaluator needs is turned into numpy arrays once, here, with a clear one-line
:class:`EvalInputError` naming the file and record for any input it cannot evaluate. Nothing
the caller passes in is modified.

Coordinates are image pixels as written in the files; boxes stay COCO ``xywh``. Keypoint arrays
are in the 133-order of the :class:`~wholebody.keypoints.KeypointSpec` (the file's per-part
lists ``keypoints``, ``foot_kpts``, ``face_kpts``, ``lefthand_kpts``, ``righthand_kpts`` are
concatenated in that order).
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..keypoints import BOX_PARTS, COCO_WHOLEBODY, EVAL_PARTS, PARTS, KeypointSpec


class EvalInputError(ValueError):
    """Input the evaluator cannot use; the message is one line naming the file and the record."""


# --------------------------------------------------------------------------- JSON files
@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector: building millions of JSON objects (none of them in a
    cycle) otherwise triggers full collections over everything built so far (30-40% of the time)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def read_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file with orjson (falls back to the standard library, which also accepts the
    non-standard ``NaN``/``Infinity`` literals so that validation can name the record holding them)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise EvalInputError(f"{p}: no such file") from None
    except OSError as e:
        raise EvalInputError(f"{p}: cannot read ({e.strerror or e})") from None
    with gc_paused():
        try:
            import orjson

            return orjson.loads(data)
        except ImportError:
            pass
        except ValueError:
            pass  # not strict JSON; let the standard library try (NaN literals) and report
        try:
            return json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise EvalInputError(f"{p}: not valid JSON ({e})") from None


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, p)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return p


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically (see :func:`write_bytes_atomic`)."""
    try:
        import orjson

        data = orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY) + b"\n"
    except ImportError:
        data = (json.dumps(obj, indent=2) + "\n").encode()
    return write_bytes_atomic(path, data)


# --------------------------------------------------------------------------- validation helpers
def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _describe(rows: Sequence, i: int, what: str, offset: int) -> str:
    r = rows[i]
    iid = r.get("image_id", "?") if isinstance(r, Mapping) else "?"
    rid = f", id {r['id']}" if what == "annotation" and isinstance(r, Mapping) and "id" in r else ""
    return f"{what} #{i + offset} (image_id {iid!r}{rid})"


def _problem(value: Any, key: str, width: int | None) -> str | None:
    """What is wrong with one field value (``None`` if nothing)."""
    if width is None:  # a scalar
        bad = _bad_number(value)
        return None if bad is None else f"{key!r} {bad}"
    if not isinstance(value, (list, tuple)):
        return f"{key!r} must be a list of {width} numbers, got {type(value).__name__}"
    if len(value) != width:
        return f"{key!r} has {len(value)} values, expected {width}"
    for j, v in enumerate(value):
        bad = _bad_number(v)
        if bad is not None:
            return f"{key!r}[{j}] {bad}"
    return None


def _bad_number(v: Any) -> str | None:
    if not _is_number(v):
        return f"is not a number ({v!r})"
    try:
        f = float(v)
    except OverflowError:
        return f"is out of range ({v})"
    return None if math.isfinite(f) else f"is {f}"


def _locate(rows: Sequence, key: str, width: int | None, ctx: _Ctx, default: Any = None) -> EvalInputError:
    """Find the first record whose ``key`` is unusable and build the error naming it."""
    for i, r in enumerate(rows):
        if not isinstance(r, Mapping):
            return EvalInputError(f"{ctx.source}: {ctx.what} #{i + ctx.offset} is not an object")
        if key not in r and default is None:
            return EvalInputError(
                f"{ctx.source}: {_describe(rows, i, ctx.what, ctx.offset)}: missing {key!r}{ctx.hint}"
            )
        msg = _problem(r.get(key, default), key, width)
        if msg is not None:
            return EvalInputError(f"{ctx.source}: {_describe(rows, i, ctx.what, ctx.offset)}: {msg}")
    return EvalInputError(f"{ctx.source}: cannot read {key!r} of the {ctx.what}s")


@dataclass(frozen=True)
class _Ctx:
    source: str
    what: str  # "result" | "annotation"
    offset: int = 0
    hint: str = ""


_CONVERSION_ERRORS = (KeyError, TypeError, ValueError, AttributeError, OverflowError)


def _numbers(rows: Sequence, key: str, width: int | None, ctx: _Ctx, default: Any = None) -> np.ndarray:
    """(N, width) or (N,) float64 array of ``row[key]``; raises a located error on bad values.

    Lists of numbers are read straight into float64 (``np.fromiter``, twice as fast as
    ``np.array`` on nested lists); a numeric string or a boolean inside such a list is therefore
    read as its number. Scalars must be JSON numbers.
    """
    n = len(rows)
    shape = (n,) if width is None else (n, width)
    if n == 0:
        return np.zeros(shape)
    try:
        vals = [r[key] for r in rows] if default is None else [r.get(key, default) for r in rows]
        if width is None:
            arr = np.array(vals)
            if arr.shape != shape or arr.dtype.kind not in "iuf":
                raise ValueError
        else:
            if (np.fromiter(map(len, vals), np.int64, count=n) != width).any():
                raise ValueError
            arr = np.fromiter(itertools.chain.from_iterable(vals), np.float64, count=n * width).reshape(shape)
    except _CONVERSION_ERRORS:
        raise _locate(rows, key, width, ctx, default) from None
    if not np.isfinite(arr).all():
        raise _locate(rows, key, width, ctx, default)
    return arr.astype(np.float64, copy=False)


def _keypoints(rows: Sequence, keys: Sequence[tuple[str, int]], ctx: _Ctx) -> np.ndarray:
    """(N, sum(widths) / 3, 3) float64: the lists ``row[key]`` of every key, concatenated per row."""
    n = len(rows)
    total = sum(w for _, w in keys)
    try:
        for key, w in keys:
            if (np.fromiter(map(len, (r[key] for r in rows)), np.int64, count=n) != w).any():
                raise ValueError
        flat = itertools.chain.from_iterable(r[k] for r in rows for k, _ in keys)
        arr = np.fromiter(flat, np.float64, count=n * total).reshape(n, total // 3, 3)
        if not np.isfinite(arr).all():
            raise ValueError
    except _CONVERSION_ERRORS:  # find the record and field with the per-key reader
        for key, w in keys:
            _numbers(rows, key, w, ctx)
        raise EvalInputError(f"{ctx.source}: cannot read the keypoints of the {ctx.what}s") from None
    return arr


def _ids(rows: Sequence, key: str, ctx: _Ctx, default: Any = None) -> np.ndarray:
    n = len(rows)
    try:
        vals = [r[key] for r in rows] if default is None else [r.get(key, default) for r in rows]
        arr = np.array(vals)
    except (KeyError, TypeError, ValueError, AttributeError):
        arr = None
    if arr is None or (n and (arr.shape != (n,) or arr.dtype.kind not in "iu")):
        for i, r in enumerate(rows):
            if not isinstance(r, Mapping):
                raise EvalInputError(f"{ctx.source}: {ctx.what} #{i + ctx.offset} is not an object")
            v = r.get(key, default)
            if v is None:
                raise EvalInputError(
                    f"{ctx.source}: {_describe(rows, i, ctx.what, ctx.offset)}: missing {key!r}"
                )
            if not isinstance(v, int) or isinstance(v, bool):
                raise EvalInputError(
                    f"{ctx.source}: {_describe(rows, i, ctx.what, ctx.offset)}: {key!r} must be an integer, got {v!r}"
                )
        raise EvalInputError(f"{ctx.source}: cannot read {key!r} of the {ctx.what}s")
    return arr.astype(np.int64, copy=False).reshape(n)


def _keypoint_widths(spec: KeypointSpec) -> dict[str, int]:
    return {p: 3 * spec.num_part(p) for p in PARTS}


# --------------------------------------------------------------------------- ground truth
@dataclass(frozen=True, eq=False)
class GroundTruth:
    """A COCO-WholeBody annotation file as arrays (G annotations, I images, C categories).

    Only annotations whose image is listed in ``images`` and whose category is listed in
    ``categories`` are kept (as the reference evaluator does).

    Attributes:
        source: file name (or ``"<ground truth>"``) used in messages.
        image_ids: (I,) int64 sorted unique image ids; their order is the evaluation order.
        category_ids: (C,) int64 sorted unique category ids.
        ann_ids: (G,) int64 annotation ids.
        image_index: (G,) int64 index into ``image_ids``.
        category_index: (G,) int64 index into ``category_ids``.
        keypoints: (G, K, 3) float64, x and y in image px and the visibility flag (> 0: labelled).
        area: (G,) float64 the annotation's ``area`` (segmentation area).
        bbox: (G, 4) float64 person box, xywh image px.
        iscrowd: (G,) bool.
        part_boxes: (G, len(BOX_PARTS), 4) float64 xywh image px (zeros where the file has none).
        part_box_valid: (G, len(BOX_PARTS)) bool, the file's ``*_valid`` flags (or a positive box
            size when the flag is absent); False where the file has no box.
        has_part_boxes: (len(BOX_PARTS),) bool, whether the file carries that box at all.
    """

    source: str
    image_ids: np.ndarray
    category_ids: np.ndarray
    ann_ids: np.ndarray
    image_index: np.ndarray
    category_index: np.ndarray
    keypoints: np.ndarray
    area: np.ndarray
    bbox: np.ndarray
    iscrowd: np.ndarray
    part_boxes: np.ndarray
    part_box_valid: np.ndarray
    has_part_boxes: np.ndarray

    @property
    def num_annotations(self) -> int:
        return len(self.ann_ids)


@gc_paused()
def load_ground_truth(
    gt: str | os.PathLike | Mapping | GroundTruth, spec: KeypointSpec = COCO_WHOLEBODY
) -> GroundTruth:
    """Parse a COCO-WholeBody annotation file (path or already-loaded dict) into a :class:`GroundTruth`."""
    if isinstance(gt, GroundTruth):
        return gt
    if isinstance(gt, (str, os.PathLike)):
        source = str(gt)
        data = read_json(gt)
    else:
        source, data = "<ground truth>", gt
    if not isinstance(data, Mapping):
        raise EvalInputError(f"{source}: expected a COCO annotation object, got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise EvalInputError(f"{source}: missing the {key!r} list (not a COCO annotation file?)")
    img_ctx = _Ctx(source, "image")
    cat_ctx = _Ctx(source, "category")
    image_ids = np.unique(_ids(data["images"], "id", img_ctx)) if data["images"] else np.zeros(0, np.int64)
    category_ids = (
        np.unique(_ids(data["categories"], "id", cat_ctx)) if data["categories"] else np.zeros(0, np.int64)
    )

    anns = data["annotations"]
    ctx = _Ctx(source, "annotation", hint=" (not a COCO-WholeBody annotation file?)")
    ann_ids = _ids(anns, "id", ctx)
    img = _ids(anns, "image_id", ctx)
    cat = _ids(anns, "category_id", ctx)
    uniq, counts = np.unique(ann_ids, return_counts=True)
    if (counts > 1).any():
        dup = int(uniq[np.argmax(counts > 1)])
        i = int(np.flatnonzero(ann_ids == dup)[1])
        raise EvalInputError(
            f"{source}: {_describe(anns, i, 'annotation', 0)}: duplicate annotation id {dup}"
        )
    widths = _keypoint_widths(spec)
    kpts = _keypoints(anns, [(spec.annotation_keys[p], widths[p]) for p in PARTS], ctx)
    area = _numbers(anns, "area", None, ctx)
    bbox = _numbers(anns, "bbox", 4, ctx)
    # truthiness, as the reference reads it (files hold 0/1 or true/false)
    crowd = np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool)

    n = len(anns)
    boxes = np.zeros((n, len(BOX_PARTS), 4))
    valid = np.zeros((n, len(BOX_PARTS)), bool)
    has = np.zeros(len(BOX_PARTS), bool)
    for j, part in enumerate(BOX_PARTS):
        key = spec.box_keys[part]
        if n == 0 or not any(key in a for a in anns):
            continue
        has[j] = True
        boxes[:, j] = _numbers(anns, key, 4, ctx, default=[0.0, 0.0, 0.0, 0.0])
        vkey = spec.valid_keys.get(part)
        positive = (boxes[:, j, 2] > 0) & (boxes[:, j, 3] > 0)
        if vkey is not None and any(vkey in a for a in anns):
            flags = np.array([bool(a.get(vkey, False)) for a in anns])
            valid[:, j] = flags & positive
        else:
            valid[:, j] = positive

    # keep annotations of listed images and categories (the reference ignores the others)
    ii = np.searchsorted(image_ids, img)
    ci = np.searchsorted(category_ids, cat)
    keep = (ii < len(image_ids)) & (ci < len(category_ids))
    keep[keep] &= (image_ids[ii[keep]] == img[keep]) & (category_ids[ci[keep]] == cat[keep])
    if keep.all():
        keep = slice(None)  # no copies
    return GroundTruth(
        source=source,
        image_ids=image_ids,
        category_ids=category_ids,
        ann_ids=ann_ids[keep],
        image_index=ii[keep],
        category_index=ci[keep],
        keypoints=kpts[keep],
        area=area[keep],
        bbox=bbox[keep],
        iscrowd=crowd[keep],
        part_boxes=boxes[keep],
        part_box_valid=valid[keep],
        has_part_boxes=has,
    )


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


# --------------------------------------------------------------------------- results
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
            vals = [r.get(key, s) for r, s in zip(rows, score_list)]
            arr = np.array(vals)
            if arr.shape != (n,) or arr.dtype.kind not in "iuf" or not np.isfinite(arr).all():
                raise _locate(rows, key, None, ctx, default=0.0)
            scores[p] = arr.astype(np.float64)
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
            arr = np.array([r.get(skey, s) for r, s in zip(sub, fallback)])
            if arr.shape != (len(idx),) or arr.dtype.kind not in "iuf" or not np.isfinite(arr).all():
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


def _locate_in(rows: Sequence, idx: np.ndarray, key: str, width: int | None, ctx: _Ctx) -> EvalInputError:
    for i in idx:
        msg = _problem(rows[i].get(key), key, width)
        if msg is not None:
            return EvalInputError(f"{ctx.source}: {_describe(rows, int(i), ctx.what, ctx.offset)}: {msg}")
    return EvalInputError(f"{ctx.source}: cannot read {key!r} of the results")


def load_results(
    results: str | os.PathLike | list,
    gt: GroundTruth,
    *,
    parts: Sequence[str] = EVAL_PARTS,
    spec: KeypointSpec = COCO_WHOLEBODY,
) -> Detections:
    """Read (if a path) and parse a results file into :class:`Detections`."""
    if isinstance(results, (str, os.PathLike)):
        return parse_results(read_json(results), gt, source=str(results), parts=parts, spec=spec)
    return parse_results(results, gt, parts=parts, spec=spec)
