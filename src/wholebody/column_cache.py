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

The file is a column file (:mod:`wholebody.column_file`): a truncated or overwritten cache is detected
when it is mapped, and rebuilt with a warning.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
from pathlib import Path

import orjson

from wholebody.cocowb import READER_VERSION, WholeBodyColumns, read_wholebody
from wholebody.column_file import CorruptCacheError, map_columns, write_columns  # noqa: F401  (re-exported)
from wholebody.io_utils import write_json_atomic
from wholebody.keypoints import COCO_WHOLEBODY, KeypointSpec

log = logging.getLogger(__name__)

#: The default cache folder when none is configured: ``$WHOLEBODY_CACHE``, else ``$XDG_CACHE_HOME/wholebody``
#: (``~/.cache/wholebody``).
CACHE_ENV = "WHOLEBODY_CACHE"


class CacheError(OSError):
    """The cache folder cannot be used (not writable, not a folder). One line naming the folder."""


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


def cache_path(ann_file: str | Path, cache_dir: str | Path | None = None, spec: KeypointSpec = COCO_WHOLEBODY,
               sha256: str | None = None) -> Path:
    """Where the cache of ``ann_file`` lives (hashing the file unless ``sha256`` is given)."""
    cache_dir = default_cache_dir(cache_dir)
    digest = sha256 or file_sha256(ann_file)
    return cache_dir / f"{Path(ann_file).stem}-{digest[:16]}-{_layout_key(spec)}.wbcols"


def _stamp_path(cache_dir: Path, ann_file: Path) -> Path:
    where = hashlib.sha256(os.fsencode(ann_file.resolve())).hexdigest()[:16]
    return cache_dir / f"{ann_file.stem}-{where}.source.json"


def _source_digest(ann_file: Path, cache_dir: Path) -> tuple[str, str | None]:
    """The SHA-256 of ``ann_file`` (from its stamp when size and mtime are unchanged), and the digest
    the stamp held before when the file's content has changed since (else None)."""
    st = ann_file.stat()
    stamp = _stamp_path(cache_dir, ann_file)
    previous = None
    try:
        doc = orjson.loads(stamp.read_bytes())
        if len(doc.get("sha256", "")) == 64:
            if doc.get("size") == st.st_size and doc.get("mtime_ns") == st.st_mtime_ns:
                return doc["sha256"], None
            previous = doc["sha256"]
    except (OSError, orjson.JSONDecodeError, AttributeError, TypeError):
        pass
    digest = file_sha256(ann_file)
    try:
        write_json_atomic(stamp, {"source": str(ann_file.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                                  "sha256": digest})
    except OSError as e:
        log.debug("cannot write %s (%s)", stamp, e)
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
    for old in cache_dir.glob(f"{glob.escape(ann_file.stem)}-{digest[:16]}-r*-k*.wbcols"):
        try:
            old.unlink()
            log.info("removed %s, the cache of an earlier content of %s", old, ann_file)
        except OSError as e:
            log.debug("cannot remove %s (%s)", old, e)


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
    cache_dir = _checked_dir(default_cache_dir(cache_dir))
    digest, previous = _source_digest(ann_file, cache_dir)
    if previous is not None:
        _prune_superseded(ann_file, cache_dir, previous)
    path = cache_path(ann_file, cache_dir, spec, digest)
    if path.exists():
        try:
            cols = WholeBodyColumns.mapped(path, str(ann_file), digest, READER_VERSION)
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
    return WholeBodyColumns.mapped(path, str(ann_file), digest, READER_VERSION)
