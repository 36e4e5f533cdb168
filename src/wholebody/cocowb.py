"""COCO-WholeBody files: the one reader of annotation files and of detection files.

Every part of the package that reads these formats (the training data, the evaluator, the dataset
tools, ``wholebody-predict``) reads through :func:`read_wholebody` / :func:`parse_wholebody` and
:func:`read_detections`, and applies its own policy on top (what it skips, what it counts, what it
refuses). The reader itself holds the format's rules only:

* the file is a JSON object with ``images`` and ``annotations`` lists (``categories`` optional);
* an image entry has an integer ``id`` (unique); ``file_name`` (a relative path inside the image
  folder), ``width`` and ``height`` (positive integers) are checked where present;
* an annotation has integer ``id`` (unique) and ``image_id``; where present, ``category_id`` and
  ``num_keypoints`` are integers (``num_keypoints`` >= 0), ``iscrowd`` and the ``*_valid`` flags are
  booleans (or 0 / 1), ``area`` is a finite number >= 0, ``bbox`` and the part boxes are 4 finite numbers
  with width and height >= 0, and each keypoint list holds 3 finite numbers per keypoint of its part with
  visibility >= 0;
* any other value is an :class:`AnnotationError` naming the file and the record. Absent optional fields
  are recorded (:meth:`WholeBodyColumns.present`), filled with zeros / False / -1.

Nothing is converted: coordinates are the file's (COCO's pixel-index convention, boxes ``xywh``);
consumers convert at their boundary (:func:`wholebody.geometry.keypoints_from_file`). Keypoints are
float64 so that the evaluator sees the file's numbers bit for bit.

The part-box rule every consumer shares: a face / hand box is *usable* when the file flags it valid and it
has a positive width and height (:meth:`WholeBodyColumns.part_box_usable`); a valid-flagged box without
area is counted by the consumer (:meth:`WholeBodyColumns.degenerate_part_boxes`).

The columns can be written to and memory-mapped from a column file (:mod:`wholebody.column_file`), which
the column cache (:mod:`wholebody.column_cache`) keys by the source's content.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from wholebody.keypoints import BOX_PARTS, COCO_WHOLEBODY, PARTS, KeypointSpec

#: Bumped whenever the columns or the rules change: a cache written by another version is rebuilt.
READER_VERSION = 2  # 2: numeric strings and booleans in number lists refused (1 read them as numbers)
#: The person category of COCO.
PERSON_CATEGORY = 1


class AnnotationError(ValueError):
    """A malformed annotation, detection or results file. The message is one line naming the file and
    the record.

    ``AnnotationError(file, problem, record)``; or ``AnnotationError(message)`` with the whole line.
    """

    def __init__(self, file: str | os.PathLike, problem: str | None = None, record: str | None = None):
        if problem is None:
            self.file, self.problem, self.record = None, str(file), None
            super().__init__(str(file))
            return
        self.file = str(file)
        self.record = record
        self.problem = problem
        super().__init__(f"{self.file}: {record}: {problem}" if record else f"{self.file}: {problem}")


# ----------------------------------------------------------------------------- JSON
@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector: building millions of JSON objects (none of them in a
    cycle) otherwise triggers full collections over everything built so far."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def size_text(num_bytes: int) -> str:
    """A file size for messages: ``"512 B"``, ``"3.4 MB"``, ``"1.40 GB"`` (decimal units)."""
    if num_bytes < 1000:
        return f"{num_bytes} B"
    if num_bytes < 10**9:
        return f"{num_bytes / 1e6:.1f} MB" if num_bytes >= 10**6 else f"{num_bytes / 1e3:.1f} kB"
    return f"{num_bytes / 1e9:.2f} GB"


def out_of_memory(path: str | os.PathLike, num_bytes: int, doing: str = "parsing it",
                  need: str = "a whole JSON file takes up to 20 times its size while parsed") -> AnnotationError:
    """The one-line error for a file whose reading ran out of memory: its name, its size, what to do."""
    return AnnotationError(path, f"out of memory {doing} ({size_text(num_bytes)} file; {need}): free memory or "
                           "split the file")


#: Address space orjson maps per byte of JSON at its peak (measured about 18 on result rows: its document
#: buffers plus the Python objects).
ORJSON_SPACE_PER_BYTE = 20


def room_to_parse(num_bytes: int) -> bool:
    """Whether an address-space limit (``RLIMIT_AS``, ``ulimit -v``) leaves room for orjson to parse
    ``num_bytes`` of JSON. orjson does not survive every failed allocation (it can crash the process
    instead of raising), so under such a limit the readers refuse before parsing. True without a limit
    (an allocation then fails only where the kernel's out-of-memory killer acts, which no check can see)."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft == resource.RLIM_INFINITY:
            return True
        with open("/proc/self/statm") as f:
            used = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (ImportError, OSError, ValueError):
        return True
    return soft - used >= ORJSON_SPACE_PER_BYTE * num_bytes


def _orjson_out_of_memory(e: Exception) -> bool:
    """orjson reports a failed allocation as a JSONDecodeError ("Not enough memory ...")."""
    return "memory" in str(e).lower()


def read_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file (orjson); :class:`AnnotationError` naming the file when it is missing or malformed.

    A file with ``NaN`` / ``Infinity`` literals (not JSON, but what Python's ``json.dump`` writes) is
    parsed by the standard library, so that validation can name the record holding them. Running out of
    memory is the one-line :func:`out_of_memory` error (never a second parse by the standard library).
    """
    import orjson

    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise AnnotationError(p, "no such file") from None
    except OSError as e:
        raise AnnotationError(p, f"cannot read file: {e.strerror or e}") from None
    except MemoryError:
        raise out_of_memory(p, p.stat().st_size, "reading it") from None
    if not room_to_parse(len(raw)):
        raise out_of_memory(p, len(raw))
    with gc_paused():
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            if _orjson_out_of_memory(e):
                raise out_of_memory(p, len(raw)) from None
        except MemoryError:
            raise out_of_memory(p, len(raw)) from None
        try:
            return json.loads(raw)
        except MemoryError:
            raise out_of_memory(p, len(raw)) from None
        except (ValueError, UnicodeDecodeError) as e:
            raise AnnotationError(p, f"not valid JSON (malformed: {e})") from None
        except RecursionError:
            raise AnnotationError(p, "not an annotation or results file (JSON nested too deeply)") from None


# ----------------------------------------------------------------------------- value checks
def relative_file_name(name: object) -> str:
    """``name`` when it is a usable image ``file_name``: a non-empty relative path that stays inside the
    image folder (no absolute path, drive or ``..`` part, no NUL). Else ``ValueError`` saying why.

    Annotation and image-list files come from anywhere; a ``file_name`` of ``/etc/passwd`` or
    ``../../x.jpg`` must not make a tool open files outside the folder it was given.
    """
    from pathlib import PurePosixPath, PureWindowsPath

    if not isinstance(name, str) or not name:
        raise ValueError(f"'file_name' must be a non-empty string, got {name!r}")
    if "\x00" in name:
        raise ValueError(f"'file_name' {name!r} holds a NUL character")
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or PureWindowsPath(name).drive:
        raise ValueError(f"'file_name' {name!r} is an absolute path; file names are relative to the image folder")
    if ".." in posix.parts:
        raise ValueError(f"'file_name' {name!r} leaves the image folder ('..')")
    return name


_MISSING = object()


def is_json_int(v: object) -> bool:
    """A JSON integer (``true`` / ``false`` are not ids or counts)."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def json_id(value: object) -> int | None:
    """An id read from JSON: an integer, or a float with an integral value (``785.0``); None for anything
    else (``785.9``, ``1e400``, ``true``, ``"785"``), which a reader must refuse rather than round."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


_NUMBER_TYPES = frozenset((int, float))


def _is_number_type(t: type) -> bool:
    return t in _NUMBER_TYPES or (issubclass(t, (int, float)) and not issubclass(t, bool))


def only_numbers(lists: Iterable[Iterable]) -> bool:
    """Whether every element of every list in ``lists`` is a number (``int`` or ``float``; not ``true`` /
    ``false``, a numeric string such as ``"12.5"``, ``null`` or a container).

    The bulk conversions (``np.fromiter(..., np.float64)``, ``np.array``) read ``"12.5"`` as 12.5 and
    ``true`` as 1, so every bulk reader calls this first. It collects the elements' types in one pass
    (about 20 ns a value; 0.06 s for the face keypoints of 12k annotations)."""
    seen: set[type] = set()
    add = seen.update
    for v in lists:
        add(map(type, v))
    return seen <= _NUMBER_TYPES or all(_is_number_type(t) for t in seen)


def _bad_number(v: Any) -> str | None:
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return f"is not a number ({v!r})"
    try:
        f = float(v)
    except OverflowError:
        return f"is out of range ({v})"
    return None if math.isfinite(f) else f"is {f} (non-finite)"


def value_problem(value: Any, key: str, width: int | None) -> str | None:
    """What is wrong with one numeric field value (``width`` None: a scalar), or ``None``."""
    if width is None:
        bad = _bad_number(value)
        return None if bad is None else f"{key!r} {bad}"
    if not isinstance(value, list):
        return f"{key!r} must be a list of {width} numbers, got {type(value).__name__}"
    if len(value) != width:
        return f"{key!r} has {len(value)} values, expected {width}"
    for j, v in enumerate(value):
        bad = _bad_number(v)
        if bad is not None:
            return f"{key!r}[{j}] {bad}"
    return None


class _Names:
    """Names records in messages: ``annotation id 7 (#3, image_id 12)``."""

    def __init__(self, source: str, what: str, ids: Sequence | None = None, image_ids: Sequence | None = None,
                 offset: int = 0):
        self.source, self.what, self.ids, self.image_ids, self.offset = source, what, ids, image_ids, offset

    def __call__(self, i: int) -> str:
        n = i + self.offset  # the record's index in the file (``i`` indexes this batch of records)
        if self.ids is None:  # ``image_ids`` then holds the file's own values (a detection's, say)
            return f"{self.what} #{n}" + (f" (image_id {self.image_ids[i]!r})" if self.image_ids is not None else "")
        if self.what == "image entry":
            return f"image entry #{n} (id {self.ids[i]})"
        extra = f", image_id {self.image_ids[i]}" if self.image_ids is not None else ""
        return f"{self.what} id {self.ids[i]} (#{n}{extra})"

    def error(self, i: int, problem: str) -> AnnotationError:
        return AnnotationError(self.source, problem, self(i))


def _located(vals: list, key: str, width: int | None, names: _Names) -> AnnotationError:
    """The error naming the first record whose ``key`` is unusable (the bulk conversion failed)."""
    for i, v in enumerate(vals):
        msg = value_problem(v, key, width)
        if msg is not None:
            return names.error(i, msg)
    return AnnotationError(names.source, f"cannot read {key!r}")


def _vectors(vals: list, key: str, width: int, names: _Names) -> tuple[np.ndarray, np.ndarray]:
    """(N, width) float64 of the lists ``vals`` (``_MISSING`` -> zeros) and the (N,) presence mask."""
    n = len(vals)
    present = np.fromiter((v is not _MISSING for v in vals), bool, n)
    if n and not present.all():
        zeros = [0.0] * width
        vals = [zeros if v is _MISSING else v for v in vals]
    try:
        if not all(type(v) is list for v in vals):
            raise ValueError
        if n and (np.fromiter(map(len, vals), np.int64, n) != width).any():
            raise ValueError
        if not only_numbers(vals):  # ("12.5" and true would pass np.fromiter as numbers)
            raise ValueError
        arr = np.fromiter(itertools.chain.from_iterable(vals), np.float64, n * width).reshape(n, width)
        if not np.isfinite(arr).all():
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise _located(vals, key, width, names) from None
    return arr, present


def _scalars(vals: list, key: str, names: _Names) -> tuple[np.ndarray, np.ndarray]:
    """(N,) float64 of JSON numbers (``_MISSING`` -> 0) and the presence mask."""
    n = len(vals)
    present = np.fromiter((v is not _MISSING for v in vals), bool, n)
    if n and not present.all():
        vals = [0.0 if v is _MISSING else v for v in vals]
    try:
        if not only_numbers((vals,)):  # (no bool, numeric string, list, ...)
            raise ValueError
        arr = np.fromiter(vals, np.float64, n)
        if not np.isfinite(arr).all():
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise _located(vals, key, None, names) from None
    return arr, present


def _integers(vals: list, key: str, names: _Names, default: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """(N,) int64 of JSON integers (``_MISSING`` -> ``default``) and the presence mask."""
    n = len(vals)
    present = np.fromiter((v is not _MISSING for v in vals), bool, n)
    if n and not present.all():
        vals = [default if v is _MISSING else v for v in vals]
    arr = None
    if set(map(type, vals)) <= {int}:  # (no bool, float or string; np.array would take them)
        with contextlib.suppress(TypeError, ValueError, OverflowError):
            a = np.array(vals)
            if a.shape == (n,) and (not n or a.dtype.kind == "i"):  # (uint64: a value >= 2**63)
                arr = a.astype(np.int64)
    if arr is None:
        for i, v in enumerate(vals):
            if not is_json_int(v) or not -(2**63) <= v < 2**63:
                raise names.error(i, f"{key!r} must be an integer, got {v!r}")
        arr = np.array([int(v) for v in vals], np.int64).reshape(n)  # (numpy integers from a caller)
    return arr, present


def _flags(vals: list, key: str, names: _Names) -> tuple[np.ndarray, np.ndarray]:
    """(N,) bool of JSON booleans or 0 / 1 (``_MISSING`` -> False) and the presence mask."""
    n = len(vals)
    present = np.fromiter((v is not _MISSING for v in vals), bool, n)
    for i, v in enumerate(vals):
        if not (v is _MISSING or v is True or v is False or (is_json_int(v) and v in (0, 1))):
            raise names.error(i, f"{key!r} must be true/false (or 0/1), got {v!r}")
    return np.fromiter((v is not _MISSING and bool(v) for v in vals), bool, n), present


def _take(rows: list, key: str, consume: bool) -> list:
    """``row[key]`` of every row (``_MISSING`` where absent); with ``consume`` the values are popped
    out of the rows, so that the parsed JSON shrinks while the columns grow."""
    if consume:
        return [r.pop(key, _MISSING) for r in rows]
    return [r.get(key, _MISSING) for r in rows]


# ----------------------------------------------------------------------------- the columns
@dataclass(frozen=True, eq=False)
class WholeBodyColumns:
    """A COCO-WholeBody annotation file as columns, in file order (I images, N annotations, C categories).

    Attributes:
        source: the file (or ``"<ground truth>"``), used in messages.
        image_ids: (I,) int64.
        file_names: (I,) bytes (``S``), UTF-8, relative to the image folder (empty where absent).
        widths, heights: (I,) int64 image size (0 where absent).
        image_present: (I, 3) bool: ``file_name``, ``width``, ``height`` present.
        category_ids: (C,) int64 of the ``categories`` list (empty when the file has none).
        has_categories: (,) bool array: the file has a ``categories`` list.
        ann_ids, image_id, category_id: (N,) int64 (``category_id`` -1 where absent).
        image_index: (N,) int64 index of the annotation's image in ``image_ids``; -1 if not listed.
        iscrowd: (N,) bool; area: (N,) float64; num_keypoints: (N,) int64 (-1 where absent).
        bbox: (N, 4) float64 person box, xywh image px.
        keypoints: (N, K, 3) float64 in the spec's 133-order, the file's pixel indices and visibility.
        labelled: (N, P) int16 labelled keypoints (v > 0) per part of ``PARTS``.
        part_boxes: (N, len(BOX_PARTS), 4) float64 xywh image px (zeros where absent).
        flags: (N, len(FLAG_PARTS)) bool the file's ``*_valid`` flags (False where absent).
        present: (N, len(fields_of())) bool, which optional fields each annotation carries.
        mapped_from: the cache file the arrays are mapped from ("" when parsed in memory). Pickling
            mapped columns (spawned workers) sends this path, and the receiver maps the file again.
    """

    source: str
    image_ids: np.ndarray
    file_names: np.ndarray
    widths: np.ndarray
    heights: np.ndarray
    image_present: np.ndarray
    category_ids: np.ndarray
    has_categories: np.ndarray
    ann_ids: np.ndarray
    image_id: np.ndarray
    category_id: np.ndarray
    image_index: np.ndarray
    iscrowd: np.ndarray
    area: np.ndarray
    num_keypoints: np.ndarray
    bbox: np.ndarray
    keypoints: np.ndarray
    labelled: np.ndarray
    part_boxes: np.ndarray
    flags: np.ndarray
    present: np.ndarray
    mapped_from: str = ""

    #: parts with a ``*_valid`` flag, in column order of :attr:`flags`
    FLAG_PARTS = ("face", "lefthand", "righthand", "foot")

    # ------------------------------------------------------------------ fields
    @staticmethod
    def fields_of(spec: KeypointSpec = COCO_WHOLEBODY) -> tuple[str, ...]:
        """The optional annotation fields whose presence :attr:`present` records, in its column order."""
        return (("category_id", "iscrowd", "area", "num_keypoints", "bbox")
                + tuple(spec.annotation_keys[p] for p in PARTS)
                + tuple(spec.box_keys[p] for p in BOX_PARTS)
                + tuple(spec.valid_keys[p] for p in WholeBodyColumns.FLAG_PARTS))

    def present_field(self, key: str, spec: KeypointSpec = COCO_WHOLEBODY) -> np.ndarray:
        """(N,) bool: which annotations carry field ``key``."""
        return self.present[:, self.fields_of(spec).index(key)]

    def flag(self, part: str) -> np.ndarray:
        """(N,) bool: the file's ``<part>_valid`` flag."""
        return self.flags[:, self.FLAG_PARTS.index(part)]

    @property
    def num_annotations(self) -> int:
        return int(self.ann_ids.shape[0])

    @property
    def num_images(self) -> int:
        return int(self.image_ids.shape[0])

    def file_name(self, i: int) -> str:
        """The ``file_name`` of image ``i`` (an index into :attr:`image_ids`)."""
        return bytes(self.file_names[i]).decode("utf-8")

    def record_name(self, i: int) -> str:
        """How messages name annotation ``i``."""
        return f"annotation id {int(self.ann_ids[i])} (#{i}, image_id {int(self.image_id[i])})"

    # ------------------------------------------------------------------ the shared part-box rule
    def part_box_positive(self) -> np.ndarray:
        """(N, len(BOX_PARTS)) bool: the part box has a positive width and height."""
        return (self.part_boxes[..., 2] > 0) & (self.part_boxes[..., 3] > 0)

    def part_box_flags(self) -> np.ndarray:
        """(N, len(BOX_PARTS)) bool: the file's valid flags of the box parts."""
        return self.flags[:, [self.FLAG_PARTS.index(p) for p in BOX_PARTS]]

    def part_box_usable(self) -> np.ndarray:
        """(N, len(BOX_PARTS)) bool: flagged valid and with area: the one rule for a usable part box."""
        return self.part_box_flags() & self.part_box_positive()

    def degenerate_part_boxes(self) -> np.ndarray:
        """(N, len(BOX_PARTS)) bool: flagged valid but without area (every consumer counts these)."""
        return self.part_box_flags() & ~self.part_box_positive()

    # ------------------------------------------------------------------ arrays (the cache's payload)
    @classmethod
    def array_names(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.name not in ("source", "mapped_from")]

    def arrays(self) -> dict[str, np.ndarray]:
        return {n: getattr(self, n) for n in self.array_names()}

    @classmethod
    def from_arrays(cls, source: str, arrays: Mapping[str, np.ndarray], mapped_from: str = "") -> WholeBodyColumns:
        names = cls.array_names()
        missing = [n for n in names if n not in arrays]
        if missing:
            raise KeyError(f"columns missing: {missing}")
        return cls(source=source, mapped_from=mapped_from, **{n: arrays[n] for n in names})

    @classmethod
    def mapped(cls, path: str | os.PathLike, source: str, digest: str | None = None,
               reader_version: int | None = None) -> WholeBodyColumns:
        """The columns memory-mapped (read-only) from the column file ``path``; :class:`CorruptCacheError`
        when it is not a complete, intact column file, was written by another reader version than
        ``reader_version`` (default :data:`READER_VERSION`) or (with ``digest``) for a source of other
        content, or when its columns break a rule the reader guarantees (:func:`columns_problem`: a
        dtype, a shape, a NaN, an index out of range), whatever its checksums say."""
        from wholebody.column_file import CorruptCacheError, map_columns

        arrays, meta = map_columns(path)
        version = READER_VERSION if reader_version is None else reader_version
        if meta.get("reader_version") != version or (digest is not None and meta.get("source_sha256") != digest):
            raise CorruptCacheError(f"{path}: written for another source or reader version")
        k = meta.get("num_keypoints")
        problem = columns_problem(arrays, k) if type(k) is int else f"num_keypoints {k!r} in its header"
        if problem:
            raise CorruptCacheError(f"{path}: {problem}")
        return cls.from_arrays(source, arrays, mapped_from=str(path))

    def __reduce__(self):
        if self.mapped_from:
            return WholeBodyColumns.mapped, (self.mapped_from, self.source)
        return object.__reduce__(self)


def _all_finite(a: np.ndarray, block: int = 1 << 20) -> bool:
    flat = a.reshape(-1)
    return all(np.isfinite(flat[i : i + block]).all() for i in range(0, flat.size, block))


def columns_problem(arrays: Mapping[str, np.ndarray], num_keypoints: int) -> str | None:
    """What makes ``arrays`` other than the columns :func:`read_wholebody` returns for a spec of
    ``num_keypoints`` keypoints (None when nothing): a missing or extra column, a dtype other than the
    reader's (byte order included), a shape that does not agree across columns, a value the reader
    refuses (NaN / inf, a negative box size, visibility or area, a bool that is not 0 / 1, a duplicate
    id, an ``image_index`` that does not point at the annotation's image). Reads every array once (about
    0.2 s for the columns of the 1.4 GB training file)."""
    names = WholeBodyColumns.array_names()
    if sorted(arrays) != sorted(names):
        return f"columns {sorted(arrays)}, expected {sorted(names)}"
    i, n, c = (int(arrays[k].shape[0]) if arrays[k].ndim else -1 for k in ("image_ids", "ann_ids", "category_ids"))
    i64, f64, b1 = np.dtype(np.int64), np.dtype(np.float64), np.dtype(bool)
    want = {"image_ids": (i64, (i,)), "widths": (i64, (i,)), "heights": (i64, (i,)),
            "image_present": (b1, (i, 3)), "category_ids": (i64, (c,)), "has_categories": (b1, ()),
            "ann_ids": (i64, (n,)), "image_id": (i64, (n,)), "category_id": (i64, (n,)),
            "image_index": (i64, (n,)), "iscrowd": (b1, (n,)), "area": (f64, (n,)),
            "num_keypoints": (i64, (n,)), "bbox": (f64, (n, 4)), "keypoints": (f64, (n, num_keypoints, 3)),
            "labelled": (np.dtype(np.int16), (n, len(PARTS))), "part_boxes": (f64, (n, len(BOX_PARTS), 4)),
            "flags": (b1, (n, len(WholeBodyColumns.FLAG_PARTS))),
            "present": (b1, (n, len(WholeBodyColumns.fields_of())))}
    for name, (dt, shape) in want.items():
        a = arrays[name]
        if a.dtype != dt or a.shape != shape:
            return f"column {name!r} is {a.dtype.str} {a.shape}, expected {dt.str} {shape}"
        if dt == b1 and a.size and a.view(np.uint8).max() > 1:
            return f"column {name!r} holds a bool that is not 0 or 1"
    fn = arrays["file_names"]
    if fn.dtype.kind != "S" or fn.shape != (i,):
        return f"column 'file_names' is {fn.dtype.str} {fn.shape}, expected bytes ({i},)"
    for name in ("area", "bbox", "keypoints", "part_boxes"):
        if not _all_finite(arrays[name]):
            return f"column {name!r} holds NaN or inf"
    negative = {"area": arrays["area"], "bbox size": arrays["bbox"][:, 2:], "keypoint visibility":
                arrays["keypoints"][..., 2], "part box size": arrays["part_boxes"][..., 2:],
                "labelled count": arrays["labelled"], "image size": np.concatenate([arrays["widths"], arrays["heights"]])}
    for what, a in negative.items():
        if a.size and a.min() < 0:
            return f"negative {what}"
    if n and arrays["num_keypoints"].min() < -1:
        return "num_keypoints below -1"
    for name in ("image_ids", "ann_ids"):
        if (np.diff(np.sort(arrays[name])) == 0).any():  # (np.unique: 10x slower here)
            return f"duplicate ids in {name!r}"
    index = arrays["image_index"]
    if n and (index.min() < -1 or index.max() >= i):
        return "'image_index' out of range"
    linked = index >= 0
    if (arrays["image_ids"][index[linked]] != arrays["image_id"][linked]).any():
        return "'image_index' does not point at the annotation's image"
    return None


# ----------------------------------------------------------------------------- parsing
#: Files at least this large are parsed in batches of annotations (:func:`_read_in_batches`).
BATCHED_MIN_BYTES = 64 << 20
#: Annotations per batch.
BATCH_ANNOTATIONS = 20_000


def read_wholebody(path: str | os.PathLike, spec: KeypointSpec = COCO_WHOLEBODY) -> WholeBodyColumns:
    """Parse a COCO-WholeBody annotation file into :class:`WholeBodyColumns`.

    A large file (:data:`BATCHED_MIN_BYTES`) is parsed ``BATCH_ANNOTATIONS`` annotations at a time: the
    Python objects of one batch exist at once, not those of the whole file (for the 1.4 GB training file,
    a peak of about the file's size plus the columns instead of several times the file). A file the batch
    path cannot split, or whose batches do not parse, is read whole, which gives the precise error.
    """
    with gc_paused():
        try:
            large = os.path.getsize(path) >= BATCHED_MIN_BYTES
        except OSError:  # read_json says what is wrong with the file
            large = False
        if large:
            cols = _read_in_batches(Path(path), spec)
            if cols is not None:
                return cols
        data = read_json(path)
        return parse_wholebody(data, str(path), spec, consume=True)


def _read_in_batches(path: Path, spec: KeypointSpec) -> WholeBodyColumns | None:
    """The columns of ``path``, its ``annotations`` array parsed in batches; None if it cannot be split.

    The result is always the whole-file parse's: the array the byte scan found is replaced by a random
    string and the rest of the file parsed, so the scan's array must be the one a full parse reads as
    ``annotations`` (not a key like ``"x\\"annotations"``, an ``annotations`` inside a string or another
    object, or the first of two); each batch is parsed by orjson with its count of elements, and the bytes
    between batches must be exactly one comma (and JSON whitespace). Invalid JSON anywhere gives None,
    and the whole-file path then says what is wrong. A record's error is raised only once every batch
    has parsed, so that a file with a bad record *and* invalid JSON gets the whole-file path's message.
    """
    import mmap

    import orjson

    source = str(path)
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        span = _array_elements(mm, b"annotations")
        if span is None:
            return None
        start, end, firsts, lasts = span
        sentinel = os.urandom(16).hex()
        try:
            rest = mm[:start] + b'"' + sentinel.encode() + b'"' + mm[end + 1 :]
            if not room_to_parse(len(rest)):  # (orjson may crash, not raise, when an allocation fails)
                raise out_of_memory(path, len(mm), "reading it in batches")
            data = orjson.loads(rest)
            del rest
        except orjson.JSONDecodeError:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("images"), list) or data.get("annotations") != sentinel:
            return None
        n = len(firsts)
        if not _batches_tile(mm, start, end, firsts, lasts, BATCH_ANNOTATIONS):
            return None  # something outside the batches' elements (what orjson reads of each batch)
        deferred: AnnotationError | None = None  # a record's error, raised once all of the JSON parsed
        try:
            head = _parse_head(data, source)
        except AnnotationError as e:
            deferred = e
        del data
        cols = _AnnotationColumns(n, source, spec) if deferred is None else None
        for lo in range(0, n, BATCH_ANNOTATIONS):
            hi = min(lo + BATCH_ANNOTATIONS, n)
            text = b"[" + mm[int(firsts[lo]) : int(lasts[hi - 1]) + 1] + b"]"
            if not room_to_parse(len(text)):
                raise out_of_memory(path, len(mm), "reading it in batches")
            try:
                batch = orjson.loads(text)
            except orjson.JSONDecodeError:
                return None
            del text
            if len(batch) != hi - lo:
                return None
            if cols is not None:
                try:
                    cols.add(batch, lo, consume=True)
                except AnnotationError as e:
                    deferred, cols = e, None
            del batch
        if deferred is not None:
            raise deferred
        return cols.finish(head)
    finally:
        mm.close()


#: JSON's whitespace (``bytes.strip()`` would also take vertical tab and form feed, which JSON does not).
_JSON_SPACE = b" \t\n\r"
_BRACKETS = np.zeros(256, bool)
_BRACKETS[[ord(c) for c in "{}[]"]] = True
#: Bytes per block of the scan (its temporary arrays are a few times this).
SCAN_BLOCK = 1 << 24


def _batches_tile(buf, start: int, end: int, firsts: np.ndarray, lasts: np.ndarray, step: int) -> bool:
    """Whether the array ``buf[start..end]`` (as :func:`_array_elements` found it) is exactly its elements
    parsed ``step`` at a time: the bytes outside those batches are JSON whitespace, and one comma between
    two batches. An array without elements must hold only whitespace (elements that are not objects or
    arrays: the whole-file path names them)."""
    def only(lo: int, hi: int, what: bytes) -> bool:  # the bytes lo..hi are ``what`` (and JSON whitespace)
        return buf[lo:hi].strip(_JSON_SPACE) == what

    n = len(firsts)
    if n == 0:
        return only(start + 1, end, b"")
    return (only(start + 1, int(firsts[0]), b"") and only(int(lasts[-1]) + 1, end, b"")
            and all(only(int(lasts[lo - 1]) + 1, int(firsts[lo]), b",") for lo in range(step, n, step)))


def _array_elements(buf, key: bytes | None) -> tuple[int, int, np.ndarray, np.ndarray] | None:
    """Locate the array value of the top-level ``key`` of the JSON object in ``buf``: (offset of its
    ``[``, offset of its ``]``, offsets of the first and of the last byte of each of its elements, which
    must be objects or arrays), found with a vectorised scan of the brackets that follows strings (and
    escaped quotes in them); None if there is no such array. ``key=None``: the top-level value itself,
    which must be the only array at the top level (a results file)."""
    data = np.frombuffer(buf, np.uint8)
    # carried across blocks: inside a string, nesting depth, trailing backslashes; for the top-level array the
    # depth starts at 1, so that it is found where a key's array would be
    in_str, depth, run = 0, int(key is None), 0
    found: dict[str, list[np.ndarray]] = {"open1": [], "close1": [], "open2": [], "close2": []}
    for o in range(0, len(data), SCAN_BLOCK):
        b = data[o : o + SCAN_BLOCK]
        q = np.flatnonzero(b == 34)
        slash = b == 92
        if slash.any() or run:  # a quote is escaped by an odd run of backslashes right before it
            idx = np.arange(len(b), dtype=np.int32)
            last = np.maximum.accumulate(np.where(slash, -1, idx))  # last non-backslash at or before i
            before = q - 1
            lnb = np.where(before >= 0, last[np.maximum(before, 0)], -1)
            runs = np.where(lnb >= 0, before - lnb, before + 1 + run)
            quotes = q[runs % 2 == 0]
            run = (len(b) - 1 - int(last[-1])) + (run if last[-1] < 0 else 0)
        else:
            quotes = q
        pos = np.flatnonzero(_BRACKETS[b])
        pos = pos[(np.searchsorted(quotes, pos) + in_str) % 2 == 0]  # outside strings
        ch = b[pos]
        opening = (ch == 123) | (ch == 91)
        after = depth + np.cumsum(np.where(opening, 1, -1))
        before_d = after - np.where(opening, 1, -1)
        found["open1"].append(o + pos[(ch == 91) & (before_d == 1)])
        found["close1"].append(o + pos[(ch == 93) & (after == 1)])
        found["open2"].append(o + pos[opening & (before_d == 2)])
        found["close2"].append(o + pos[~opening & (after == 2)])
        if len(after):
            depth = int(after[-1])
        in_str = (in_str + len(quotes)) % 2
    open1, close1, open2, close2 = (np.concatenate(v) for v in found.values())
    if len(open1) != len(close1) or len(open2) != len(close2):
        return None
    if key is None:
        if len(open1) != 1:
            return None
        lo, hi = np.searchsorted(open2, [open1[0], close1[0]])
        return int(open1[0]), int(close1[0]), open2[lo:hi], close2[lo:hi]
    pattern = b'"' + key + b'"'
    for p, e in zip(open1.tolist(), close1.tolist()):
        head = bytes(buf[max(0, p - len(pattern) - 64) : p]).rstrip()
        if head.endswith(b":") and head[:-1].rstrip().endswith(pattern):
            lo, hi = np.searchsorted(open2, [p, e])
            return p, e, open2[lo:hi], close2[lo:hi]
    return None


def parse_wholebody(
    data: Any, source: str = "<ground truth>", spec: KeypointSpec = COCO_WHOLEBODY, *, consume: bool = False
) -> WholeBodyColumns:
    """Turn a loaded annotation object into :class:`WholeBodyColumns`.

    ``consume``: pop the fields out of the annotation dicts as they are read (only for data the caller
    owns and drops afterwards); otherwise ``data`` is not modified.
    """
    if not isinstance(data, Mapping):
        raise AnnotationError(source, f"top level is not a JSON object (got {type(data).__name__}); "
                              "not a COCO annotation file?")
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise AnnotationError(source, f"no {key!r} list at the top level (not a COCO annotation file?)")
    with gc_paused():
        head = _parse_head(data, source)
        anns = data["annotations"]
        cols = _AnnotationColumns(len(anns), source, spec)
        for lo in range(0, len(anns), BATCH_ANNOTATIONS):  # the batched reader's batches: the same first error
            cols.add(anns[lo : lo + BATCH_ANNOTATIONS], lo, consume)
        return cols.finish(head)


def _parse_head(data: Mapping, source: str) -> dict[str, Any]:
    """The images and categories of an annotation object, as columns."""
    # images
    images = data["images"]
    for i, im in enumerate(images):
        if not isinstance(im, dict):
            raise AnnotationError(source, "not a JSON object", f"image entry #{i}")
    inames = _Names(source, "image entry")
    raw_ids = _take(images, "id", False)
    for i, v in enumerate(raw_ids):
        if v is not _MISSING and not is_json_int(v):
            raise inames.error(i, f"id, width and height must be integers, got id {v!r}")
    image_ids, present = _integers(raw_ids, "id", inames)
    if not present.all():
        raise inames.error(int(np.argmin(present)), "missing field 'id'")
    inames = _Names(source, "image entry", image_ids)
    uniq, first = np.unique(image_ids, return_index=True)
    if len(uniq) != len(image_ids):
        dup = np.setdiff1d(np.arange(len(image_ids)), first)[0]
        raise inames.error(int(dup), "duplicate image id")
    sizes = []
    for key in ("width", "height"):
        vals = _take(images, key, False)
        ints = [0 if v is _MISSING else json_id(v) for v in vals]
        for i, s in enumerate(ints):
            if s is None or not -(2**63) <= s < 2**63:  # (an int64 column)
                raise inames.error(i, f"id, width and height must be integers, got {key} {vals[i]!r}")
        for i, s in enumerate(ints):
            if s <= 0 and vals[i] is not _MISSING:
                raise inames.error(i, f"image size {s} ({key}) is not positive")
        pres = np.fromiter((v is not _MISSING for v in vals), bool, len(vals))
        sizes.append((np.array(ints, dtype=np.int64), pres))
    names = _take(images, "file_name", False)
    encoded = []
    for i, v in enumerate(names):
        if v is _MISSING:
            encoded.append(b"")
            continue
        if not isinstance(v, str):
            raise inames.error(i, f"'file_name' must be a string, got {v!r}")
        try:
            encoded.append(relative_file_name(v).encode("utf-8"))
        except ValueError as e:
            raise inames.error(i, str(e)) from None
    file_names = np.array(encoded, dtype=np.bytes_) if encoded else np.zeros(0, "S1")
    name_present = np.fromiter((v is not _MISSING for v in names), bool, len(names))
    image_present = np.stack([name_present, sizes[0][1], sizes[1][1]], axis=1).reshape(-1, 3)

    # categories
    cats = data.get("categories")
    has_categories = isinstance(cats, list)
    if "categories" in data and not has_categories:  # (read as "no categories" before: a silent fallback)
        raise AnnotationError(source, f"'categories' must be a list, got {type(cats).__name__}")
    if has_categories:
        for i, c in enumerate(cats):
            if not isinstance(c, dict) or "id" not in c:
                raise AnnotationError(source, "needs an 'id'", f"category entry #{i}")
        category_ids, _ = _integers(_take(cats, "id", False), "id", _Names(source, "category entry"))
    else:
        category_ids = np.zeros(0, np.int64)

    return {"image_ids": image_ids, "file_names": file_names, "widths": sizes[0][0], "heights": sizes[1][0],
            "image_present": image_present, "category_ids": category_ids, "has_categories": np.array(has_categories)}


class _AnnotationColumns:
    """The annotation columns of a file, filled batch by batch (:meth:`add`), then checked across the
    whole file and combined with the images (:meth:`finish`)."""

    def __init__(self, n: int, source: str, spec: KeypointSpec):
        self.n, self.source, self.spec = n, source, spec
        self.fields = WholeBodyColumns.fields_of(spec)
        self.ann_ids = np.zeros(n, np.int64)
        self.image_id = np.zeros(n, np.int64)
        self.category_id = np.zeros(n, np.int64)
        self.iscrowd = np.zeros(n, bool)
        self.area = np.zeros(n)
        self.num_keypoints = np.zeros(n, np.int64)
        self.bbox = np.zeros((n, 4))
        self.keypoints = np.zeros((n, spec.num_keypoints, 3))
        self.labelled = np.zeros((n, len(PARTS)), np.int16)
        self.part_boxes = np.zeros((n, len(BOX_PARTS), 4))
        self.flags = np.zeros((n, len(WholeBodyColumns.FLAG_PARTS)), bool)
        self.present = np.zeros((n, len(self.fields)), bool)

    def add(self, anns: list, offset: int, consume: bool) -> None:
        """Read the annotations ``anns`` (records ``offset`` .. of the file) into their rows."""
        spec, source = self.spec, self.source
        m = len(anns)
        rows = slice(offset, offset + m)
        for i, a in enumerate(anns):
            if not isinstance(a, dict):
                raise AnnotationError(source, "not a JSON object", f"annotation #{i + offset}")
            if consume:  # not read: free it now (segmentation polygons are a good part of a file)
                a.pop("segmentation", None)
        anames = _Names(source, "annotation", offset=offset)
        ann_ids, pres = _integers(_take(anns, "id", False), "id", anames)
        if not pres.all():
            raise anames.error(int(np.argmin(pres)), "missing field 'id' (not a COCO annotation file?)")
        anames = _Names(source, "annotation", ann_ids, offset=offset)
        image_id, pres = _integers(_take(anns, "image_id", False), "image_id", anames)
        if not pres.all():
            raise anames.error(int(np.argmin(pres)), "missing field 'image_id'")
        anames = _Names(source, "annotation", ann_ids, image_id, offset=offset)
        self.ann_ids[rows], self.image_id[rows] = ann_ids, image_id

        present = self.present[rows]  # a view: the assignments below fill self.present
        col = self.fields.index
        self.category_id[rows], present[:, col("category_id")] = _integers(
            _take(anns, "category_id", consume), "category_id", anames)
        self.iscrowd[rows], present[:, col("iscrowd")] = _flags(_take(anns, "iscrowd", consume), "iscrowd", anames)
        area, present[:, col("area")] = _scalars(_take(anns, "area", consume), "area", anames)
        if (area < 0).any():
            raise anames.error(int(np.argmax(area < 0)), "negative 'area'")
        self.area[rows] = area
        num, p = _integers(_take(anns, "num_keypoints", consume), "num_keypoints", anames)
        present[:, col("num_keypoints")] = p
        if (p & (num < 0)).any():
            i = int(np.argmax(p & (num < 0)))
            raise anames.error(i, f"'num_keypoints' must be a count, got {int(num[i])}")
        self.num_keypoints[rows] = num
        bbox, present[:, col("bbox")] = _vectors(_take(anns, "bbox", consume), "bbox", 4, anames)
        if (bbox[:, 2:] < 0).any():
            raise anames.error(int(np.argmax((bbox[:, 2:] < 0).any(1))), "'bbox' has a negative width or height")
        self.bbox[rows] = bbox
        for j, part in enumerate(PARTS):
            key, k = spec.annotation_keys[part], spec.num_part(part)
            arr, present[:, col(key)] = _vectors(_take(anns, key, consume), key, 3 * k, anames)
            arr = arr.reshape(m, k, 3)
            neg = (arr[..., 2] < 0).any(1)
            if neg.any():
                i = int(np.argmax(neg))
                name = spec.names[spec.slice(part).start + int(np.argmax(arr[i, :, 2] < 0))]
                raise anames.error(i, f"negative visibility in {key!r} (keypoint {name})")
            self.keypoints[rows, spec.slice(part)] = arr
            self.labelled[rows, j] = (arr[..., 2] > 0).sum(1)
            del arr
        for j, part in enumerate(BOX_PARTS):
            key = spec.box_keys[part]
            box, present[:, col(key)] = _vectors(_take(anns, key, consume), key, 4, anames)
            if (box[:, 2:] < 0).any():
                raise anames.error(int(np.argmax((box[:, 2:] < 0).any(1))), f"{key!r} has a negative width or height")
            self.part_boxes[rows, j] = box
        for j, part in enumerate(WholeBodyColumns.FLAG_PARTS):
            key = spec.valid_keys[part]
            self.flags[rows, j], present[:, col(key)] = _flags(_take(anns, key, consume), key, anames)

    def finish(self, head: Mapping[str, Any]) -> WholeBodyColumns:
        """Checks across the file (unique ids, the annotations' images) and the columns."""
        n, image_ids = self.n, head["image_ids"]
        uniq, first = np.unique(self.ann_ids, return_index=True)
        if len(uniq) != n:
            dup = int(np.setdiff1d(np.arange(n), first)[0])
            raise _Names(self.source, "annotation", self.ann_ids, self.image_id).error(dup, "duplicate annotation id")
        order = np.argsort(image_ids, kind="stable")
        if len(image_ids):
            pos = np.minimum(np.searchsorted(image_ids[order], self.image_id), len(image_ids) - 1)
            image_index = np.where(image_ids[order][pos] == self.image_id, order[pos], -1).astype(np.int64)
        else:
            image_index = np.full(n, -1, np.int64)
        return WholeBodyColumns(
            source=self.source, **head, ann_ids=self.ann_ids, image_id=self.image_id, category_id=self.category_id,
            image_index=image_index, iscrowd=self.iscrowd, area=self.area, num_keypoints=self.num_keypoints,
            bbox=self.bbox, keypoints=self.keypoints, labelled=self.labelled, part_boxes=self.part_boxes,
            flags=self.flags, present=self.present,
        )


# ----------------------------------------------------------------------------- detection files
@dataclass(frozen=True, eq=False)
class DetectionFile:
    """A COCO ``bbox`` results file (a JSON list of ``{image_id, category_id, bbox, score}``), D entries in
    file order; the entry's index is its ``bbox_id``.

    Attributes:
        source: the file.
        image_id, category_id: (D,) int64.
        bbox: (D, 4) float64 xywh image px.
        score: (D,) float64.
    """

    source: str
    image_id: np.ndarray
    category_id: np.ndarray
    bbox: np.ndarray
    score: np.ndarray

    def __len__(self) -> int:
        return int(self.image_id.shape[0])


def read_detections(path: str | os.PathLike) -> DetectionFile:
    """Read a detection results file. Rules: every entry is an object with ``image_id`` (an integer, or a
    float with an integral value), ``category_id`` (an integer), ``bbox`` (4 finite numbers, width and
    height >= 0) and ``score`` (a finite number), the fields of COCO's results format.

    Raises:
        AnnotationError: naming the file and the entry (``detection #i (image_id ...)``).
    """
    source = str(path)
    dets = read_json(path)
    if not isinstance(dets, list):
        raise AnnotationError(source, "a detection results file must hold a JSON list")
    for i, d in enumerate(dets):
        if not isinstance(d, dict):
            raise AnnotationError(source, "not a JSON object", f"detection #{i}")
        missing = [k for k in ("image_id", "category_id", "bbox", "score") if k not in d]
        if missing:
            raise AnnotationError(source, f"missing field(s) {missing}", f"detection #{i}")
    raw_ids = [d["image_id"] for d in dets]
    ids = [json_id(v) for v in raw_ids]
    names = _Names(source, "detection", image_ids=raw_ids)
    for i, v in enumerate(ids):
        if v is None or not -(2**63) <= v < 2**63:  # (an int64 column)
            raise names.error(i, f"'image_id' must be an integer, got {raw_ids[i]!r}")
    image_id = np.array(ids, dtype=np.int64).reshape(len(dets))
    bbox, _ = _vectors([d["bbox"] for d in dets], "bbox", 4, names)
    score, _ = _scalars([d["score"] for d in dets], "score", names)
    category_id, _ = _integers([d["category_id"] for d in dets], "category_id", names)
    if (bbox[:, 2:] < 0).any():
        raise names.error(int(np.argmax((bbox[:, 2:] < 0).any(1))), "'bbox' has a negative width or height")
    return DetectionFile(source, image_id, category_id, bbox, score)
