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

    ``durable``: also fsync the data before the rename (survives a power loss, not only a crash).
    """
    path = Path(path)
    with atomic_target(path, suffix=".tmp") as tmp:
        with open(tmp, "wb") as f:
            write(f)
            if durable:
                f.flush()
                os.fsync(f.fileno())
    return path


def write_bytes_atomic(path: str | Path, data: bytes, durable: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return write_atomic(path, lambda f: f.write(data), durable=durable)


def write_json_atomic(path: str | Path, obj: Any, indent: bool = True) -> Path:
    """Serialise ``obj`` as JSON (orjson: numpy arrays and scalars allowed) and write it atomically."""
    import orjson

    opts = orjson.OPT_SERIALIZE_NUMPY | (orjson.OPT_INDENT_2 if indent else 0)
    return write_bytes_atomic(path, orjson.dumps(obj, option=opts) + b"\n")
