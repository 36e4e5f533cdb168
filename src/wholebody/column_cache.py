"""The column cache: an annotation file converted once into a file of arrays that every process maps.

``cached_columns(ann_file, cache_dir)`` returns the :class:`~wholebody.cocowb.WholeBodyColumns` of an
annotation file, memory-mapped read-only from ``cache_dir``. The first use parses the file
(:func:`wholebody.cocowb.read_wholebody`) and writes the cache atomically; later uses, in any process,
map it (a second or so for the 1.4 GB training file; pages are read on demand and shared between the
processes of a node through the page cache, so DataLoader workers add no copies).

The cache file is keyed by the source's content (SHA-256) and by :data:`~wholebody.cocowb.READER_VERSION`
and the keypoint layout: ``<cache_dir>/<stem>-<sha256[:16]>-r<version>-k<K>.wbcols``. Hashing the source
happens once per (path, size, mtime): a small stamp file beside the cache records them, so a warm load
only stats the source. A changed source (new size or mtime and new content) or a new reader version
misses the cache and builds a new one; an edited file with the old content reuses the old cache.

File layout: ``MAGIC`` (8 bytes), the header length (8 bytes, little-endian), the header (JSON: meta and,
per array, dtype, shape and offset), its SHA-256 (32 bytes), the arrays (64-byte aligned), and
``END_MAGIC`` + the file size (16 bytes). A file whose magic, header digest, size or end marker is wrong
(a truncated or overwritten cache) is rebuilt, with a warning. The arrays' bytes themselves are not
checksummed (that would read the whole file on every load).
"""

from __future__ import annotations

import hashlib
import logging
import mmap
import os
import struct
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import orjson

from wholebody.cocowb import READER_VERSION, WholeBodyColumns, read_wholebody
from wholebody.io_utils import atomic_target, write_json_atomic
from wholebody.keypoints import COCO_WHOLEBODY, KeypointSpec

log = logging.getLogger(__name__)

MAGIC = b"WBCOLS\x00\x01"
END_MAGIC = b"WBCOLEND"
ALIGN = 64
#: The default cache folder when none is configured: ``$WHOLEBODY_CACHE``, else ``~/.cache/wholebody``.
CACHE_ENV = "WHOLEBODY_CACHE"


class CacheError(OSError):
    """The cache folder cannot be used (not writable, not a folder). One line naming the folder."""


class CorruptCacheError(ValueError):
    """A cache file that is not a complete column file."""


def default_cache_dir() -> Path:
    """``$WHOLEBODY_CACHE`` or ``$XDG_CACHE_HOME/wholebody`` (``~/.cache/wholebody``)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "wholebody"


# ----------------------------------------------------------------------------- the file format
def _pad(n: int) -> int:
    return (-n) % ALIGN


def write_columns(path: str | Path, arrays: Mapping[str, np.ndarray], meta: Mapping) -> Path:
    """Write named arrays and a JSON-able ``meta`` into one column file at ``path``, atomically."""
    path = Path(path)
    specs, offset = {}, 0
    arrays = {k: np.asarray(v) if np.asarray(v).flags.c_contiguous else np.asarray(v).copy(order="C")
              for k, v in arrays.items()}
    for name, a in arrays.items():
        if a.dtype.hasobject:
            raise TypeError(f"column {name!r} holds Python objects")
        specs[name] = {"dtype": a.dtype.str, "shape": list(a.shape), "offset": offset}
        offset += a.nbytes + _pad(a.nbytes)
    header = orjson.dumps({"meta": dict(meta), "arrays": specs})
    start = len(MAGIC) + 8 + len(header) + 32
    start += _pad(start)
    total = start + offset + len(END_MAGIC) + 8
    with atomic_target(path, suffix=".tmp") as tmp, open(tmp, "wb") as f:
        f.write(MAGIC + struct.pack("<Q", len(header)) + header + hashlib.sha256(header).digest())
        f.write(b"\0" * (start - f.tell()))
        for a in arrays.values():
            f.write(a.tobytes() if a.ndim == 0 else memoryview(a).cast("B") if a.nbytes else b"")
            f.write(b"\0" * _pad(a.nbytes))
        f.write(END_MAGIC + struct.pack("<Q", total))
        f.flush()
        os.fsync(f.fileno())
    return path


def map_columns(path: str | Path) -> tuple[dict[str, np.ndarray], dict]:
    """Memory-map a column file: (name -> read-only array view, meta). :class:`CorruptCacheError` if the
    file is not a complete column file."""
    path = Path(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < len(MAGIC) + 8 + 32 + 16:
            raise CorruptCacheError(f"{path}: too short for a column file ({size} bytes)")
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
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
        out = {}
        for name, s in doc["arrays"].items():
            dt, shape = np.dtype(s["dtype"]), tuple(s["shape"])
            count = int(np.prod(shape)) if shape else 1
            off = start + int(s["offset"])
            if off + count * dt.itemsize > size - 16:
                raise CorruptCacheError(f"{path}: column {name!r} runs past the end of the file")
            out[name] = np.frombuffer(mm, dtype=dt, count=count, offset=off).reshape(shape)
        return out, doc["meta"]
    except (CorruptCacheError, KeyError, TypeError, ValueError, struct.error, orjson.JSONDecodeError) as e:
        mm.close()
        if isinstance(e, CorruptCacheError):
            raise
        raise CorruptCacheError(f"{path}: unreadable header ({e})") from None


# ----------------------------------------------------------------------------- the annotation cache
def file_sha256(path: str | Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _layout_key(spec: KeypointSpec) -> str:
    return f"r{READER_VERSION}-k{spec.num_keypoints}"


def _checked_dir(cache_dir: Path) -> Path:
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CacheError(f"cache folder {cache_dir} cannot be created ({e.strerror or e}); set data.cache_dir "
                         f"(or ${CACHE_ENV}) to a writable folder") from None
    if not cache_dir.is_dir():
        raise CacheError(f"cache folder {cache_dir} is not a folder; set data.cache_dir (or ${CACHE_ENV})")
    return cache_dir


def _writable(cache_dir: Path) -> None:
    if not os.access(cache_dir, os.W_OK | os.X_OK):
        raise CacheError(f"cache folder {cache_dir} is not writable; set data.cache_dir (or ${CACHE_ENV}) to a "
                         "writable folder")


def cache_path(ann_file: str | Path, cache_dir: str | Path | None = None, spec: KeypointSpec = COCO_WHOLEBODY,
               sha256: str | None = None) -> Path:
    """Where the cache of ``ann_file`` lives (hashing the file unless ``sha256`` is given)."""
    cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    digest = sha256 or file_sha256(ann_file)
    return cache_dir / f"{Path(ann_file).stem}-{digest[:16]}-{_layout_key(spec)}.wbcols"


def _stamp_path(cache_dir: Path, ann_file: Path) -> Path:
    where = hashlib.sha256(os.fsencode(ann_file.resolve())).hexdigest()[:16]
    return cache_dir / f"{ann_file.stem}-{where}.source.json"


def _source_digest(ann_file: Path, cache_dir: Path) -> str:
    """The SHA-256 of ``ann_file``, from its stamp when size and mtime are unchanged."""
    st = ann_file.stat()
    stamp = _stamp_path(cache_dir, ann_file)
    try:
        doc = orjson.loads(stamp.read_bytes())
        if doc.get("size") == st.st_size and doc.get("mtime_ns") == st.st_mtime_ns and len(doc.get("sha256", "")) == 64:
            return doc["sha256"]
    except (OSError, orjson.JSONDecodeError, AttributeError):
        pass
    digest = file_sha256(ann_file)
    try:
        write_json_atomic(stamp, {"source": str(ann_file.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                                  "sha256": digest})
    except OSError as e:
        log.debug("cannot write %s (%s)", stamp, e)
    return digest


def open_mapped(path: str | Path, source: str, digest: str | None = None) -> WholeBodyColumns:
    """The columns mapped from the cache file ``path`` (checked against ``digest`` when given)."""
    arrays, meta = map_columns(path)
    if meta.get("reader_version") != READER_VERSION or (digest is not None and meta.get("source_sha256") != digest):
        raise CorruptCacheError(f"{path}: written for another source or reader version")
    try:
        return WholeBodyColumns.from_arrays(source, arrays, mapped_from=str(path))
    except (KeyError, TypeError) as e:
        raise CorruptCacheError(f"{path}: {e}") from None


def cached_columns(
    ann_file: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    spec: KeypointSpec = COCO_WHOLEBODY,
) -> WholeBodyColumns:
    """The columns of ``ann_file``, mapped from the cache (built first if absent, stale or corrupt).

    Raises:
        AnnotationError: the source is malformed (from the reader).
        CacheError: the cache has to be written and its folder is not writable.
        FileNotFoundError: no such annotation file.
    """
    ann_file = Path(ann_file)
    if not ann_file.is_file():
        raise FileNotFoundError(f"annotation file {ann_file} not found")
    cache_dir = _checked_dir(Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir())
    digest = _source_digest(ann_file, cache_dir)
    path = cache_path(ann_file, cache_dir, spec, digest)
    if path.exists():
        try:
            cols = open_mapped(path, str(ann_file), digest)
            log.debug("columns of %s mapped from %s", ann_file, path)
            return cols
        except (CorruptCacheError, OSError) as e:
            log.warning("rebuilding the cache of %s: %s", ann_file, e)
    _writable(cache_dir)
    return build_cache(ann_file, path, digest, spec)


def build_cache(ann_file: Path, path: Path, digest: str, spec: KeypointSpec = COCO_WHOLEBODY) -> WholeBodyColumns:
    """Parse ``ann_file``, write its column file at ``path`` and return the columns mapped from it."""
    log.info("converting %s into the column cache %s (once per file and reader version)", ann_file, path)
    cols = read_wholebody(ann_file, spec)
    meta = {"source": str(ann_file.resolve()), "source_sha256": digest, "reader_version": READER_VERSION,
            "num_keypoints": spec.num_keypoints}
    try:
        write_columns(path, cols.arrays(), meta)
    except PermissionError as e:
        raise CacheError(f"cache folder {path.parent} is not writable ({e.strerror}); set data.cache_dir (or "
                         f"${CACHE_ENV}) to a writable folder") from None
    del cols
    return open_mapped(path, str(ann_file), digest)
