"""Checkpoints a kill or a full disk cannot destroy; resume past a damaged last.ckpt; one run per folder."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import torch

from conftest import mount_tmpfs
from training_utils import REPO, run_cli, tiny_overrides
from wholebody.io_utils import folder_lock
from wholebody.training.checkpoint_io import AtomicCheckpointIO, checkpoint_problem, newest_intact
from wholebody.training.run import ConfigError, compose_config, resolve_ckpt_path, train


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("synth") / "set"


def _other_filesystem(near: Path) -> Path | None:
    """A fresh folder on a filesystem other than ``near``'s: /dev/shm, else a tmpfs mounted for the test."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shm.stat().st_dev != near.stat().st_dev:
        d = shm / f"wholebody-test-{uuid.uuid4().hex[:8]}"
        d.mkdir()
        return d
    mnt = near / "mnt"
    return mnt if mount_tmpfs(mnt, "256m") else None


def test_a_kill_inside_the_save_across_filesystems_loses_nothing(synth_root, tmp_path):
    tmpdir = _other_filesystem(tmp_path)
    if tmpdir is None:
        pytest.skip("needs $TMPDIR on a second filesystem (/dev/shm, or permission to mount a tmpfs) to reproduce the "
                    "cross-device move; the simulated full-disk and damaged-last.ckpt tests run everywhere")
    try:
        args = tiny_overrides(synth_root, tmp_path, "name=kill", "trainer.max_epochs=2")
        killed = run_cli(["wholebody-train", *args, "+callbacks.killer._target_=training_utils.KillInsideSave"],
                         cwd=tmp_path, env={"PYTHONPATH": str(REPO / "tests"), "TMPDIR": str(tmpdir)})
        assert killed.returncode == -9, killed.stderr[-3000:]  # killed inside the second save of last.ckpt
        ckpts = tmp_path / "kill" / "latest" / "checkpoints"  # the run's timestamped folder
        last = ckpts / "last.ckpt"
        assert checkpoint_problem(last) is None, checkpoint_problem(last)
        state = torch.load(last, map_location="cpu", weights_only=True)
        assert state["global_step"] == 2 and state["epoch"] == 0  # the first epoch's, whole
        assert [p for p in tmpdir.rglob("*") if p.is_file()] == []  # no checkpoint orphaned in $TMPDIR
        assert [p.name for p in ckpts.iterdir() if p.name.startswith(".")], sorted(p.name for p in ckpts.iterdir())
        resumed = run_cli(["wholebody-train", *args, "ckpt_path=last"], cwd=tmp_path, env={"TMPDIR": str(tmpdir)})
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert "temporary file(s) an interrupted save left" in resumed.stdout + resumed.stderr
        assert "weights_only" not in resumed.stdout + resumed.stderr  # every save and load says which it is
        assert not [p for p in ckpts.iterdir() if p.name.startswith(".")]  # the killed save's temporary is gone
        assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 4
    finally:
        if tmpdir.parent == Path("/dev/shm"):
            shutil.rmtree(tmpdir, ignore_errors=True)
        else:
            subprocess.run(["umount", str(tmpdir)], capture_output=True)


def test_a_full_disk_keeps_the_previous_checkpoint_and_leaves_no_partial_file(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "global_step": 1}, path)
    before = path.read_bytes()
    real = torch.save

    def full_disk(obj, f, *a, **k):
        f.write(b"PK\x03\x04 partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "global_step": 2}, path)
    monkeypatch.setattr(torch, "save", real)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
    assert torch.load(path, weights_only=True)["global_step"] == 1


def test_a_really_full_disk(small_tmpfs):
    """The same on a real 1 MiB tmpfs, when the test may mount one."""
    mnt = small_tmpfs("1m")
    io = AtomicCheckpointIO()
    io.save_checkpoint({"w": torch.ones(10)}, mnt / "epoch000.ckpt")
    with pytest.raises(OSError, match="cannot write checkpoint .*epoch001.ckpt") as e:
        io.save_checkpoint({"w": torch.ones(1_000_000)}, mnt / "epoch001.ckpt")  # 4 MB on 1 MiB
    assert e.value.errno == errno.ENOSPC and "\n" not in str(e.value)
    assert sorted(p.name for p in mnt.iterdir()) == ["epoch000.ckpt"]
    assert checkpoint_problem(mnt / "epoch000.ckpt") is None


def test_resume_passes_over_a_damaged_last_ckpt(tmp_path, caplog):
    cfg = compose_config(["name=r", f"paths.output_dir={tmp_path}", "logger=csv"])
    ckpts = Path(cfg.paths.run_dir) / "checkpoints"
    ckpts.mkdir(parents=True)
    io = AtomicCheckpointIO()
    io.save_checkpoint({"global_step": 3}, ckpts / "epoch000-wholebodyAP0.1000.ckpt")
    io.save_checkpoint({"global_step": 5}, ckpts / "last.ckpt")
    whole = (ckpts / "last.ckpt").read_bytes()
    with open(ckpts / "last.ckpt", "r+b") as f:  # one flipped byte inside the data
        f.seek(len(whole) // 2)
        f.write(bytes([whole[len(whole) // 2] ^ 0xFF]))
    cfg.ckpt_path = "last"
    with caplog.at_level(logging.WARNING):
        chosen = resolve_ckpt_path(cfg)
    assert Path(chosen).name == "epoch000-wholebodyAP0.1000.ckpt"
    assert "last.ckpt is damaged" in caplog.text and "epoch000" in caplog.text
    (ckpts / "last.ckpt").write_bytes(whole[: len(whole) // 3])  # cut short, as a kill would
    assert checkpoint_problem(ckpts / "last.ckpt") and Path(resolve_ckpt_path(cfg)).name.startswith("epoch000")
    (ckpts / "last.ckpt").write_bytes(b"")
    assert checkpoint_problem(ckpts / "last.ckpt") == "empty file"
    (ckpts / "epoch000-wholebodyAP0.1000.ckpt").unlink()
    assert newest_intact(ckpts) is None
    with pytest.raises(ConfigError, match="damaged .* no intact checkpoint"):
        resolve_ckpt_path(cfg)
    cfg.ckpt_path = str(ckpts / "last.ckpt")  # named explicitly: an error, no substitution
    with pytest.raises(ConfigError, match="empty file"):
        resolve_ckpt_path(cfg)


def test_a_run_folder_in_use_is_refused(synth_root, tmp_path):
    cfg = compose_config(tiny_overrides(synth_root, tmp_path, "name=busy"))
    with folder_lock(cfg.paths.run_dir):
        with pytest.raises(ConfigError, match=rf"in use by another run \(pid {os.getpid()}\)"):
            train(cfg)
    assert not (Path(cfg.paths.run_dir) / "checkpoints").exists()
    # the CLI says so in one line while another process holds it
    holder = subprocess.Popen([str(Path(os.sys.executable)), "-c",
                               "import sys, time; from wholebody.io_utils import folder_lock\n"
                               f"with folder_lock({str(cfg.paths.run_dir)!r}):\n print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    hydra_files = Path(cfg.paths.run_dir) / ".hydra"
    hydra_files.mkdir(parents=True)
    (hydra_files / "overrides.yaml").write_text("- the running job's overrides\n")
    try:
        assert holder.stdout.readline().strip() == "held"
        res = run_cli(["wholebody-train", *tiny_overrides(synth_root, tmp_path, "name=busy", "seed=7"),
                       f"hydra.run.dir={cfg.paths.run_dir}"], cwd=tmp_path)
        assert res.returncode == 2 and f"in use by another run (pid {holder.pid})" in res.stderr, res.stderr[-2000:]
        # the refused run wrote nothing into the folder: the running job's config files are its own
        assert (hydra_files / "overrides.yaml").read_text() == "- the running job's overrides\n"
        assert sorted(p.name for p in hydra_files.iterdir()) == ["overrides.yaml"]
    finally:
        holder.kill()
        holder.wait()
    # a killed holder leaves no stale lock
    assert train(cfg)["val/wholebody/AP"] >= 0
