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

from training_utils import BIN, REPO, read_json, render_synthetic_set, run_cli, tiny_overrides
from wholebody.training.run import compose_config, train
from wholebody.training.signals import Stopped
from wholebody.training.staged import DONE, train_staged


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    return render_synthetic_set(tmp_path_factory)


class UnhandledSignal(RuntimeError):
    pass


@pytest.fixture
def strict_signals():
    """SIGTERM and SIGINT raise UnhandledSignal unless the code under test handles them: an in-process test
    of a signal then fails cleanly instead of killing (SIGTERM) or aborting (SIGINT) the test session."""
    def unhandled(signum, frame):
        raise UnhandledSignal(signal.Signals(signum).name)

    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    for s in before:
        signal.signal(s, unhandled)
    yield unhandled
    for s, handler in before.items():
        signal.signal(s, handler)


def _stderr_lines(text: str, prefix: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith(prefix)]


def _signalled(args: list[str], marker: Path, cwd: Path, signums: tuple[int, ...] = (signal.SIGTERM,),
               env: dict | None = None, group: bool = False) -> subprocess.CompletedProcess:
    """Run ``wholebody-train args`` (which must hold a ``SlowSteps`` writing ``marker``), send ``signums``
    once training has made its first step (0.5 s apart; with ``group`` to its whole process group, as SLURM
    does: DataLoader workers included), return its outcome."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO / "tests"), "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE",
                "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1", **(env or {})}
    # a suite started in the background may run with SIGINT ignored, which a child inherits
    proc = subprocess.Popen([str(BIN / "wholebody-train"), *args], cwd=cwd, env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=group,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 120
        while not marker.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert marker.exists(), f"training never started: {proc.poll()} {proc.stderr.read()[-2000:] if proc.poll() is not None else ''}"
        for i, s in enumerate(signums):
            if i:
                time.sleep(0.5)
            os.killpg(proc.pid, s) if group else proc.send_signal(s)
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
    """Lightning's handler used to end the run with status 0 and no word: a SLURM time limit looked like success.
    Sent to the whole process group, as SLURM does: a loader worker that died of it used to fail the main
    process with a traceback ("DataLoader worker ... is killed by signal: Terminated")."""
    marker, probe = tmp_path / "started", tmp_path / "probe.json"
    args = [a.replace("data.num_workers=0", "data.num_workers=1") for a in tiny_overrides(
        synth_root, tmp_path, "name=term", *_slow(marker),
        "+callbacks.probe._target_=training_utils.ResumeProbe", f"+callbacks.probe.path={probe}")]
    res = _signalled(args, marker, tmp_path, group=True)
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


def test_a_first_ctrl_c_stops_cleanly_like_sigterm(synth_root, tmp_path, strict_signals):
    """Ctrl-C used to raise KeyboardInterrupt wherever the step was, saved nothing and ended with status 1."""
    args = tiny_overrides(synth_root, tmp_path, "name=int", "trainer.max_epochs=2", "trainer.check_val_every_n_epoch=2",
                          "+callbacks.stop._target_=training_utils.SignalAt", f"+callbacks.stop.signum={int(signal.SIGINT)}")
    with pytest.raises(Stopped) as e:
        train(compose_config(args))
    assert e.value.code == 130 and signal.getsignal(signal.SIGINT) is strict_signals  # the handlers are given back
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


def test_a_sigterm_before_training_is_one_line_too(synth_root, tmp_path, monkeypatch, strict_signals):
    """Outside Lightning's loops the default disposition killed the process without a word."""
    import wholebody.training.run as run

    real = run.prepare

    def prepare_then_signal(cfg):
        real(cfg)
        os.kill(os.getpid(), signal.SIGTERM)  # as if it came while the data were being prepared

    monkeypatch.setattr(run, "prepare", prepare_then_signal)
    with pytest.raises(Stopped) as e:
        train(compose_config(tiny_overrides(synth_root, tmp_path, "name=early")))
    assert e.value.code == 143
    assert e.value.message == "stopped by SIGTERM before training started: no checkpoint saved yet; run the command again"
    assert signal.getsignal(signal.SIGTERM) is strict_signals


def test_a_sigterm_between_stages_is_one_line(synth_root, tmp_path, monkeypatch, strict_signals):
    import wholebody.training.staged as staged

    real = staged.stage_config

    def config_then_signal(cfg, name, resume):
        if name == "heads":  # the body stage has finished and written its marker
            os.kill(os.getpid(), signal.SIGTERM)
        return real(cfg, name, resume)

    monkeypatch.setattr(staged, "stage_config", config_then_signal)
    base = [o for o in tiny_overrides(synth_root, tmp_path) if not o.startswith("trainer.max_epochs")]
    cfg = compose_config([*base, "+experiment=zoomnet_staged", "name=staged", "staged.stages.body.trainer.max_epochs=1"])
    with pytest.raises(Stopped) as e:
        train_staged(cfg)
    assert e.value.code == 143 and e.value.message == (
        "stopped by SIGTERM between stages: the finished stages keep their stage_done.json; resume by repeating the "
        "command with ckpt_path=last")
    assert (Path(cfg.paths.run_dir) / "body" / DONE).is_file() and signal.getsignal(signal.SIGTERM) is strict_signals


def test_a_staged_run_stopped_inside_a_stage_resumes_that_stage(synth_root, tmp_path, strict_signals):
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


# ----------------------------------------------------------------------------------- ckpt_path=FILE
def _package_checkpoint(path: Path) -> None:
    from wholebody.inference.checkpoint import build_net, load_model_config, write_checkpoint

    config = load_model_config("zoomnet_tiny")
    write_checkpoint(build_net(config), path, config)


NOT_RESUMABLE = {
    "state_dict": (lambda p: torch.save({"w": torch.ones(3)}, p), "holds a plain state dict, not a Lightning training checkpoint"),
    "package": (_package_checkpoint, "holds network weights only (as wholebody-convert"),
    "list": (lambda p: torch.save([1, 2], p), "holds a list, not a Lightning training checkpoint"),
    "no_loops": (lambda p: torch.save({"state_dict": {}, "optimizer_states": [], "epoch": 0, "global_step": 1}, p),
                 "is not a complete Lightning training checkpoint (no pytorch-lightning_version, lr_schedulers, loops)"),
    "wrong_types": (lambda p: torch.save({"pytorch-lightning_version": "2.6", "state_dict": {}, "optimizer_states": [],
                                          "lr_schedulers": [], "loops": {}, "epoch": "0", "global_step": -1}, p),
                    "is not a valid Lightning training checkpoint (epoch of the wrong type or range)"),
    "text": (lambda p: p.write_text("not a checkpoint\n"), "not a complete checkpoint (File is not a zip file)"),
}


@pytest.mark.parametrize("kind", NOT_RESUMABLE)
def test_ckpt_path_that_is_not_a_training_checkpoint_is_one_line(kind, tmp_path):
    """Lightning used to stop on these with a KeyError/TypeError traceback (the text file was already refused)."""
    from wholebody.training.run import ConfigError, resolve_ckpt_path

    build, message = NOT_RESUMABLE[kind]
    path = tmp_path / f"{kind}.ckpt"
    build(path)
    cfg = compose_config(["name=r", f"paths.output_dir={tmp_path}", "logger=csv", f"ckpt_path={path}"])
    with pytest.raises(ConfigError) as e:
        resolve_ckpt_path(cfg, resume=True)
    assert str(e.value).startswith(f"ckpt_path={path}: {message}") and "\n" not in str(e.value)


@pytest.mark.slow  # 6-13 s: a second interpreter start; the in-process test above checks the line
def test_the_command_says_it_in_one_line(synth_root, tmp_path):
    path = tmp_path / "converted.ckpt"
    _package_checkpoint(path)
    res = run_cli(["wholebody-train", *tiny_overrides(synth_root, tmp_path, "name=c", f"ckpt_path={path}")], cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-3000:]
    [line] = _stderr_lines(res.stderr, "error:")
    assert line.startswith(f"error: ckpt_path={path}: holds network weights only") and "model.net.init_from=" in line
    assert not list(tmp_path.glob("c/*/checkpoints"))


# ------------------------------------------------------------------------------- stage markers
def _staged_args(out: Path, *extra: str) -> list[str]:
    base = [o for o in tiny_overrides(out / "set", out) if not o.startswith("trainer.max_epochs")]
    return [*base, "+experiment=zoomnet_staged", "name=staged", *extra]


MARKERS = {
    "garbage": ("{not json", "unreadable stage marker"),
    "list": ("[1, 2]", "(a JSON list, not an object)"),
    "other_stage": ({"stage": "heads"}, "(it names stage 'heads')"),
    "epochs_text": ({"epochs": "80"}, "(epochs '80' is not a positive integer)"),
    "metric_text": ({"metrics": {"val/wholebody/AP": "0.5"}}, "(metric 'val/wholebody/AP' is '0.5', not a finite number)"),
    "metric_nan": ({"metrics": {"val/wholebody/AP": float("nan")}}, "(metric 'val/wholebody/AP' is 'nan', not a finite number)"),
    "metric_bool": ({"metrics": {"val/wholebody/AP": True}}, "(metric 'val/wholebody/AP' is 'True', not a finite number)"),
    "outside": ({"checkpoint": "/etc/passwd"}, "(its checkpoint '/etc/passwd' is not the stage's "),
    "no_checkpoint": ({}, "does not exist)"),
}


@pytest.mark.parametrize("kind", MARKERS)
def test_a_doctored_stage_marker_is_one_line(kind, tmp_path):
    """A marker was trusted as long as it was JSON: wrong types were a traceback (or, for a sweep, the
    objective), another stage's marker or a checkpoint path outside the run folder were taken as given."""
    from wholebody.training.run import ConfigError

    root = tmp_path / "staged" / "2026-01-01_00-00-00"
    body = root / "body"
    (body / "checkpoints").mkdir(parents=True)
    (body / ".hydra").mkdir()
    (body / ".hydra" / "overrides.yaml").write_text("[]\n")
    if kind != "no_checkpoint":
        torch.save({"state_dict": {}}, body / "checkpoints" / "last.ckpt")
    content, message = MARKERS[kind]
    if isinstance(content, dict):
        content = json.dumps({"stage": "body", "checkpoint": str(body / "checkpoints" / "last.ckpt"), "epochs": 80,
                              "metrics": {"val/body/AP": 0.5}, **content})
    (body / DONE).write_text(content)
    cfg = compose_config(_staged_args(tmp_path, "ckpt_path=last"))
    assert Path(cfg.paths.run_dir) == root
    with pytest.raises(ConfigError) as e:
        train_staged(cfg)
    assert str(e.value).startswith(f"{body / DONE}: ") and message in str(e.value) and "\n" not in str(e.value)
    assert not (root / "heads").exists()  # nothing ran past it


def test_a_moved_run_folder_keeps_its_markers_valid(tmp_path):
    from wholebody.training.staged import read_marker

    ckpt = tmp_path / "new" / "body" / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"x")
    marker = ckpt.parent.parent / DONE
    marker.write_text(json.dumps({"stage": "body", "checkpoint": "/old/place/run/body/checkpoints/last.ckpt",
                                  "epochs": 80, "metrics": {"val/body/AP": 0.25, "epoch": 79}}))
    assert read_marker(marker, "body", ckpt) == {"val/body/AP": 0.25, "epoch": 79.0}


@pytest.mark.parametrize("name", ["..", "../escape", "a/b", ""])
def test_a_stage_name_is_a_plain_folder_name(name):
    """A stage runs in <run>/<stage>/: a name with a slash or '..' wrote elsewhere."""
    from omegaconf import OmegaConf

    from wholebody.training.run import ConfigError
    from wholebody.training.staged import stage_names

    cfg = OmegaConf.create({"staged": {"stages": {"body": {}, name: {"trainer": {"max_epochs": 1}}}}})
    with pytest.raises(ConfigError, match=f"staged.stages: {name!r} is not a plain folder name"):
        stage_names(cfg)


# ------------------------------------------------------------------ multirun.yaml, .hydra/overrides.yaml
RECORDS = {
    "garbage": (b"hydra: [unclosed\n", "not a readable Hydra record ("),
    "binary": (b"\x00\xff\xfe\x80" * 16, "not a readable Hydra record ("),
    "a_list": (b"- a\n- b\n", "hydra.overrides.task is not a list of overrides"),
    "no_task": (b"hydra: {overrides: {}}\n", "hydra.overrides.task is not a list of overrides"),
    "task_text": (b"hydra: {overrides: {task: seed=1}}\n", "hydra.overrides.task is not a list of overrides"),
    "task_dicts": (b"hydra: {overrides: {task: [{a: 1}, 2]}}\n", "hydra.overrides.task holds entries that are not override strings"),
}


@pytest.mark.parametrize("kind", RECORDS)
def test_a_doctored_multirun_yaml_is_one_line(kind, tmp_path):
    """``ckpt_path=last -m`` read the sweep's multirun.yaml unchecked: a traceback from the launcher."""
    from wholebody.conf.folders import ResumeError, check_same_sweep

    content, message = RECORDS[kind]
    (tmp_path / "multirun.yaml").write_bytes(content)
    with pytest.raises(ResumeError) as e:
        check_same_sweep(tmp_path, ["seed=1,2", "ckpt_path=last"])
    assert str(e.value).startswith(f"{tmp_path / 'multirun.yaml'}: {message}") and "\n" not in str(e.value)


def test_the_recorded_overrides_are_read_as_written(tmp_path):
    """An interpolation in a recorded override is a string to compare, never resolved (it was: a sweep
    run with paths.output_dir=${oc.env:X} could not be resumed, and any resolver ran)."""
    from wholebody.conf.folders import check_same_sweep

    (tmp_path / "multirun.yaml").write_text("hydra:\n  overrides:\n    task: ['paths.output_dir=${oc.env:NOPE_NOT_SET}', 'seed=1,2']\n")
    check_same_sweep(tmp_path, ["paths.output_dir=${oc.env:NOPE_NOT_SET}", "seed=1,2", "ckpt_path=last"])


def test_a_doctored_sweep_record_stops_the_command_in_one_line(synth_root, tmp_path):
    sweep = tmp_path / "multirun" / "sw" / "2026-01-01_00-00-00"
    (sweep / "0" / ".hydra").mkdir(parents=True)
    (sweep / "0" / ".hydra" / "overrides.yaml").write_text("- seed=1\n")
    (sweep / "multirun.yaml").write_text("hydra: {overrides: {task: 3}}\n")
    res = run_cli(["wholebody-train", "-m", *tiny_overrides(synth_root, tmp_path, "name=sw", "seed=1,2", "ckpt_path=last")],
                  cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-3000:]
    assert _stderr_lines(res.stderr, "error:") == [
        f"error: {sweep / 'multirun.yaml'}: hydra.overrides.task is not a list of overrides"]


def test_a_doctored_job_overrides_record_is_one_line(tmp_path):
    from wholebody.training.run import ConfigError, resolve_ckpt_path

    run = tmp_path / "r" / "2026-01-01_00-00-00"
    (run / ".hydra").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    (run / ".hydra" / "overrides.yaml").write_text("{this: is, not: a list}\n")
    cfg = compose_config(["name=r", f"paths.output_dir={tmp_path}", "logger=csv", "ckpt_path=last"])
    assert Path(cfg.paths.run_dir) == run
    with pytest.raises(ConfigError) as e:
        resolve_ckpt_path(cfg, resume=True)
    assert str(e.value) == f"ckpt_path=last: {run / '.hydra' / 'overrides.yaml'}: the file is not a list of overrides"


# ------------------------------------------------------------- settings that used to fail after training
LATE = {
    "nms_thr=2": "nms_thr must be a number in [0, 1] or null, got 2",
    "nms_thr=-0.5": "nms_thr must be a number in [0, 1] or null, got -0.5",
    "nms_thr=nan": "nms_thr must be a number in [0, 1] or null, got nan",
    "nms_thr=high": "nms_thr must be a number in [0, 1] or null, got 'high'",
    "callbacks.evaluation.nms_thr=1.5": "callbacks.evaluation.nms_thr must be a number in [0, 1] or null, got 1.5",
    "callbacks.panel.score_thr=30": "callbacks.panel.score_thr must be a number in [0, 1], got 30",
    "optimized_metric=val/wholebody/APx": "optimized_metric=val/wholebody/APx: not a metric of this run: no validation logs it",
    "callbacks.checkpoint.monitor=val/heads/AP50": "callbacks.checkpoint.monitor=val/heads/AP50: not a metric of this run",
    "callbacks.panel.every_n_epochs=0": "callbacks.panel: every_n_epochs and num_images must be >= 1",
    "callbacks.last.every_n_train_steps=0": "callbacks.last: every_n_train_steps must be >= 1 or null, got 0",
}


@pytest.mark.parametrize("override", LATE)
def test_out_of_range_settings_are_refused_before_training(override, synth_root, tmp_path):
    """nms_thr=2 used to be refused by the evaluator at the first validation, after an epoch of training (a
    traceback); a monitored metric no validation logs stopped the run there too; a panel threshold above 1
    silently drew nothing; a callback's refusal was a Hydra traceback."""
    from wholebody.training.run import ConfigError

    cfg = compose_config(tiny_overrides(synth_root, tmp_path, "name=late", override))
    with pytest.raises(ConfigError) as e:
        train(cfg)
    assert str(e.value).startswith(LATE[override]) and "\n" not in str(e.value)
    assert not (Path(cfg.paths.run_dir) / "checkpoints").exists() and not (Path(cfg.paths.run_dir) / "csv").exists()


def test_a_sigterm_during_wholebody_eval_ckpt_is_not_success(tmp_path, strict_signals):
    """wholebody-eval-ckpt had the same hole: Lightning's stop inside the validation is status 0."""
    from wholebody.training.evaluate import evaluate

    ckpt = tmp_path / "net.ckpt"
    _package_checkpoint(ckpt)
    overrides = [f"ckpt={ckpt}", "data=synthetic", f"data.root={tmp_path / 'set'}", "data.synthetic.images=4",
                 "data.synthetic.val_images=3", "data.batch_size=1", "data.num_workers=0", "trainer=cpu",
                 "~callbacks.progress", f"paths.output_dir={tmp_path}",
                 "+callbacks.stop._target_=training_utils.SignalAt", f"+callbacks.stop.signum={int(signal.SIGTERM)}",
                 "+callbacks.stop.validation=true"]
    cfg = compose_config(overrides, config_name="eval", run_dir=tmp_path / "eval")
    with pytest.raises(Stopped) as e:
        evaluate(cfg)
    assert e.value.code == 143 and e.value.message.startswith(f"stopped by SIGTERM during the evaluation of {ckpt}: ")
    assert not (tmp_path / "eval" / "stats.json").exists() and signal.getsignal(signal.SIGTERM) is strict_signals
