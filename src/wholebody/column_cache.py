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
misses the cache and builds a new one; an edited file with the old content reuses the old cache. When a
file's content changes, the caches of its earlier content are deleted, unless another source file in the
folder has that content, so the folder holds one cache per source file and not one per edit.

The file is a column file (:mod:`wholebody.column_file`): a truncated, overwritten or bit-flipped cache
(header digest, per-column CRC-32), or one whose columns break the reader's rules (dtype, shape, NaN,
index range: :func:`wholebody.cocowb.columns_problem`), is detected every time it is mapped and rebuilt
with a warning; it is never used. The stamp is untrusted too: a digest that is not 64 lowercase hex digits
is ignored (the source is hashed again), and every path the cache writes or deletes is checked to lie in
the cache folder. A build writes a ``.wbcols-build.<host>.<pid>.*`` file first; one that a killed process
left is removed at the next use of the folder, with a log line. Every problem of the folder (a file, not
writable, full, an entry that cannot be replaced) is one :class:`CacheError` line naming the path and
``data.cache_dir``.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import re
from pathlib import Path

import orjson

from wholebody.cocowb import READER_VERSION, WholeBodyColumns, read_wholebody
from wholebody.column_file import (  # noqa: F401  (re-exported)
    CorruptCacheError,
    map_columns,
    remove_stale_builds,
    write_columns,
)
from wholebody.io_utils import write_json_atomic
from wholebody.keypoints import COCO_WHOLEBODY, KeypointSpec

log = logging.getLogger(__name__)

#: The default cache folder when none is configured: ``$WHOLEBODY_CACHE``, else ``$XDG_CACHE_HOME/wholebody``
#: (``~/.cache/wholebody``).
CACHE_ENV = "WHOLEBODY_CACHE"


class CacheError(OSError):
    """The cache folder cannot be used (not writable, not a folder, full, an entry in the way). One line
    naming the folder or file and ``data.cache_dir``."""


_HEX64 = re.compile(r"[0-9a-f]{64}")
_FIX = f"set data.cache_dir (or ${CACHE_ENV}) to a writable folder"


def default_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``cache_dir`` (``~`` expanded) when given, else ``$WHOLEBODY_CACHE`` or
    ``$XDG_CACHE_HOME/wholebody`` (``~/.cache/wholebody``)."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "wholebody"


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


def is_sha256(digest: object) -> bool:
    """Whether ``digest`` is a SHA-256 as :func:`file_sha256` writes it: 64 lowercase hex digits."""
    return isinstance(digest, str) and _HEX64.fullmatch(digest) is not None


def _inside(cache_dir: Path, path: Path) -> Path:
    """``path`` itself, after checking that it names an entry directly in ``cache_dir`` (its folder
    resolves to the cache folder; its name is no ``..``): else :class:`CacheError`. Guards every path
    the cache writes or deletes."""
    if (path.name in ("", ".", "..") or os.sep in path.name
            or os.path.realpath(path.parent) != os.path.realpath(cache_dir)):
        raise CacheError(f"refusing to write or delete {path}: not an entry of the cache folder {cache_dir}")
    return path


def cache_path(ann_file: str | Path, cache_dir: str | Path | None = None, spec: KeypointSpec = COCO_WHOLEBODY,
               sha256: str | None = None) -> Path:
    """Where the cache of ``ann_file`` lives (hashing the file unless ``sha256`` is given; ValueError when
    ``sha256`` is not 64 lowercase hex digits)."""
    cache_dir = default_cache_dir(cache_dir)
    digest = sha256 or file_sha256(ann_file)
    if not is_sha256(digest):
        raise ValueError(f"not a SHA-256 digest: {digest!r}")
    return _inside(cache_dir, cache_dir / f"{Path(ann_file).stem}-{digest[:16]}-{_layout_key(spec)}.wbcols")


def _stamp_path(cache_dir: Path, ann_file: Path) -> Path:
    where = hashlib.sha256(os.fsencode(ann_file.resolve())).hexdigest()[:16]
    return _inside(cache_dir, cache_dir / f"{ann_file.stem}-{where}.source.json")


def _read_stamp(stamp: Path) -> dict | None:
    """The stamp's record ({"size", "mtime_ns", "sha256"}), or None when it is absent or is not one (a
    doctored or damaged stamp: a warning; the source is hashed again and the stamp rewritten)."""
    try:
        doc = orjson.loads(stamp.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, orjson.JSONDecodeError) as e:
        log.warning("ignoring the stamp %s (%s)", stamp, getattr(e, "strerror", None) or e)
        return None
    if (not isinstance(doc, dict) or not is_sha256(doc.get("sha256"))
            or type(doc.get("size")) is not int or type(doc.get("mtime_ns")) is not int):
        log.warning("ignoring the stamp %s: not a record of size, mtime_ns and a SHA-256 (64 hex digits)", stamp)
        return None
    return doc


def _source_digest(ann_file: Path, cache_dir: Path) -> tuple[str, str | None]:
    """The SHA-256 of ``ann_file`` (from its stamp when size and mtime are unchanged), and the digest
    the stamp held before when the file's content has changed since (else None). A stamp that cannot be
    written is a warning (every load then hashes the source again)."""
    st = ann_file.stat()
    stamp = _stamp_path(cache_dir, ann_file)
    doc = _read_stamp(stamp)
    if doc is not None and doc["size"] == st.st_size and doc["mtime_ns"] == st.st_mtime_ns:
        return doc["sha256"], None
    previous = doc["sha256"] if doc is not None else None
    digest = file_sha256(ann_file)
    try:
        write_json_atomic(stamp, {"source": str(ann_file.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                                  "sha256": digest})
    except OSError as e:
        log.warning("cannot record the digest of %s in %s (%s): every load hashes it again; remove what is "
                    "there or %s", ann_file, stamp, e.strerror or e, _FIX)
    return digest, (previous if previous != digest else None)


def _prune_superseded(ann_file: Path, cache_dir: Path, digest: str) -> None:
    """Delete the caches of an earlier content of ``ann_file`` (any reader version), unless the stamp of
    another source file of the same name in ``cache_dir`` (which would share them) still names that
    content. A process that has one mapped keeps its mapping (the pages live until it is unmapped)."""
    for stamp in cache_dir.glob(f"{glob.escape(ann_file.stem)}-*.source.json"):
        try:
            doc = orjson.loads(stamp.read_bytes())
            if doc.get("sha256") == digest and Path(doc.get("source", "")).stem == ann_file.stem:
                return
        except (OSError, orjson.JSONDecodeError, AttributeError, TypeError):
            continue
    if not is_sha256(digest):
        return
    for old in cache_dir.glob(f"{glob.escape(ann_file.stem)}-{digest[:16]}-r*-k*.wbcols"):
        try:
            _inside(cache_dir, old).unlink()
            log.info("removed %s, the cache of an earlier content of %s", old, ann_file)
        except OSError as e:  # (CacheError included)
            log.warning("cannot remove %s, the cache of an earlier content of %s (%s)", old, ann_file, e)


def cached_columns(
    ann_file: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    spec: KeypointSpec = COCO_WHOLEBODY,
) -> WholeBodyColumns:
    """The columns of ``ann_file``, mapped from the cache (built first if absent, stale or corrupt).

    Raises:
        AnnotationError: the source is malformed (from the reader).
        CacheError: the cache has to be written and cannot be (the folder is a file, not writable, full; an
            entry that cannot be replaced).
        FileNotFoundError: no such annotation file.
    """
    ann_file = Path(ann_file)
    if not ann_file.is_file():
        raise FileNotFoundError(f"annotation file {ann_file} not found")
    cache_dir = _checked_dir(default_cache_dir(cache_dir))
    remove_stale_builds(cache_dir)
    digest, previous = _source_digest(ann_file, cache_dir)
    if previous is not None:
        _prune_superseded(ann_file, cache_dir, previous)
    path = cache_path(ann_file, cache_dir, spec, digest)
    if os.path.lexists(path):
        try:
            cols = WholeBodyColumns.mapped(path, str(ann_file), digest, READER_VERSION)
            if cols.keypoints.shape[1] != spec.num_keypoints:
                raise CorruptCacheError(f"{path}: {cols.keypoints.shape[1]} keypoints, expected {spec.num_keypoints}")
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
        write_columns(_inside(path.parent, path), cols.arrays(), meta)
    except OSError as e:  # a full disk, a quota, a read-only folder, a folder where the file should be
        raise CacheError(f"cannot write the cache {path} ({e.strerror or e}); free space or remove what is "
                         f"there, or {_FIX}") from None
    del cols
    return WholeBodyColumns.mapped(path, str(ann_file), digest, READER_VERSION)
