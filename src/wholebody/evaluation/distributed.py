"""Gathering result rows from every process and removing the duplicates of padded samplers.

A distributed sampler pads the dataset so that every process gets the same number of samples;
the padding repeats samples, whose rows then appear twice. Each row is identified by its
*person key*:

* ``(image_id, "ann_id", ann_id)`` when the row carries ``ann_id`` - top-down evaluation on
  ground-truth boxes, one crop per annotation;
* ``(image_id, "bbox_id", bbox_id)`` when it carries ``bbox_id`` - top-down evaluation on
  detector boxes, the index of the box in the detection file (unique per box);
* rows with neither (or only a negative placeholder such as ``ann_id: -1``) have no key; they
  are all kept (so rows must carry one of the two fields for de-duplication to work).

The first row of each key is kept, and the result is sorted by key (rows without key follow in
gathered order), so it is the same whatever the number of processes: call :func:`gather_results`
in single-process runs too (it then only de-duplicates and sorts) and the stats agree exactly.

With a process group the rows travel to rank 0 only, as columns of arrays (:func:`pack_rows`), and
only rank 0 gets them back; the other ranks get an empty list (and take the stats from rank 0).

torch is never imported here: :func:`gather_results` uses ``torch.distributed`` only when the
caller has already loaded it (a process group cannot exist otherwise).
"""

from __future__ import annotations

import numbers
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

#: Row fields that identify a person, in order of preference.
KEY_FIELDS: tuple[str, ...] = ("ann_id", "bbox_id")


def result_key(row: Mapping[str, Any]) -> tuple | None:
    """The person key of a result row, or ``None`` if it carries no usable ``ann_id`` / ``bbox_id``
    (a key must be an integer >= 0: a placeholder such as ``ann_id: -1`` does not count)."""
    for f in KEY_FIELDS:
        v = row.get(f)
        if isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 0:
            return (row["image_id"], f, int(v))
    return None


def dedupe_results(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Keep the first row of each person key; keyed rows sorted by key, then the unkeyed ones."""
    seen: dict[tuple, Mapping[str, Any]] = {}
    loose: list[Mapping[str, Any]] = []
    for r in rows:
        k = result_key(r)
        if k is None:
            loose.append(r)
        elif k not in seen:
            seen[k] = r
    keyed = [seen[k] for k in sorted(seen)]
    return keyed + loose


def pack_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, dict[str, np.ndarray]]]:
    """Result rows -> columns: one ``{"columns": {field: array}}`` per group of rows with the same fields (in
    order of first appearance), each array stacking that field over the group's rows (numbers keep their dtype:
    float64 coordinates stay exact). Far smaller and faster to send than the dicts; :func:`unpack_rows`
    is the inverse."""
    groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(sorted(r)), []).append(r)
    out = []
    for keys, group in groups.items():
        cols = {}
        for k in keys:
            vals = [r[k] for r in group]
            arr = np.asarray(vals)
            if arr.dtype.hasobject or arr.shape[:1] != (len(group),):
                arr = np.empty(len(group), dtype=object)
                arr[:] = vals
            cols[k] = arr
        out.append({"columns": cols})
    return out


def unpack_rows(packed: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The rows :func:`pack_rows` packed (lists and Python numbers again)."""
    rows: list[dict[str, Any]] = []
    for group in packed:
        cols = group["columns"]
        as_lists = {k: v.tolist() for k, v in cols.items()}
        rows.extend(dict(zip(as_lists, vals)) for vals in zip(*as_lists.values()))
    return rows


def gather_results(rows: Iterable[Mapping[str, Any]], group: Any = None, dst: int = 0) -> list[Mapping[str, Any]]:
    """All processes' rows, de-duplicated and sorted (see the module docstring), on rank ``dst`` only.

    With a process group every rank sends its rows as columns (:func:`pack_rows`) to rank ``dst``
    (``torch.distributed.gather_object``); that rank gets the full list, every other rank an empty one:
    no other rank ever holds the gathered results. Without a process group it just de-duplicates ``rows``.
    """
    rows = list(rows)
    dist = _distributed()
    if dist is None or not dist.is_initialized() or dist.get_world_size(group) == 1:
        return dedupe_results(rows)
    world = dist.get_world_size(group)
    rank = dist.get_rank(group)
    parts: list[Any] | None = [None] * world if rank == dst else None
    dist.gather_object(pack_rows(rows), parts, dst=dst, group=group)
    if rank != dst:
        return []
    return dedupe_results(r for part in parts for r in unpack_rows(part or ()))


def _distributed() -> Any:
    """``torch.distributed`` when a process group could exist, else ``None``.

    A process group can only have been initialised by code that imported torch, so when torch is
    not loaded there is nothing to gather and torch is not imported (it costs seconds).
    """
    if "torch.distributed" not in sys.modules:
        return None
    import torch.distributed as dist

    return dist if dist.is_available() else None
