"""Shared fixtures.

The real COCO-WholeBody sample lives in ``../shared/data/cocowb_sample`` beside the checkout (CI has
it; a user's clone does not). Tests that need it use the ``real_sample`` fixture, which skips with a
clear reason when it is absent; every feature is also tested on synthetic data.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning: on a 2-core machine shared by several processes
# (pytest, DataLoader workers, DDP ranks) spinning threads slow PyTorch down 10-50x. Read when torch
# loads, so it must be set before any test module imports torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

import pytest  # noqa: E402

# The column cache of annotation files goes to a folder of this test session, not the user's ~/.cache.
# It is removed when the session ends.
_SESSION_CACHE: str | None = None
if "WHOLEBODY_CACHE" not in os.environ:
    _SESSION_CACHE = os.environ["WHOLEBODY_CACHE"] = tempfile.mkdtemp(prefix="wholebody-test-cache-")


def pytest_sessionfinish(session, exitstatus):
    if _SESSION_CACHE is not None:
        shutil.rmtree(_SESSION_CACHE, ignore_errors=True)


REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("WHOLEBODY_SHARED", REPO.parent / "shared"))
SAMPLE_DIR = SHARED / "data" / "cocowb_sample"
SAMPLE_JSON = SAMPLE_DIR / "test_coco_wholebody.json"
META_JSON = SHARED / "reference" / "coco_wholebody_meta.json"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(
            f"needs {path} (the shared COCO-WholeBody sample, present in CI beside the checkout; "
            "set WHOLEBODY_SHARED to its folder to run this test)"
        )
    return path


@pytest.fixture(scope="session")
def real_sample() -> Path:
    """Folder of the real 4-image COCO-WholeBody sample (annotation file + JPEGs)."""
    _need(SAMPLE_JSON)
    return SAMPLE_DIR


@pytest.fixture(scope="session")
def real_sample_json(real_sample: Path) -> Path:
    return SAMPLE_JSON


@pytest.fixture(scope="session")
def reference_meta() -> Path:
    """The reference layout facts file (names, sigmas, flip pairs)."""
    return _need(META_JSON)


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of small-model tests: such models gain little from two, and a
    single thread cannot stall in OpenMP spin-waits when other processes share the cores."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_config():
    """The packaged zoomnet_tiny model config (a plain dict)."""
    from wholebody.inference import load_model_config

    return load_model_config("zoomnet_tiny")


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory, tiny_config):
    """(path, net): an untrained zoomnet_tiny (seed 0) written with write_checkpoint."""
    import torch

    from wholebody.inference import build_net, write_checkpoint

    torch.manual_seed(0)
    net = build_net(tiny_config)
    return write_checkpoint(net, tmp_path_factory.mktemp("ckpt") / "tiny.ckpt", tiny_config), net


def mount_tmpfs(folder: Path, size: str) -> bool:
    """Mount a tmpfs of ``size`` (e.g. ``"1m"``) on ``folder`` (created) when this process may; False if not."""
    import shutil
    import subprocess

    folder.mkdir(parents=True, exist_ok=True)
    return bool(shutil.which("mount")) and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True).returncode == 0


@pytest.fixture()
def small_tmpfs(tmp_path):
    """A factory: ``small_tmpfs("1m")`` -> a folder on a tmpfs that small (skips when mounting is not
    allowed); unmounted after the test."""
    import subprocess

    mounted = []

    def make(size: str) -> Path:
        mnt = tmp_path / f"tmpfs-{len(mounted)}"
        if not mount_tmpfs(mnt, size):
            pytest.skip("needs permission to mount a small tmpfs (root); the simulated full-disk tests run everywhere")
        mounted.append(mnt)
        return mnt

    yield make
    for mnt in mounted:
        subprocess.run(["umount", str(mnt)], capture_output=True)


@pytest.fixture(scope="session")
def memorised(tmp_path_factory):
    """A zoomnet_tiny checkpoint fitted to a few synthetic images (seconds; shared by the whole session)."""
    from wholebody.inference import memorised_checkpoint

    return memorised_checkpoint(tmp_path_factory.getbasetemp() / "memorised")


def need_reference() -> bool:
    """True when xtcocotools (the parity reference) imports; skip when it is absent (the pinned numbers
    still run); fail with the rebuild command when it is installed but broken (e.g. built against another
    numpy and reused from pip's cache)."""
    from wholebody.evaluation.reference import reference_status

    state, why = reference_status()
    if state == "absent":
        pytest.skip(why)
    if state == "broken":
        pytest.fail(why, pytrace=False)
    return True
