"""Checkpoints that a kill or a full disk cannot destroy, and a resume that finds an intact one.

Lightning's own writer goes through fsspec, which writes a temporary file in ``$TMPDIR`` and moves it
into place; when the run folder is on another filesystem (the usual case on clusters) the move is a
copy into the destination, so a kill during it truncates ``last.ckpt`` and orphans the temporary file.
:class:`AtomicCheckpointIO` (the Trainer's checkpoint-IO plugin, set by ``train(cfg)``) writes every
checkpoint as a temporary file in the destination folder, fsyncs it, renames it over the target (an
atomic step on one filesystem) and fsyncs the folder; on an error (a full disk) the temporary file is
removed and the previous checkpoint is left as it was. A kill leaves at most a hidden
``.<name>.*.tmp`` beside it, which :func:`remove_stale_temporaries` clears at the next start.

:func:`checkpoint_problem` (:mod:`wholebody.models.checkpoint`, which inference uses too) tells an
intact checkpoint from a damaged one without unpickling it (the CRC of every member of the zip
container that ``torch.save`` writes), and :func:`newest_intact`
finds the resume point when ``last.ckpt`` is damaged.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from wholebody.io_utils import TEMP_SUFFIX, write_atomic
from wholebody.models.checkpoint import checkpoint_problem  # the CRC check, shared with inference

__all__ = ["AtomicCheckpointIO", "checkpoint_problem", "newest_intact", "remove_stale_temporaries"]

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose saves are atomic and durable in the destination folder, and whose
    loads (resume, the best checkpoint after fit) are ``weights_only=True`` unless a caller says otherwise."""

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        kwargs = {} if map_location is None else {"map_location": map_location}
        return super().load_checkpoint(path, weights_only=True if weights_only is None else weights_only, **kwargs)

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        try:
            write_atomic(path, lambda f: torch.save(checkpoint, f), durable=True)
        except (OSError, RuntimeError) as e:
            # torch's zip writer turns a failed write (a full disk) into a RuntimeError of its own; say what failed
            cause = next((c for c in _chain(e) if isinstance(c, OSError) and c.errno), None)
            if cause is None:
                raise
            raise OSError(cause.errno, f"{cause.strerror}: cannot write checkpoint {path} "
                                       "(the previous one, if any, is intact)") from None


def _chain(e: BaseException | None):
    while e is not None:
        yield e
        e = e.__cause__ or e.__context__


def newest_intact(folder: str | Path, exclude: tuple[Path, ...] = ()) -> Path | None:
    """The most recently written intact ``*.ckpt`` in ``folder`` (other than ``exclude``), or None."""
    candidates = [p for p in Path(folder).glob("*.ckpt") if p.is_file() and p not in exclude]
    for p in sorted(candidates, key=lambda q: q.stat().st_mtime, reverse=True):
        if checkpoint_problem(p) is None:
            return p
    return None


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Remove the temporary files an interrupted save left in ``folder`` (hidden ``.*<TEMP_SUFFIX>``);
    returns them. Call it only while no other process writes there (the run folder's lock is held)."""
    removed = []
    for p in Path(folder).glob(f".*{TEMP_SUFFIX}"):
        if p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    if removed:
        log.warning("removed %d temporary file(s) an interrupted save left in %s: %s", len(removed), folder,
                    ", ".join(p.name for p in removed))
    return removed
