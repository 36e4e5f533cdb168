"""Initialise a network from checkpoints of previous training stages.

Staged training (e.g. a BodyNet-only run, then heads-only, then joint) hands weights on through
``init_from``: a list of entries, each a path or a mapping
``{path: ..., modules: [prefixes to take], exclude: [prefixes to skip]}``. A checkpoint is a
Lightning ``.ckpt`` (``state_dict`` with the network under ``net.``) or a plain state dict. Files are
read with ``torch.load(..., weights_only=True)``: no code in a checkpoint is ever run.

For each entry the tensors whose names (after the ``net.`` prefix) exist in the network are copied;
the report names, per top-level sub-module (``feature_net``, ``body_net``, ``face_head``, ...),
what was loaded, which of the network's tensors the checkpoint lacked (missing: they keep their
initialisation) and which checkpoint tensors the network has no place for (unexpected). A checkpoint
sharing no tensor name with the network, or holding a tensor of the wrong shape, is a checkpoint of
another model: that raises a one-line ``ValueError``.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)


@dataclass
class LoadReport:
    """What one checkpoint contributed."""

    path: str
    loaded: dict[str, int] = field(default_factory=dict)  # sub-module -> tensors loaded
    missing: list[str] = field(default_factory=list)  # network tensors of loaded sub-modules absent from the file
    untouched: list[str] = field(default_factory=list)  # sub-modules the file did not provide
    unexpected: list[str] = field(default_factory=list)  # file tensors with no place in the network

    def summary(self) -> str:
        loaded = ", ".join(f"{m} ({n} tensors)" for m, n in self.loaded.items()) or "nothing"
        lines = [f"init_from {self.path}: loaded {loaded}"]
        if self.untouched:
            lines.append(f"  kept their initialisation (not in the checkpoint): {', '.join(self.untouched)}")
        if self.missing:
            lines.append(f"  missing in the checkpoint ({len(self.missing)}): {_short(self.missing)}")
        if self.unexpected:
            lines.append(f"  unexpected, ignored ({len(self.unexpected)}): {_short(self.unexpected)}")
        return "\n".join(lines)


def _short(names: Sequence[str], n: int = 8) -> str:
    return ", ".join(names[:n]) + (f", ... (+{len(names) - n})" if len(names) > n else "")


def checkpoint_problem(path: str | Path) -> str | None:
    """None for a complete checkpoint file, else what is wrong with it (empty, cut short, a bad CRC).

    ``torch.save`` writes a zip archive whose members carry a CRC-32 that ``torch.load`` does not check,
    so a flipped bit that keeps the weights finite would load. This reads the whole file (every member's
    CRC is checked: 0.14 s for the 193 MB checkpoint of the full ``zoomnet`` config, from the page cache,
    one CPU core) but unpickles nothing. Used by resume
    (:mod:`wholebody.training.checkpoint_io`) and by every inference load
    (:func:`wholebody.inference.checkpoint.read_checkpoint`).
    """
    p = Path(path)
    try:
        size = p.stat().st_size
        if size == 0:
            return "empty file"
        with zipfile.ZipFile(p) as z:
            bad = z.testzip()
        return None if bad is None else f"member {bad} fails its CRC check"
    except (OSError, zipfile.BadZipFile, EOFError, ValueError) as e:
        return f"not a complete checkpoint ({str(e).strip() or type(e).__name__})"


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The network's tensors from a Lightning checkpoint (``state_dict``, ``net.`` prefix stripped,
    other prefixes dropped) or a plain state dict, read with ``weights_only=True`` onto the CPU."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"init_from: checkpoint {p} does not exist")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - pickle, zip, EOF, KeyError on a text file: all "not a checkpoint"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"init_from: {p} is not a checkpoint readable with weights_only=True ({first})") from None
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        sd = obj["state_dict"]
        if any(k.startswith("net.") for k in sd):
            sd = {k[len("net.") :]: v for k, v in sd.items() if k.startswith("net.")}
    elif isinstance(obj, Mapping):
        sd = obj
    else:
        raise ValueError(f"init_from: {p} holds a {type(obj).__name__}, not a state dict or a Lightning checkpoint")
    tensors = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ValueError(f"init_from: {p} holds no tensors")
    return tensors


def state_dict_mismatch(own: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor]
                        ) -> tuple[list[str], list[str], list[str]]:
    """How ``given`` tensors fail to fit a module whose state dict is ``own``: (names missing from
    ``given``, names ``own`` has no place for, ``"name (given shape) vs (own shape)"`` for shape
    mismatches). All three empty: a strict load will succeed."""
    missing = [k for k in own if k not in given]
    unexpected = [k for k in given if k not in own]
    bad = [f"{k} {tuple(given[k].shape)} vs {tuple(own[k].shape)}" for k in own
           if k in given and tuple(given[k].shape) != tuple(own[k].shape)]
    return missing, unexpected, bad


def _entry(entry: Any) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    if isinstance(entry, (str, Path)):
        return str(entry), (), ()
    if isinstance(entry, Mapping) and "path" in entry:
        return str(entry["path"]), tuple(entry.get("modules") or ()), tuple(entry.get("exclude") or ())
    raise ValueError(f"init_from entries are paths or {{path, modules, exclude}} mappings, got {entry!r}")


def _match(name: str, prefixes: Sequence[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def load_stage_checkpoints(net: nn.Module, init_from: Sequence[Any]) -> list[LoadReport]:
    """Load each entry of ``init_from`` into ``net`` (later entries override earlier ones).

    Returns one :class:`LoadReport` per entry (also logged at INFO, missing/unexpected at WARNING).
    Raises ``ValueError`` (one line) for a checkpoint of another model and ``FileNotFoundError`` for
    a missing file.
    """
    if isinstance(init_from, (str, Path, Mapping)):
        init_from = [init_from]
    own = net.state_dict()
    top = list(dict.fromkeys(k.split(".")[0] for k in own))
    reports = []
    for entry in init_from:
        path, modules, exclude = _entry(entry)
        sd = read_state_dict(path)
        if modules:
            sd = {k: v for k, v in sd.items() if _match(k, modules)}
        if exclude:
            sd = {k: v for k, v in sd.items() if not _match(k, exclude)}
        common = [k for k in sd if k in own]
        if not common:
            raise ValueError(
                f"init_from: {path} shares no tensor with {type(net).__name__} (its names start with "
                f"{sorted({k.split('.')[0] for k in sd})[:5]}, the network's with {top}); a checkpoint of another model?"
            )
        bad = [f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in common if sd[k].shape != own[k].shape]
        if bad:
            raise ValueError(
                f"init_from: {path} does not fit {type(net).__name__}: {len(bad)} tensor shape(s) differ, e.g. "
                f"{bad[0]}; a checkpoint of another configuration? (skip them with exclude: [...])"
            )
        net.load_state_dict({k: sd[k] for k in common}, strict=False)
        report = LoadReport(path=path)
        for k in common:
            m = k.split(".")[0]
            report.loaded[m] = report.loaded.get(m, 0) + 1
        report.missing = [k for k in own if k.split(".")[0] in report.loaded and k not in sd]
        report.untouched = [m for m in top if m not in report.loaded]
        report.unexpected = [k for k in sd if k not in own]
        log.info("%s", report.summary())
        if report.missing or report.unexpected:
            log.warning("init_from %s: %d missing, %d unexpected tensors (see above)", path,
                        len(report.missing), len(report.unexpected))
        reports.append(report)
    return reports
