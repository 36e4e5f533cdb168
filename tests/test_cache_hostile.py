"""The column cache against hostile and clumsy bytes: doctored headers (their digest recomputed), flipped
array bytes, consistent files with wrong columns (NaN keypoints), doctored stamps, builds killed half way,
and every way the cache folder can be unusable (one ``CacheError`` line, also through ``wholebody-train``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import re
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from test_reader_and_cache import _ann, _doc, _write
from training_utils import run_cli, tiny_overrides
from wholebody import column_cache, column_file
from wholebody.cocowb import WholeBodyColumns, read_wholebody
from wholebody.column_cache import CacheError, CorruptCacheError, cache_path, cached_columns
from wholebody.column_file import BUILD_PREFIX, MAGIC, map_columns, remove_stale_builds, write_columns
from wholebody.data.coco import load_coco_wholebody

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture()
def built(tmp_path):
    """(source file, cache folder, cache file) of a 3-annotation source whose cache is built."""
    src = _write(tmp_path, _doc([_ann(1), _ann(2), _ann(3, image_id=1)]))
    cache = tmp_path / "cache"
    return src, cache, Path(cached_columns(src, cache).mapped_from)


def _split(raw: bytes) -> tuple[dict, bytes]:
    """(header document, the arrays' bytes) of a column file."""
    hlen = struct.unpack("<Q", raw[8:16])[0]
    start = 16 + hlen + 32
    start += -start % 64
    return json.loads(raw[16 : 16 + hlen]), raw[start:-16]


def _join(doc: dict, data: bytes) -> bytes:
    """A column file of header ``doc`` (its SHA-256 recomputed, as a forger would) and array bytes ``data``."""
    header = json.dumps(doc).encode()
    head = MAGIC + struct.pack("<Q", len(header)) + header + hashlib.sha256(header).digest()
    body = head + b"\0" * (-len(head) % 64) + data + column_file.END_MAGIC
    return body + struct.pack("<Q", len(body) + 8)


def _rebuilds(src: Path, cache: Path, built: Path, caplog, needle: str) -> None:
    """The doctored cache at ``built`` is refused with ``needle`` in the reason, and cached_columns rebuilds
    it with a warning: the columns are the source's again."""
    with pytest.raises(CorruptCacheError, match=re.escape(needle)):
        WholeBodyColumns.mapped(built, str(src))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="wholebody.column_cache"):
        again = cached_columns(src, cache)
    assert "rebuilding the cache" in caplog.text and needle in caplog.text
    direct = read_wholebody(src)
    for name, arr in direct.arrays().items():
        got = again.arrays()[name]
        assert got.dtype == arr.dtype and got.shape == arr.shape and np.array_equal(got, arr), name
    WholeBodyColumns.mapped(built, str(src))  # the rebuilt file passes every check


# ----------------------------------------------------------------------------- doctored headers
def _set(name: str, key: str, value):
    def edit(doc):
        doc["arrays"][name][key] = value
    return edit


HEADER_EDITS = {
    # the same bytes read as another dtype or shape: the CRC still matches, the reader's rules do not
    "keypoints as int64": (_set("keypoints", "dtype", "<i8"), "column 'keypoints' is <i8"),
    "keypoints big-endian": (_set("keypoints", "dtype", ">f8"), "column 'keypoints' is >f8"),
    "keypoints reshaped": (_set("keypoints", "shape", [3 * 133, 3]), "column 'keypoints' is <f8 (399, 3)"),
    "object dtype": (_set("keypoints", "dtype", "|O"), "not a plain number"),
    "complex dtype": (_set("keypoints", "dtype", "<c16"), "not a plain number"),
    "structured dtype": (_set("keypoints", "dtype", [["a", "<f8"]]), "no dtype string"),
    "datetime dtype": (_set("ann_ids", "dtype", "<M8[s]"), "not a plain number"),
    "zero-size dtype": (_set("file_names", "dtype", "|S0"), "not a plain number"),
    "negative shape": (_set("keypoints", "shape", [-3, 133, 3]), "is not a list of counts"),
    "bool in shape": (_set("ann_ids", "shape", [True]), "is not a list of counts"),
    "overlapping offsets": (_set("keypoints", "offset", 0), "overlapping or out of order"),
    "offset past the end": (_set("keypoints", "offset", 1 << 40), "overlapping or out of order"),
    "wrong crc": (_set("keypoints", "crc32", 12345), "fails its checksum"),
    "keypoint count in meta": (lambda doc: doc["meta"].update(num_keypoints=17), "column 'keypoints' is <f8"),
    "arrays not a mapping": (lambda doc: doc.update(arrays=[1, 2]), "unreadable header"),
}


@pytest.mark.parametrize("case", list(HEADER_EDITS))
def test_a_doctored_header_with_its_digest_recomputed_is_refused_and_rebuilt(built, caplog, case):
    src, cache, path = built
    doc, data = _split(path.read_bytes())
    edit, needle = HEADER_EDITS[case]
    edit(doc)
    path.write_bytes(_join(doc, data))
    _rebuilds(src, cache, path, caplog, needle)


def test_a_flipped_array_byte_is_caught_by_its_checksum(built, caplog):
    src, cache, path = built
    raw = bytearray(path.read_bytes())
    doc, data = _split(bytes(raw))
    start = len(raw) - 16 - len(data)
    kp = doc["arrays"]["keypoints"]
    raw[start + kp["offset"] + 8 * 3 * 133 + 5] ^= 0x40  # one bit of a keypoint of the second annotation
    path.write_bytes(bytes(raw))
    _rebuilds(src, cache, path, caplog, "column 'keypoints' fails its checksum")


def test_a_cache_of_the_earlier_format_is_rebuilt(built, caplog):
    src, cache, path = built
    raw = bytearray(path.read_bytes())
    raw[: len(MAGIC)] = column_file.OLD_MAGICS[0]
    path.write_bytes(bytes(raw))
    _rebuilds(src, cache, path, caplog, "earlier column-file format")


# ----------------------------------------------------------------------------- consistent but wrong columns
def _edit(name, fn):
    def edit(arrays):
        arrays[name] = fn(arrays[name].copy())
    return edit


def _put(index, value):
    def fn(a):
        a[index] = value
        return a
    return fn


COLUMN_EDITS = {
    "NaN keypoint": (_edit("keypoints", _put((1, 0, 0), np.nan)), "column 'keypoints' holds NaN or inf"),
    "inf bbox": (_edit("bbox", _put((0, 2), np.inf)), "column 'bbox' holds NaN or inf"),
    "NaN area": (_edit("area", _put(2, np.nan)), "column 'area' holds NaN or inf"),
    "negative visibility": (_edit("keypoints", _put((0, 5, 2), -1.0)), "negative keypoint visibility"),
    "negative box size": (_edit("part_boxes", _put((0, 1, 3), -4.0)), "negative part box size"),
    "keypoints float32": (_edit("keypoints", lambda a: a.astype(np.float32)), "column 'keypoints' is <f4"),
    "keypoints of 17": (_edit("keypoints", lambda a: a[:, :17]), "column 'keypoints' is <f8 (3, 17, 3)"),
    "one annotation short": (_edit("bbox", lambda a: a[:2]), "column 'bbox' is <f8 (2, 4)"),
    "image_index out of range": (_edit("image_index", _put(0, 7)), "'image_index' out of range"),
    "image_index elsewhere": (_edit("image_id", _put(0, 99)), "does not point at the annotation's image"),
    "duplicate annotation id": (_edit("ann_ids", _put(2, 1)), "duplicate ids in 'ann_ids'"),
    "bool that is 2": (_edit("iscrowd", lambda a: np.where(np.arange(a.size) == 1, 2, a).astype(np.uint8).view(bool)),
                       "column 'iscrowd' holds a bool that is not 0 or 1"),
    "missing column": (lambda arrays: arrays.pop("flags"), "columns ["),
    "extra column": (lambda arrays: arrays.update(extra=np.zeros(3)), "columns ["),
}


@pytest.mark.parametrize("case", list(COLUMN_EDITS))
def test_a_consistent_cache_with_wrong_columns_is_refused_and_rebuilt(built, caplog, case):
    """The file is rewritten whole (header digest and CRCs recomputed, as a forger would): only the
    reader's rules can tell."""
    src, cache, path = built
    arrays, meta = map_columns(path)
    arrays = {k: np.array(v) for k, v in arrays.items()}
    edit, needle = COLUMN_EDITS[case]
    edit(arrays)
    write_columns(path, arrays, meta)
    map_columns(path)  # the file itself is intact
    _rebuilds(src, cache, path, caplog, needle)


def test_nan_keypoints_smuggled_into_a_cache_never_reach_training(built, caplog):
    src, cache, path = built
    cols = cached_columns(src, cache)
    arrays, meta = map_columns(path)
    arrays = {k: np.array(v) for k, v in arrays.items()}
    arrays["keypoints"][:, 0, :2] = np.nan
    write_columns(path, arrays, meta)
    # a worker that maps the file again (spawned: it receives the path) refuses it
    with pytest.raises(CorruptCacheError, match="NaN"):
        pickle.loads(pickle.dumps(cols))
    with caplog.at_level(logging.WARNING):
        ann = load_coco_wholebody(src, cache_dir=cache)  # training's loader
    assert "holds NaN" in caplog.text
    kp = np.stack([ann.persons.keypoints(i) for i in range(len(ann.persons))])
    assert np.isfinite(kp).all() and len(kp) == 3


# ----------------------------------------------------------------------------- doctored stamps
def _doctor_stamp(cache: Path, digest: str, size_delta: int = 0) -> Path:
    (stamp,) = cache.glob("*.source.json")
    doc = json.loads(stamp.read_text())
    doc["sha256"], doc["size"] = digest, doc["size"] + size_delta
    stamp.write_text(json.dumps(doc))
    return stamp


@pytest.mark.parametrize("digest", [
    "../../escaped".ljust(64, "0"),  # cache/ann-../../escaped000-r1-k133.wbcols: beside the cache folder
    "/" * 64,
    "A" * 64,  # uppercase: not what file_sha256 writes
    "zz" + "0" * 62,
    "0" * 63 + "\n",
])
def test_a_doctored_stamp_digest_writes_nothing_outside_the_cache_folder(built, caplog, digest):
    src, cache, path = built
    assert len(digest) == 64
    outside = set(cache.parent.rglob("*"))
    (cache / "ann-..").mkdir()  # where a path built from the digest would climb out of the folder
    stamp = _doctor_stamp(cache, digest)
    with caplog.at_level(logging.WARNING, logger="wholebody.column_cache"):
        cols = cached_columns(src, cache)
    assert "ignoring the stamp" in caplog.text
    assert cols.mapped_from == str(path) and cols.ann_ids.tolist() == [1, 2, 3]
    new = {p for p in cache.parent.rglob("*") if cache not in p.parents}
    assert new == {p for p in outside if cache not in p.parents}  # nothing written outside
    assert json.loads(stamp.read_text())["sha256"] == column_cache.file_sha256(src)  # re-hashed and rewritten


@pytest.mark.parametrize("digest", ["*" * 64, "?" * 64])
def test_a_doctored_stamp_digest_deletes_no_other_files_cache(tmp_path, digest):
    """A stamp whose earlier digest is a glob pattern: the caches of other files of the same name stay."""
    src = _write(tmp_path, _doc([_ann(1)]))
    twin = tmp_path / "twin"
    twin.mkdir()
    other = _write(twin, _doc([_ann(2)]))  # same stem, other content: another cache file
    cache = tmp_path / "cache"
    cached_columns(src, cache)
    theirs = Path(cached_columns(other, cache).mapped_from)
    (stamp,) = [p for p in cache.glob("*.source.json") if json.loads(p.read_text())["source"] == str(src)]
    doc = json.loads(stamp.read_text())
    doc["sha256"], doc["size"] = digest, doc["size"] + 1  # "the content changed since": prune the old one
    stamp.write_text(json.dumps(doc))
    assert cached_columns(src, cache).ann_ids.tolist() == [1]
    assert theirs.is_file() and cached_columns(other, cache).mapped_from == str(theirs)


def test_every_path_the_cache_writes_is_checked_to_be_in_its_folder(tmp_path):
    src = _write(tmp_path, _doc([_ann(1)]))
    with pytest.raises(ValueError, match="not a SHA-256"):
        cache_path(src, tmp_path, sha256="../" * 21 + "a")
    with pytest.raises(CacheError, match="not an entry of the cache folder"):
        column_cache._inside(tmp_path / "cache", tmp_path / "cache" / ".." / "x.wbcols")
    (tmp_path / "cache").mkdir()
    os.symlink(tmp_path, tmp_path / "cache" / "link")
    with pytest.raises(CacheError, match="not an entry of the cache folder"):
        column_cache._inside(tmp_path / "cache", tmp_path / "cache" / "link" / "x.wbcols")


def test_a_stamp_that_is_a_folder_is_a_warning_and_the_cache_still_works(built, caplog):
    src, cache, path = built
    (stamp,) = cache.glob("*.source.json")
    stamp.unlink()
    stamp.mkdir()
    (stamp / "x").write_text("x")
    with caplog.at_level(logging.WARNING, logger="wholebody.column_cache"):
        cols = cached_columns(src, cache)
    assert cols.mapped_from == str(path)
    assert f"cannot record the digest of {src} in {stamp}" in caplog.text and "data.cache_dir" in caplog.text


# ----------------------------------------------------------------------------- killed builds
def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_killed_build_leaves_a_file_that_the_next_use_removes(tmp_path, caplog):
    """A build killed (SIGKILL) after writing its data, before the rename, leaves its build file; the next
    use of the folder removes it and says so."""
    src = _write(tmp_path, _doc([_ann(i) for i in range(1, 40)]))
    cache = tmp_path / "cache"
    code = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(SRC)!r})
        from wholebody import column_cache
        os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)
        column_cache.cached_columns({str(src)!r}, {str(cache)!r})
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == -signal.SIGKILL, r.stderr
    (left,) = cache.glob(f"{BUILD_PREFIX}*")
    assert left.stat().st_size > 100_000 and not list(cache.glob("*.wbcols"))
    old = time.time() - 2 * column_file.STALE_AGE_S
    os.utime(left, (old, old))
    with caplog.at_level(logging.INFO, logger="wholebody.column_file"):
        cols = cached_columns(src, cache)
    assert not left.exists() and "which is gone" in caplog.text and str(left) in caplog.text
    assert cols.ann_ids.tolist() == list(range(1, 40)) and not list(cache.glob(".*"))


def test_only_stale_build_files_are_removed(tmp_path, caplog):
    host = column_file._host()
    dead, old = _dead_pid(), time.time() - 2 * column_file.STALE_AGE_S
    names = {
        "dead": f"{BUILD_PREFIX}{host}.{dead}.0a1b2c3d",
        "alive": f"{BUILD_PREFIX}{host}.{os.getpid()}.0a1b2c3d",  # a build in progress
        "other host": f"{BUILD_PREFIX}{host}x.{dead}.0a1b2c3d",  # its pid means nothing here
        "pid 0": f"{BUILD_PREFIX}{host}.0.0a1b2c3d",
        "legacy": ".ann-0123456789abcdef-r1-k133.k2j3h4g5.tmp",  # the former writer's
        "stamp tmp": ".ann-0123456789abcdef.source.k2j3h4g5.tmp",
        "a cache": "ann-0123456789abcdef-r1-k133.wbcols",
    }
    for n in names.values():
        (tmp_path / n).write_bytes(b"x" * 10)
        os.utime(tmp_path / n, (old - 4000, old - 4000))
    fresh = tmp_path / f"{BUILD_PREFIX}{host}.{dead}.ffff"  # just written: maybe a container's live build
    fresh.write_bytes(b"x")
    with caplog.at_level(logging.INFO, logger="wholebody.column_file"):
        removed = remove_stale_builds(tmp_path)
    assert sorted(p.name for p in removed) == sorted([names["dead"], names["legacy"]])
    assert f"left by process {dead}, which is gone" in caplog.text
    assert {p.name for p in tmp_path.iterdir()} == (set(names.values()) - {names["dead"], names["legacy"]}) | {fresh.name}


def test_a_failed_build_removes_its_file(tmp_path, monkeypatch):
    src = _write(tmp_path, _doc([_ann(1)]))
    cache = tmp_path / "cache"

    def boom(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(column_file.os, "fsync", boom)
    with pytest.raises(KeyboardInterrupt):
        cached_columns(src, cache)
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".source.json")] == []


# ----------------------------------------------------------------------------- the cache folder
def test_a_cache_file_that_cannot_be_replaced_is_one_line(built):
    src, cache, path = built
    path.unlink()
    path.mkdir()
    (path / "x").write_text("x")
    with pytest.raises(CacheError, match=rf"cannot write the cache {path} \(Is a directory\).*data.cache_dir"):
        cached_columns(src, cache)


@pytest.mark.timeout(30)
def test_a_fifo_in_place_of_the_cache_does_not_hang(built, caplog):
    src, cache, path = built
    path.unlink()
    os.mkfifo(path)
    with caplog.at_level(logging.WARNING):
        cols = cached_columns(src, cache)
    assert "not a regular file" in caplog.text and path.is_file() and cols.ann_ids.tolist() == [1, 2, 3]


def test_an_unreadable_cache_file_is_rebuilt(built, caplog, monkeypatch):
    src, cache, path = built
    path.chmod(0)
    if os.geteuid() == 0:  # root reads a chmod 000 file: its open fails as the kernel fails it for any other user
        real_open = os.open

        def denying_open(file, flags, *args, **kwargs):
            if (Path(file) == path and not flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
                    and os.stat(file).st_mode & 0o777 == 0):  # the chmod 000 file, not its rebuilt successor
                raise PermissionError(13, "Permission denied", str(file))
            return real_open(file, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", denying_open)
    with caplog.at_level(logging.WARNING):
        cols = cached_columns(src, cache)
    assert "Permission denied" in caplog.text and cols.ann_ids.tolist() == [1, 2, 3]


def test_a_build_past_the_file_size_limit_is_one_line_and_leaves_nothing(tmp_path):
    """A real write error half way (RLIMIT_FSIZE: EFBIG, as a quota would): CacheError, no partial file."""
    src = _write(tmp_path, _doc([_ann(i) for i in range(1, 60)]))
    cache = tmp_path / "cache"
    code = textwrap.dedent(f"""
        import resource, signal, sys
        sys.path.insert(0, {str(SRC)!r})
        from wholebody.column_cache import CacheError, cached_columns
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64_000, 64_000))
        try:
            cached_columns({str(src)!r}, {str(cache)!r})
        except CacheError as e:
            print(e)
            sys.exit(2)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert r.stdout.startswith(f"cannot write the cache {cache}/ann-") and "(File too large)" in r.stdout
    assert "data.cache_dir" in r.stdout and len(r.stdout.strip().splitlines()) == 1
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".source.json")] == []


def test_a_really_full_cache_disk_is_one_line(tmp_path, small_tmpfs):
    mnt = small_tmpfs("64k")
    src = _write(tmp_path, _doc([_ann(i) for i in range(1, 60)]))
    with pytest.raises(CacheError, match=r"cannot write the cache .*No space left on device.*data.cache_dir"):
        cached_columns(src, mnt)
    assert [p.name for p in mnt.iterdir() if not p.name.endswith(".source.json")] == []


def test_cache_errors_are_one_line_through_the_cli_helper(tmp_path, capsys):
    from wholebody.cli.errors import run_or_exit

    src = _write(tmp_path, _doc([_ann(1)]))
    (tmp_path / "afile").write_text("x")
    with pytest.raises(SystemExit) as e:
        run_or_exit(cached_columns, src, tmp_path / "afile")
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: cache folder ") and "data.cache_dir" in err
    assert len(err.strip().splitlines()) == 1


def test_train_with_a_cache_folder_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "afile").write_text("x")
    r = run_cli(["wholebody-train", *tiny_overrides(tmp_path / "data", tmp_path / "out",
                                                    f"data.cache_dir={tmp_path / 'afile'}")], cwd=tmp_path, timeout=300)
    assert r.returncode == 2, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    (line,) = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert f"cache folder {tmp_path / 'afile'}" in line and "data.cache_dir" in line


def test_the_build_file_name_holds_this_host_and_pid(tmp_path, monkeypatch):
    seen = []
    real = os.replace
    monkeypatch.setattr(column_file.os, "replace", lambda a, b: seen.append(Path(a).name) or real(a, b))
    write_columns(tmp_path / "f.wbcols", {"a": np.arange(3)}, {})
    m = column_file._BUILD_NAME.fullmatch(seen[0])
    assert m and m.group(1) == column_file._host() and m.group(2) == str(os.getpid())
