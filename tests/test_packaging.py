"""A non-editable install works: the wheel carries the Hydra configs and the keypoint layout, and the
console scripts find them from outside the source tree."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                          str(REPO)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    (whl,) = out.glob("wholebody-*.whl")
    return whl


def test_wheel_ships_configs_and_layout(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for must in ["wholebody/conf/train.yaml", "wholebody/conf/eval.yaml", "wholebody/conf/model/zoomnet.yaml",
                 "wholebody/conf/data/coco_wholebody.yaml", "wholebody/conf/experiment/zoomnet.yaml",
                 "wholebody/resources/coco_wholebody.json"]:
        assert must in names, must


def test_installed_wheel_runs_from_outside_the_source_tree(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = next((venv / "lib").glob("python*/site-packages"))
    # dependencies come from this environment; the package itself only from the wheel
    deps = sysconfig.get_paths()["purelib"]
    (site / "deps.pth").write_text(deps + "\n")
    res = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-deps",
                          "-q", str(wheel)], capture_output=True, text=True, timeout=600)
    if res.returncode != 0 and "no such option: --python" in res.stderr:  # pragma: no cover - old pip
        pytest.skip("this pip is older than 22.3 and has no --python option to install into the test venv")
    assert res.returncode == 0, res.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    py = str(venv / "bin" / "python")
    where = subprocess.run([py, "-c", "import wholebody; print(wholebody.__file__)"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
    assert where.returncode == 0, where.stderr
    assert str(site) in where.stdout and str(REPO) not in where.stdout
    res = subprocess.run([str(venv / "bin" / "wholebody-train"), "--help"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "model: " in res.stdout and "zoomnet_tiny" in res.stdout and "experiment: " in res.stdout
    res = subprocess.run([str(venv / "bin" / "wholebody-train"), "+experiment=zoomnet", "--cfg", "job"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "HRNetPose" not in res.stdout and "wholebody.models.ZoomNet" in res.stdout
