"""The column file: named numpy arrays and a JSON header in one file, written atomically and memory-mapped
back read-only (the format of the column cache, :mod:`wholebody.column_cache`).

Layout: ``MAGIC`` (8 bytes), the header length (8 bytes, little-endian), the header (JSON: meta and, per
array, dtype, shape and offset), its SHA-256 (32 bytes), the arrays (64-byte aligned), and ``END_MAGIC`` +
the file size (16 bytes). :func:`map_columns` refuses (:class:`CorruptCacheError`) a file whose magic,
header digest, size or end marker is wrong; the arrays' bytes are not checksummed (that would read the
whole file on every load).
"""

from __future__ import annotations

import hashlib
import mmap
import os
import struct
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import orjson

from wholebody.io_utils import write_atomic

MAGIC = b"WBCOLS\x00\x01"
END_MAGIC = b"WBCOLEND"
ALIGN = 64


class CorruptCacheError(ValueError):
    """A file that is not a complete column file."""


def _pad(n: int) -> int:
    return (-n) % ALIGN


def write_columns(path: str | Path, arrays: Mapping[str, np.ndarray], meta: Mapping) -> Path:
    """Write named arrays and a JSON-able ``meta`` into one column file at ``path``, atomically."""
    path = Path(path)
    specs, offset = {}, 0
    arrays = {k: np.asarray(v, order="C") for k, v in arrays.items()}
    for name, a in arrays.items():
        if a.dtype.hasobject:
            raise TypeError(f"column {name!r} holds Python objects")
        specs[name] = {"dtype": a.dtype.str, "shape": list(a.shape), "offset": offset}
        offset += a.nbytes + _pad(a.nbytes)
    header = orjson.dumps({"meta": dict(meta), "arrays": specs})
    start = len(MAGIC) + 8 + len(header) + 32
    start += _pad(start)
    total = start + offset + len(END_MAGIC) + 8

    def _write(f) -> None:
        f.write(MAGIC + struct.pack("<Q", len(header)) + header + hashlib.sha256(header).digest())
        f.write(b"\0" * (start - f.tell()))
        for a in arrays.values():
            f.write(a.reshape(-1).view(np.uint8))
            f.write(b"\0" * _pad(a.nbytes))
        f.write(END_MAGIC + struct.pack("<Q", total))

    return write_atomic(path, _write, durable=True)


def map_columns(path: str | Path) -> tuple[dict[str, np.ndarray], dict]:
    """Memory-map a column file: (name -> read-only array view, meta). :class:`CorruptCacheError` if the
    file is not a complete column file."""
    path = Path(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < len(MAGIC) + 8 + 32 + 16:
            raise CorruptCacheError(f"{path}: too short for a column file ({size} bytes)")
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    out: dict[str, np.ndarray] = {}
    try:
        if mm[: len(MAGIC)] != MAGIC:
            raise CorruptCacheError(f"{path}: not a column file (bad magic)")
        (hlen,) = struct.unpack("<Q", mm[len(MAGIC) : len(MAGIC) + 8])
        h0 = len(MAGIC) + 8
        if h0 + hlen + 32 > size:
            raise CorruptCacheError(f"{path}: header runs past the end of the file")
        header = mm[h0 : h0 + hlen]
        if hashlib.sha256(header).digest() != mm[h0 + hlen : h0 + hlen + 32]:
            raise CorruptCacheError(f"{path}: header checksum mismatch")
        if mm[size - 16 : size - 8] != END_MAGIC or struct.unpack("<Q", mm[size - 8 :])[0] != size:
            raise CorruptCacheError(f"{path}: cut short or overwritten (end marker missing)")
        doc = orjson.loads(header)
        start = h0 + hlen + 32
        start += _pad(start)
        for name, s in doc["arrays"].items():
            dt, shape = np.dtype(s["dtype"]), tuple(s["shape"])
            if dt.hasobject or dt.kind not in "biufS":  # plain numbers and bytes only: a header names no objects
                raise CorruptCacheError(f"{path}: column {name!r} has dtype {dt}, not a plain array")
            count = int(np.prod(shape)) if shape else 1
            off = start + int(s["offset"])
            if off + count * dt.itemsize > size - 16:
                raise CorruptCacheError(f"{path}: column {name!r} runs past the end of the file")
            out[name] = np.frombuffer(mm, dtype=dt, count=count, offset=off).reshape(shape)
        return out, doc["meta"]
    except CorruptCacheError:
        out.clear()  # the arrays mapped so far hold the buffer; close fails while they live
        mm.close()
        raise
    except (KeyError, TypeError, ValueError, struct.error, orjson.JSONDecodeError) as e:
        out.clear()
        mm.close()
        raise CorruptCacheError(f"{path}: unreadable header ({e})") from None
