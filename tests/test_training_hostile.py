"""Training under hostile conditions: SIGTERM and Ctrl-C (a SLURM time limit, ``docker stop``) end a run
with status 143/130, a saved ``last.ckpt`` and one line saying how to resume; doctored resume inputs
(``ckpt_path=``, stage markers, ``multirun.yaml``) and out-of-range settings are one line before training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from training_utils import BIN, REPO, read_json, tiny_overrides
from wholebody.training.run import Stopped, build_datamodule, compose_config, train
from wholebody.training.staged import DONE, train_staged


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "set"
    build_datamodule(compose_config(tiny_overrides(root, root.parent / "unused"))).prepare_data()
    return root


def _stderr_lines(text: str, prefix: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith(prefix)]


def _signalled(args: list[str], marker: Path, cwd: Path, signums: tuple[int, ...] = (signal.SIGTERM,),
               env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``wholebody-train args`` (which must hold a ``SlowSteps`` writing ``marker``), send ``signums``
    once training has made its first step (0.5 s apart), return its outcome."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO / "tests"), "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE",
                "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1", **(env or {})}
    # a suite started in the background may run with SIGINT ignored, which a child inherits
    proc = subprocess.Popen([str(BIN / "wholebody-train"), *args], cwd=cwd, env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 120
        while not marker.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert marker.exists(), f"training never started: {proc.poll()} {proc.stderr.read()[-2000:] if proc.poll() is not None else ''}"
        for i, s in enumerate(signums):
            if i:
                time.sleep(0.5)
            proc.send_signal(s)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _slow(marker: Path, *extra: str) -> list[str]:
    return ["trainer.max_epochs=2", "trainer.check_val_every_n_epoch=2",
            "+callbacks.slow._target_=training_utils.SlowSteps", f"+callbacks.slow.marker={marker}", *extra]


# ------------------------------------------------------------------------------------------- SIGTERM
def test_sigterm_saves_last_ckpt_exits_143_and_resumes_there(synth_root, tmp_path):
    """Lightning's handler used to end the run with status 0 and no word: a SLURM time limit looked like success."""
    marker, probe = tmp_path / "started", tmp_path / "probe.json"
    args = tiny_overrides(synth_root, tmp_path, "name=term", *_slow(marker),
                          "+callbacks.probe._target_=training_utils.ResumeProbe", f"+callbacks.probe.path={probe}")
    res = _signalled(args, marker, tmp_path)
    assert res.returncode == 143, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    run_dir = (tmp_path / "term" / "latest").resolve()
    last = run_dir / "checkpoints" / "last.ckpt"
    [line] = _stderr_lines(res.stderr, "stopped by")
    saved = torch.load(last, map_location="cpu", weights_only=True)
    assert line == (f"stopped by SIGTERM at epoch 0, step {saved['global_step']}: saved {last}; "
                    "resume by repeating the command with ckpt_path=last")
    assert saved["global_step"] >= 1 and not (run_dir / "stats.json").exists()
    # the same command with ckpt_path=last continues from that step (in-process: no second interpreter start)
    metrics = train(compose_config([*args, "ckpt_path=last"]))
    starts = read_json(probe)
    assert [s["global_step"] for s in starts] == [0, saved["global_step"]]
    assert starts[1]["adam_step"] == saved["global_step"]  # the optimizer's state came back too
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 4  # 2 epochs x 2 batches
    assert metrics["val/wholebody/AP"] >= 0 and (run_dir / "stats.json").is_file()


def test_a_first_ctrl_c_stops_cleanly_like_sigterm(synth_root, tmp_path):
    """Ctrl-C used to raise KeyboardInterrupt wherever the step was, saved nothing and ended with status 1."""
    args = tiny_overrides(synth_root, tmp_path, "name=int", "trainer.max_epochs=2", "trainer.check_val_every_n_epoch=2",
                          "+callbacks.stop._target_=training_utils.SignalAt", f"+callbacks.stop.signum={int(signal.SIGINT)}")
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(Stopped) as e:
        train(compose_config(args))
    assert e.value.code == 130 and signal.getsignal(signal.SIGINT) is before  # the handlers are given back
    last = Path(compose_config([*args, "ckpt_path=last"]).paths.run_dir) / "checkpoints" / "last.ckpt"
    assert e.value.message == (f"stopped by SIGINT at epoch 0, step 1: saved {last}; "
                               "resume by repeating the command with ckpt_path=last")
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 1


def test_a_sigterm_in_a_sweep_ends_the_sweep_with_143(synth_root, tmp_path):
    """A terminated job used to end the whole sweep with status 0, its later jobs silently not run."""
    marker = tmp_path / "started"
    args = tiny_overrides(synth_root, tmp_path, "name=sw", *_slow(marker), "seed=1,2")
    res = _signalled(["-m", *args], marker, tmp_path)
    assert res.returncode == 143, res.stderr[-3000:]
    sweep = (tmp_path / "multirun" / "sw" / "latest").resolve()
    [line] = _stderr_lines(res.stderr, "stopped by")
    assert line.startswith("stopped by SIGTERM at epoch 0, step ") and str(sweep / "0" / "checkpoints" / "last.ckpt") in line
    assert line.endswith("the sweep's later jobs did not run; resume the sweep by repeating its command with ckpt_path=last")
    assert (sweep / "0" / "checkpoints" / "last.ckpt").is_file() and not (sweep / "1").exists()


@pytest.mark.slow  # 11 s: a third subprocess run
def test_lightnings_slurm_requeue_still_works_beside_it(synth_root, tmp_path):
    """Under SLURM Lightning's auto-requeue handles SIGUSR1 (saves hpc_ckpt_N.ckpt, calls scontrol requeue) and
    adds its own SIGTERM handler: both keep working, and the SIGTERM that follows still saves and says so."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    calls = tmp_path / "scontrol.log"
    (fake_bin / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (fake_bin / "scontrol").chmod(0o755)
    slurm = {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "train", "SLURM_JOB_ID": "4242", "SLURM_NODELIST": "localhost",
             "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0",
             "PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}"}
    marker = tmp_path / "started"
    args = tiny_overrides(synth_root, tmp_path, "name=slurm", *_slow(marker, "+callbacks.slow.delay=0.6"))
    res = _signalled(args, marker, tmp_path, (signal.SIGUSR1, signal.SIGTERM), env=slurm)
    assert res.returncode == 143, res.stderr[-3000:]
    run_dir = (tmp_path / "slurm" / "latest").resolve()
    assert calls.read_text().split() == ["requeue", "4242"] and (run_dir / "hpc_ckpt_1.ckpt").is_file()
    [line] = _stderr_lines(res.stderr, "stopped by")
    assert line.startswith("stopped by SIGTERM at epoch ") and (run_dir / "checkpoints" / "last.ckpt").is_file()


def test_a_staged_run_stopped_inside_a_stage_resumes_that_stage(synth_root, tmp_path):
    probe = tmp_path / "probe.json"
    base = [o for o in tiny_overrides(synth_root, tmp_path) if not o.startswith("trainer.max_epochs")]
    args = [*base, "+experiment=zoomnet_staged", "name=staged", "callbacks.report.analyze=false",
            "~staged.stages.finetune", "~staged.init.finetune",
            "staged.stages.body.trainer.max_epochs=1", "staged.stages.heads.trainer.max_epochs=1",
            "+callbacks.probe._target_=training_utils.ResumeProbe", f"+callbacks.probe.path={probe}"]
    stop = ["+staged.stages.heads.callbacks.stop._target_=training_utils.SignalAt",
            f"+staged.stages.heads.callbacks.stop.signum={int(signal.SIGTERM)}"]
    with pytest.raises(Stopped) as e:
        train_staged(compose_config([*args, *stop]))
    root = Path(compose_config([*args, "ckpt_path=last"]).paths.run_dir)
    heads_last = root / "heads" / "checkpoints" / "last.ckpt"
    assert e.value.code == 143 and f"at epoch 0, step 1: saved {heads_last};" in e.value.message
    assert (root / "body" / DONE).is_file() and not (root / "heads" / DONE).exists()  # not marked done
    assert torch.load(heads_last, map_location="cpu", weights_only=True)["global_step"] == 1
    train_staged(compose_config([*args, "ckpt_path=last"]))
    starts = read_json(probe)  # body, heads, then heads again: resumed at its step 1, the body stage not rerun
    assert [s["global_step"] for s in starts] == [0, 0, 1]
    assert (root / "heads" / DONE).is_file() and json.loads((root / "heads" / DONE).read_text())["stage"] == "heads"
