"""Weights files from strangers: reading one never runs numpy's pickle reconstruction, never crashes.

The payload is a 2 KB ``torch.save`` file that plain ``torch.load(weights_only=True)`` refuses: in its
``meta`` an "array" whose dtype state says it holds Python objects and whose data is eight bytes of
the file. numpy, asked to rebuild it, takes those bytes for an object pointer (on numpy 2.4 the
process died with SIGSEGV when the array was freed). The package reads numpy values as inert
placeholders (:class:`~wholebody.models.pretrained.NumpyValue`), so the file is an ordinary file
without HRNet tensors: one line, exit 2, in the converter and in training.
"""

from __future__ import annotations

import io
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from training_utils import run_cli, tiny_overrides
from wholebody.models.pretrained import NUMPY_NAMES, NumpyValue, PretrainedError, read_weights_file

pytestmark = pytest.mark.usefixtures("one_thread")



class _Reduce:
    """Pickles as ``func(*args)`` followed by ``__setstate__(state)``: any reduce a file can hold."""

    def __init__(self, func, args, state=None):
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


def _core():
    return np._core.multiarray if hasattr(np, "_core") else np.core.multiarray


def pointer_payload() -> _Reduce:
    """An ndarray of one element whose dtype claims to hold object references (flag 1) in a field of
    object dtype, with 8 raw bytes of the file as its data: numpy would free 0x4141414141414141."""
    dtype = _Reduce(np.dtype, ("V8", False, True), (3, "|", None, ("a",), {"a": (np.dtype("O"), 0)}, 8, 1, 1))
    return _Reduce(_core()._reconstruct, (np.ndarray, (0,), b"b"), (1, (1,), dtype, False, b"A" * 8))


def save(obj, path: Path) -> Path:
    torch.save(obj, path)
    return path


@pytest.fixture()
def crash_file(tmp_path) -> Path:
    path = save({"state_dict": {"w": torch.zeros(2)}, "meta": {"x": pointer_payload()}},
                tmp_path / "td-hm_hrnet-w32_8xb64-210e_coco-wholebody-256x192-0_0.pth")
    assert path.stat().st_size < 4096
    with pytest.raises(Exception, match="Unsupported global"):  # what plain torch does with it
        torch.load(path, weights_only=True)
    return path


def test_numpy_values_read_as_placeholders_and_numpy_rebuilds_nothing(tmp_path, monkeypatch):
    sd = {"w": torch.arange(3.0)}
    meta = {"epoch": 210, "best": np.float64(0.6), "sigmas": np.ones(3, np.float32), "ok": np.bool_(True),
            "dtype": np.dtype("int64"), "nested": [np.int64(2), {"a": np.zeros((2, 2))}], "bad": pointer_payload()}
    path = save({"state_dict": sd, "meta": meta}, tmp_path / "meta.pth")
    calls = []
    core = _core()
    for name in ("scalar", "_reconstruct"):
        real = getattr(core, name)
        monkeypatch.setattr(core, name, lambda *a, _real=real, _n=name: calls.append(_n) or _real(*a))
    got = read_weights_file(path)
    assert got.keys() == sd.keys() and torch.equal(got["w"], sd["w"])
    assert calls == []  # numpy's reconstruction never ran
    # what the placeholders are: the file's values are gone, their places kept
    from wholebody.models.pretrained import _inert_numpy_globals

    with torch.serialization.safe_globals(_inert_numpy_globals()):
        whole = torch.load(path, map_location="cpu", weights_only=True)
    assert whole["meta"]["epoch"] == 210
    assert all(isinstance(whole["meta"][k], NumpyValue) for k in ("best", "sigmas", "ok", "dtype", "bad"))
    assert isinstance(whole["meta"]["nested"][0], NumpyValue) and isinstance(whole["meta"]["nested"][1]["a"], NumpyValue)


def test_the_accepted_numpy_names_are_the_documented_ones():
    assert set(NUMPY_NAMES) == {"numpy.ndarray", "numpy.dtype", "numpy.core.multiarray.scalar",
                                "numpy._core.multiarray.scalar", "numpy.core.multiarray._reconstruct",
                                "numpy._core.multiarray._reconstruct"}
    doc = (Path(__file__).resolve().parents[1] / "docs" / "training.md").read_text()
    for name in ("numpy.ndarray", "numpy.dtype", "multiarray.scalar", "multiarray._reconstruct"):
        assert name in doc, name


@pytest.mark.parametrize("func", [np.frombuffer, np.random.default_rng, np.load, np.ma.masked_array])
def test_any_other_numpy_global_is_refused_in_one_line_naming_it(func, tmp_path):
    path = save({"state_dict": {"w": torch.zeros(1)}, "meta": {"x": _Reduce(func, ())}}, tmp_path / "other.pth")
    with pytest.raises(PretrainedError, match=r"other\.pth holds objects other than tensors and plain data \(numpy") as e:
        read_weights_file(path)
    assert "\n" not in str(e.value)


def _assert_one_line_no_crash(proc: subprocess.CompletedProcess, message: str) -> None:
    assert proc.returncode != -signal.SIGSEGV, "the process crashed"
    assert proc.returncode > 0, proc.returncode
    err = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert any(message in line for line in err), proc.stderr[-2000:]


def test_the_converter_reads_the_crash_file_as_an_ordinary_file_in_one_line(crash_file, tmp_path):
    out = tmp_path / "out.ckpt"
    proc = subprocess.run([sys.executable, "-m", "wholebody.cli.convert", "mmpose", str(crash_file), str(out)],
                          capture_output=True, text=True, timeout=300)
    _assert_one_line_no_crash(proc, "not an mmpose top-down HRNet heatmap checkpoint")
    assert proc.returncode == 2 and not out.exists()


def test_training_from_the_crash_file_stops_in_one_line(crash_file, tmp_path):
    proc = run_cli(["wholebody-train", *tiny_overrides(tmp_path / "set", tmp_path / "out"),
                    f"model.net.pretrained={crash_file}"], cwd=tmp_path, timeout=600)
    _assert_one_line_no_crash(proc, "holds no HRNet tensors")


def test_a_weights_file_cut_short_or_of_garbage_is_one_line(crash_file, tmp_path):
    data = crash_file.read_bytes()
    for name, content in (("cut.pth", data[: len(data) // 2]), ("noise.pth", bytes(range(256)) * 8), ("empty.pth", b"")):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(PretrainedError, match=rf"{name.replace('.', '[.]')} is not readable") as e:
            read_weights_file(path)
        assert "\n" not in str(e.value)
    buf = io.BytesIO()
    torch.save([torch.zeros(1)], buf)
    (tmp_path / "list.pth").write_bytes(buf.getvalue())
    with pytest.raises(PretrainedError, match=r"list\.pth holds a list, not a state dict"):
        read_weights_file(tmp_path / "list.pth")
