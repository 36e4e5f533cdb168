import os
import stat

import pytest

from wholebody.io_utils import atomic_target, write_bytes_atomic, write_json_atomic


def test_atomic_write_replaces_whole_file_with_normal_permissions(tmp_path):
    p = tmp_path / "sub" / "stats.json"
    write_json_atomic(p, {"a": 1})
    write_json_atomic(p, {"b": [1.5, 2]})
    assert p.read_text() == '{\n  "b": [\n    1.5,\n    2\n  ]\n}\n'
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask
    assert [q.name for q in p.parent.iterdir()] == ["stats.json"]  # no temporary file left


def test_failed_write_keeps_the_old_file_and_leaves_nothing(tmp_path):
    p = tmp_path / "out.bin"
    write_bytes_atomic(p, b"old")
    with pytest.raises(RuntimeError), atomic_target(p) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("crash mid-write")
    assert p.read_bytes() == b"old" and [q.name for q in tmp_path.iterdir()] == ["out.bin"]


def test_atomic_target_keeps_the_extension_for_format_sniffing_writers(tmp_path):
    with atomic_target(tmp_path / "video.mp4") as tmp:
        assert tmp.suffix == ".mp4" and tmp.parent == tmp_path
        tmp.write_bytes(b"x")
    assert (tmp_path / "video.mp4").read_bytes() == b"x"
