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

torch is never imported here: :func:`gather_results` uses ``torch.distributed`` only when the
caller has already loaded it (a process group cannot exist otherwise).
"""

from __future__ import annotations

import numbers
import sys
from collections.abc import Iterable, Mapping
from typing import Any

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
    keyed = [seen[k] for k in sorted(seen, key=_sortable)]
    return keyed + loose


def _sortable(key: tuple) -> tuple:
    image_id, field, value = key
    return (image_id, field, value)


def gather_results(rows: Iterable[Mapping[str, Any]], group: Any = None) -> list[Mapping[str, Any]]:
    """All processes' rows, de-duplicated and sorted (see the module docstring).

    Uses ``torch.distributed.all_gather_object`` when a process group is initialised (every
    process receives the full list); otherwise it just de-duplicates ``rows``.
    """
    rows = list(rows)
    dist = _distributed()
    if dist is None or not dist.is_initialized():
        return dedupe_results(rows)
    world = dist.get_world_size(group)
    parts: list[Any] = [None] * world
    dist.all_gather_object(parts, rows, group=group)
    return dedupe_results(r for part in parts for r in (part or ()))


def _distributed() -> Any:
    """``torch.distributed`` when a process group could exist, else ``None``.

    A process group can only have been initialised by code that imported torch, so when torch is
    not loaded there is nothing to gather and torch is not imported (it costs seconds).
    """
    if "torch.distributed" not in sys.modules:
        return None
    import torch.distributed as dist

    return dist if dist.is_available() else None
