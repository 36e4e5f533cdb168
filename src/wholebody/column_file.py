"""The column file: named numpy arrays and a JSON header in one file, written atomically and memory-mapped
back read-only (the format of the column cache, :mod:`wholebody.column_cache`).

Layout: ``MAGIC`` (8 bytes), the header length (8 bytes, little-endian), the header (JSON: meta and, per
array in file order, dtype, shape, offset and the CRC-32 of its bytes), the header's SHA-256 (32 bytes),
the arrays (each 64-byte aligned, one after the other), and ``END_MAGIC`` + the file size (16 bytes).

:func:`map_columns` refuses (:class:`CorruptCacheError`) a file that is not a regular file or whose magic,
header digest, size or end marker is wrong; a header that names anything but a plain number or bytes
dtype, a shape that is not a list of counts, or a layout other than the one :func:`write_columns` writes
(offsets in order, no gap, no overlap, the arrays filling the file exactly); and an array whose bytes
fail their CRC-32 (a flipped bit, a block of a copy lost). The header's digest and the CRCs find damage,
not forgery (whoever can write the file can recompute them): the meaning of the columns is checked by
their reader (:meth:`wholebody.cocowb.WholeBodyColumns.mapped`).

A build writes into ``.wbcols-build.<host>.<pid>.<random>`` beside its target and renames it into place;
the file goes on any error, and :func:`remove_stale_builds` removes those a killed process left.
"""

from __future__ import annotations

import hashlib
import logging
import math
import mmap
import os
import re
import secrets
import socket
import stat
import struct
import time
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import orjson

log = logging.getLogger(__name__)

MAGIC = b"WBCOLS\x00\x02"
#: Magics of earlier formats (read as "another format": the cache rebuilds them).
OLD_MAGICS = (b"WBCOLS\x00\x01",)
END_MAGIC = b"WBCOLEND"
ALIGN = 64
#: dtype kinds a column may have: bool, signed / unsigned integer, float, bytes.
KINDS = "biufS"
#: Name prefix of the temporary file of a build (``.wbcols-build.<host>.<pid>.<random>``).
BUILD_PREFIX = ".wbcols-build."
_BUILD_NAME = re.compile(r"\.wbcols-build\.([A-Za-z0-9_-]+)\.([0-9]{1,10})\.[0-9a-f]+")
#: Temporary files of the former writer (``.<stem>.<random>.tmp``), removed when older than this (s).
_LEGACY_NAME = re.compile(r"\..+-[0-9a-f]{16}-r[0-9]+-k[0-9]+\.[A-Za-z0-9_]+\.tmp")
LEGACY_AGE_S = 3600.0
#: A dead process's build file is removed only when untouched for this long (s): a same-named host in
#: another pid namespace (a container sharing the folder) may be writing it.
STALE_AGE_S = 60.0


class CorruptCacheError(ValueError):
    """A file that is not a complete column file."""


def _pad(n: int) -> int:
    return (-n) % ALIGN


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:64] or "host"


def write_columns(path: str | Path, arrays: Mapping[str, np.ndarray], meta: Mapping) -> Path:
    """Write named arrays and a JSON-able ``meta`` into one column file at ``path``, atomically and durably.

    The data goes into a build file beside ``path`` (``BUILD_PREFIX``), which is fsynced and renamed into
    place; on any error (a full disk, an interrupt) it is removed and the error raised. ``path`` is
    replaced, never followed (a symbolic link there is replaced, not written through)."""
    path = Path(path)
    specs, offset = {}, 0
    arrays = {k: np.asarray(v, order="C") for k, v in arrays.items()}  # (ascontiguousarray makes 0-d 1-d)
    for name, a in arrays.items():
        if a.dtype.hasobject or a.dtype.kind not in KINDS or a.dtype.fields is not None:
            raise TypeError(f"column {name!r} has dtype {a.dtype}, not a plain number or bytes array")
        specs[name] = {"dtype": a.dtype.str, "shape": list(a.shape), "offset": offset,
                       "crc32": zlib.crc32(a.reshape(-1).view(np.uint8))}
        offset += a.nbytes + _pad(a.nbytes)
    header = orjson.dumps({"meta": dict(meta), "arrays": specs})
    start = len(MAGIC) + 8 + len(header) + 32
    start += _pad(start)
    total = start + offset + len(END_MAGIC) + 8
    tmp = path.with_name(f"{BUILD_PREFIX}{_host()}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC + struct.pack("<Q", len(header)) + header + hashlib.sha256(header).digest())
            f.write(b"\0" * (start - f.tell()))
            for a in arrays.values():
                f.write(a.reshape(-1).view(np.uint8))
                f.write(b"\0" * _pad(a.nbytes))
            f.write(END_MAGIC + struct.pack("<Q", total))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)  # the rename itself, recorded in the folder
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):  # another user's live process; a pid out of range
        return True
    return True


def remove_stale_builds(folder: str | Path, now: float | None = None) -> list[Path]:
    """Remove the build files in ``folder`` that a killed build left: those of this host whose process is
    gone (and untouched for ``STALE_AGE_S``), and the former writer's ``.<stem>.<random>.tmp`` files untouched
    for ``LEGACY_AGE_S``. Logs each at INFO; returns the removed paths. A folder that cannot be listed
    removes nothing."""
    folder, host = Path(folder), _host()
    now = time.time() if now is None else now
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError as e:
        log.debug("cannot list %s (%s)", folder, e)
        return removed
    for e in entries:
        try:
            m = _BUILD_NAME.fullmatch(e.name)
            st = e.stat(follow_symlinks=False)
            age = now - st.st_mtime
            if m:
                pid = int(m.group(2))
                stale = m.group(1) == host and pid > 0 and not _alive(pid) and age > STALE_AGE_S
                why = f"left by process {pid}, which is gone"
            else:
                stale = bool(_LEGACY_NAME.fullmatch(e.name)) and age > LEGACY_AGE_S
                why = "left by a killed build of an earlier version"
            if not stale or not stat.S_ISREG(st.st_mode):
                continue
            os.unlink(e.path)
        except OSError as err:
            log.debug("cannot remove %s (%s)", e.path, err)
            continue
        log.info("removed %s (%.0f MB), a partial cache %s", e.path, st.st_size / 1e6, why)
        removed.append(Path(e.path))
    return removed


def _nonneg_int(v: object) -> bool:
    return type(v) is int and v >= 0


def _array_specs(doc: object) -> list[tuple[str, np.dtype, tuple[int, ...], int, int]]:
    """The header's arrays as (name, dtype, shape, offset, crc32), in file order, each checked for type;
    ValueError naming what is wrong."""
    if not isinstance(doc, dict) or not isinstance(doc.get("meta"), dict) or not isinstance(doc.get("arrays"), dict):
        raise ValueError("the header is not {'meta': {...}, 'arrays': {...}}")
    out = []
    for name, s in doc["arrays"].items():
        if not isinstance(s, dict) or not isinstance(s.get("dtype"), str):
            raise ValueError(f"column {name!r}: no dtype string")
        try:
            dt = np.dtype(s["dtype"])
        except (TypeError, ValueError, SyntaxError) as e:
            raise ValueError(f"column {name!r}: dtype {s['dtype']!r} ({e})") from None
        if (dt.hasobject or dt.kind not in KINDS or dt.fields is not None or dt.subdtype is not None
                or dt.itemsize == 0 or dt.str != s["dtype"]):
            raise ValueError(f"column {name!r} has dtype {s['dtype']!r}, not a plain number or bytes array")
        shape = s.get("shape")
        if not isinstance(shape, list) or len(shape) > 32 or not all(_nonneg_int(d) for d in shape):
            raise ValueError(f"column {name!r}: shape {shape!r} is not a list of counts")
        if not _nonneg_int(s.get("offset")) or not _nonneg_int(s.get("crc32")):
            raise ValueError(f"column {name!r}: offset and crc32 must be counts")
        out.append((name, dt, tuple(shape), s["offset"], s["crc32"]))
    return out


def map_columns(path: str | Path, verify: bool = True) -> tuple[dict[str, np.ndarray], dict]:
    """Memory-map a column file: (name -> read-only array view, meta). :class:`CorruptCacheError` if the
    file is not a complete, intact column file (see the module's doc).

    ``verify``: check every array's CRC-32 (reads the whole file: about 0.5 s per GB from the page cache).
    OSError when the file cannot be opened (missing, permission denied)."""
    path = Path(path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # (O_NONBLOCK: a FIFO there does not hang)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CorruptCacheError(f"{path}: not a regular file")
        size = st.st_size
        if size < len(MAGIC) + 8 + 32 + 16:
            raise CorruptCacheError(f"{path}: too short for a column file ({size} bytes)")
        mm = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    finally:
        os.close(fd)
    out: dict[str, np.ndarray] = {}
    try:
        magic = mm[: len(MAGIC)]
        if magic in OLD_MAGICS:
            raise CorruptCacheError(f"{path}: written in an earlier column-file format")
        if magic != MAGIC:
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
        specs = _array_specs(doc)
        start = h0 + hlen + 32
        start += _pad(start)
        expected = 0
        for name, dt, shape, offset, _ in specs:  # the layout write_columns writes, and nothing else
            nbytes = math.prod(shape) * dt.itemsize
            if offset != expected:
                raise CorruptCacheError(f"{path}: column {name!r} at offset {offset}, expected {expected} "
                                        "(overlapping or out of order)")
            expected += nbytes + _pad(nbytes)
            if start + expected > size - 16:
                raise CorruptCacheError(f"{path}: column {name!r} runs past the end of the file")
        if start + expected != size - 16:
            raise CorruptCacheError(f"{path}: {size - 16 - start - expected} bytes after the last column")
        for name, dt, shape, offset, crc in specs:
            count = math.prod(shape)
            out[name] = np.frombuffer(mm, dtype=dt, count=count, offset=start + offset).reshape(shape)
            if verify and zlib.crc32(out[name].reshape(-1).view(np.uint8)) != crc:  # (any size: zlib splits it)
                raise CorruptCacheError(f"{path}: column {name!r} fails its checksum (its bytes changed)")
        return out, doc["meta"]
    except CorruptCacheError:
        out.clear()  # the arrays mapped so far hold the buffer; close fails while they live
        mm.close()
        raise
    except (KeyError, TypeError, ValueError, struct.error, orjson.JSONDecodeError) as e:
        out.clear()
        mm.close()
        raise CorruptCacheError(f"{path}: unreadable header ({e})") from None
