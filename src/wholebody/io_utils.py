"""Small I/O helpers: atomic writes (nothing half-written is ever left behind)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Write a file through ``write(fileobj)`` into a temporary file beside it, then rename it in place.

    Readers see either the old file or the complete new one; a crash leaves no partial file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    return write_atomic(path, lambda f: f.write(data))


def write_json_atomic(path: str | Path, obj: Any, indent: bool = True) -> Path:
    """Serialise ``obj`` as JSON (orjson: numpy arrays and scalars allowed) and write it atomically."""
    import orjson

    opts = orjson.OPT_SERIALIZE_NUMPY | (orjson.OPT_INDENT_2 if indent else 0)
    return write_bytes_atomic(path, orjson.dumps(obj, option=opts))
