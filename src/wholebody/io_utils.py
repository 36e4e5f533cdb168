"""Atomic writes: readers see the old file or the complete new one, and a crash leaves no partial file.

Every output of the package (results, stats, checkpoints' side files, plots, crops, exported models,
overlay images and videos) goes through these helpers. Files get the usual permissions (0666 minus the
process umask), not the 0600 of a bare temporary file. Only the standard library is imported here (orjson
lazily), so light modules such as the evaluator can use it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

_UMASK = os.umask(0)
os.umask(_UMASK)
#: Suffix of the temporary files :func:`write_atomic` writes beside their target (``.<stem>.<random>.tmp``).
TEMP_SUFFIX = ".tmp"


@contextlib.contextmanager
def atomic_target(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for a writer that takes a file name (cv2.VideoWriter,
    an exporter); on success it replaces ``path``, on error it is removed.

    ``suffix``: the temporary file's extension (default: that of ``path``), for writers that infer the
    format from the name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix if suffix is not None else path.suffix or ".tmp",
                               dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], Any], durable: bool = False) -> Path:
    """Write a file through ``write(fileobj)`` into a temporary file beside it, then rename it in place.

    ``durable``: also fsync the data before the rename and the folder after it (survives a power loss,
    not only a crash).
    """
    path = Path(path)
    with atomic_target(path, suffix=TEMP_SUFFIX) as tmp:
        with open(tmp, "wb") as f:
            write(f)
            if durable:
                f.flush()
                os.fsync(f.fileno())
    if durable:  # the rename itself, recorded in the folder
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return path


def write_bytes_atomic(path: str | Path, data: bytes, durable: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return write_atomic(path, lambda f: f.write(data), durable=durable)


def write_json_atomic(path: str | Path, obj: Any, indent: bool = True) -> Path:
    """Serialise ``obj`` as JSON (orjson: numpy arrays and scalars allowed) and write it atomically."""
    import orjson

    opts = orjson.OPT_SERIALIZE_NUMPY | (orjson.OPT_INDENT_2 if indent else 0)
    return write_bytes_atomic(path, orjson.dumps(obj, option=opts) + b"\n")


def link_atomic(target: str | Path, link: str | Path) -> Path:
    """Make ``link`` a symbolic link to ``target`` (relative when both share a folder), replacing any file
    or link there atomically: a reader sees the old file or the new link, never neither."""
    target, link = Path(target), Path(link)
    rel = target.name if target.parent.resolve() == link.parent.resolve() else str(target.resolve())
    tmp = link.with_name(f".{link.name}.{os.getpid()}{TEMP_SUFFIX}")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(rel, tmp)
    os.replace(tmp, link)
    return link


class FolderInUseError(RuntimeError):
    """Another live process holds the output folder (one line: which folder, which process)."""


@contextlib.contextmanager
def folder_lock(folder: str | Path, what: str = "run") -> Iterator[Path]:
    """Hold an exclusive lock on ``folder`` (``flock`` on the folder itself, no file is added to it) for the
    duration of the block; the folder is created if needed.

    A second process asking for the same folder gets :class:`FolderInUseError` at once, naming the
    holder's pid where the system tells it (Linux: ``/proc/locks``); the lock dies with its process (a
    ``kill -9`` frees it), so no stale lock survives. Where the filesystem has no ``flock`` (some network
    mounts) the lock is a no-op, said at WARNING.
    """
    import fcntl
    import logging

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(os.fstat(fd).st_ino)
            who = f"pid {holder}" if holder else "another process"
            raise FolderInUseError(f"{folder} is in use by another {what} ({who}); wait for it to finish "
                                   "or choose another folder") from None
        except OSError as e:  # ENOLCK / ENOTSUP on filesystems without flock
            logging.getLogger(__name__).warning("cannot lock %s (%s): concurrent %ss there are not detected",
                                                folder, e, what)
        yield folder
    finally:
        os.close(fd)  # releases the lock


def _lock_holder(inode: int) -> int | None:
    """The pid holding an exclusive flock on the file with this inode, from /proc/locks (None if unknown)."""
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        f = line.split()
        if len(f) >= 6 and f[1] == "FLOCK" and f[3] == "WRITE" and f[5].rsplit(":", 1)[-1] == str(inode):
            return int(f[4]) if f[4].isdigit() else None
    return None
