"""Validation of result rows: the readers that turn lists of records into arrays with a one-line
:class:`EvalInputError` naming the file, the record and its image_id for anything unusable (used by
:mod:`.results`). Also re-exports the atomic writers of :mod:`wholebody.io_utils`.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..cocowb import AnnotationError, is_json_int, only_numbers, value_problem
from ..io_utils import write_bytes_atomic, write_json_atomic  # noqa: F401  (re-exported)
from ..keypoints import PARTS, KeypointSpec

#: Input the evaluator cannot use (a results or annotation file); the message is one line naming the file
#: and the record. The package's one error type for malformed files (:class:`wholebody.cocowb.AnnotationError`).
EvalInputError = AnnotationError


# --------------------------------------------------------------------------- validation helpers
def _describe(rows: Sequence, i: int, what: str, offset: int) -> str:
    r = rows[i]
    iid = r.get("image_id", "?") if isinstance(r, Mapping) else "?"
    return f"{what} #{i + offset} (image_id {iid!r})"


def _locate(rows: Sequence, key: str, width: int | None, ctx: _Ctx, default: Any = None) -> EvalInputError:
    """Find the first record whose ``key`` is unusable and build the error naming it."""
    for i, r in enumerate(rows):
        if not isinstance(r, Mapping):
            return EvalInputError(f"{ctx.source}: {ctx.what} #{i + ctx.offset} is not an object")
        if key not in r and default is None:
            return EvalInputError(
                f"{ctx.source}: {_describe(rows, i, ctx.what, ctx.offset)}: missing {key!r}"
            )
        msg = value_problem(r.get(key, default), key, width)
        if msg is not None:
            return EvalInputError(f"{ctx.source}: {_describe(rows, i, ctx.what, ctx.offset)}: {msg}")
    return EvalInputError(f"{ctx.source}: cannot read {key!r} of the {ctx.what}s")


@dataclass(frozen=True)
class _Ctx:
    source: str
    what: str  # how messages name a record ("result")
    offset: int = 0


_CONVERSION_ERRORS = (KeyError, TypeError, ValueError, AttributeError, OverflowError)


def scalar_numbers(vals: list) -> np.ndarray | None:
    """(N,) float64 of ``vals`` when every one is a finite number, else None: ``true`` / ``false`` or
    ``"12.5"`` (which ``np.array`` would read as numbers, :func:`~wholebody.cocowb.only_numbers`), a list,
    ``null``, NaN or inf."""
    if not only_numbers((vals,)):
        return None
    arr = np.array(vals)
    if arr.shape != (len(vals),) or arr.dtype.kind not in "iuf" or not np.isfinite(arr).all():
        return None
    return arr.astype(np.float64, copy=False)


def _numbers(rows: Sequence, key: str, width: int | None, ctx: _Ctx, default: Any = None) -> np.ndarray:
    """(N, width) or (N,) float64 array of ``row[key]``; raises a located error on bad values.

    Lists of numbers are read straight into float64 (``np.fromiter``, twice as fast as
    ``np.array`` on nested lists) after :func:`~wholebody.cocowb.only_numbers` has checked their
    elements: a numeric string (``"12.5"``) or a boolean is refused, not read as its number.
    Scalars must be JSON numbers too.
    """
    n = len(rows)
    shape = (n,) if width is None else (n, width)
    if n == 0:
        return np.zeros(shape)
    try:
        vals = [r[key] for r in rows] if default is None else [r.get(key, default) for r in rows]
        if width is None:
            arr = scalar_numbers(vals)
            if arr is None:
                raise ValueError
        else:
            if not all(type(v) is list for v in vals):  # a string or a dict of the right length is no list
                raise ValueError
            if (np.fromiter(map(len, vals), np.int64, count=n) != width).any():
                raise ValueError
            if not only_numbers(vals):  # ("12.5" and true would pass np.fromiter as numbers)
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
            if not all(type(r[key]) is list for r in rows):  # a string or a dict of the right length is no list
                raise ValueError
            if (np.fromiter(map(len, (r[key] for r in rows)), np.int64, count=n) != w).any():
                raise ValueError
            if not only_numbers(r[key] for r in rows):  # ("12.5" and true would pass np.fromiter)
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
        # only ints: np.array would read [true, 5] as [1, 5]; uint64 (a value >= 2**63) would wrap
        arr = np.array(vals) if set(map(type, vals)) <= {int} else None
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
        arr = None
    if arr is None or (n and (arr.shape != (n,) or arr.dtype.kind != "i")):
        for i, r in enumerate(rows):
            if not isinstance(r, Mapping):
                raise EvalInputError(f"{ctx.source}: {ctx.what} #{i + ctx.offset} is not an object")
            v = r.get(key, default)
            if v is None:
                raise EvalInputError(
                    f"{ctx.source}: {_describe(rows, i, ctx.what, ctx.offset)}: missing {key!r}"
                )
            if not is_json_int(v) or not -(2**63) <= v < 2**63:
                raise EvalInputError(
                    f"{ctx.source}: {_describe(rows, i, ctx.what, ctx.offset)}: {key!r} must be an integer, got {v!r}"
                )
        arr = np.array([int(r.get(key, default)) for r in rows], np.int64)  # (numpy integers from a caller)
    return arr.astype(np.int64, copy=False).reshape(n)


def _keypoint_widths(spec: KeypointSpec) -> dict[str, int]:
    return {p: 3 * spec.num_part(p) for p in PARTS}


def _locate_in(rows: Sequence, idx: np.ndarray, key: str, width: int | None, ctx: _Ctx) -> EvalInputError:
    for i in idx:
        msg = value_problem(rows[i].get(key), key, width)
        if msg is not None:
            return EvalInputError(f"{ctx.source}: {_describe(rows, int(i), ctx.what, ctx.offset)}: {msg}")
    return EvalInputError(f"{ctx.source}: cannot read {key!r} of the results")
