"""Sweeps as a researcher runs them: every run and sweep in its own timestamped folder, a re-run either
resumes every job of the same grid (ckpt_path=last) or starts a new folder, each job a wandb run named from
its swept overrides; the Optuna search; the Ray and SLURM launchers."""

from __future__ import annotations

import csv
import importlib.util
import os
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from training_utils import read_json, read_wandb_run, render_synthetic_set, run_cli, tiny_overrides
from wholebody.conf.folders import (
    ResumeError,
    check_same_sweep,
    is_stamp,
    new_folder,
    point_latest,
    run_folder,
    stamped_folders,
)
from wholebody.training.loggers import sweep_job_name, swept_keys
from wholebody.training.run import ConfigError, compose_config, train


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    return render_synthetic_set(tmp_path_factory)


# ---------------------------------------------------------------------------------------- folders
def test_new_folders_are_timestamped_and_never_reuse_a_taken_name(tmp_path):
    now = time.mktime((2026, 12, 1, 10, 57, 28, 0, 0, -1))
    first = new_folder(tmp_path, now)
    assert first.name == "2026-12-01_10-57-28" and is_stamp(first.name)
    names = []
    for _ in range(11):
        p = new_folder(tmp_path, now)
        p.mkdir()
        names.append(p.name)
    assert names[:3] == ["2026-12-01_10-57-28", "2026-12-01_10-57-28-1", "2026-12-01_10-57-28-2"]
    (tmp_path / "latest").symlink_to(names[0])
    (tmp_path / "notes").mkdir()
    # oldest first, numerically (-10 after -9), links and other folders left out
    assert [p.name for p in stamped_folders(tmp_path)] == names


def test_last_picks_the_newest_folder_holding_a_run_and_latest_points_at_it(tmp_path):
    old, new, empty = tmp_path / "2026-12-01_09-00-00", tmp_path / "2026-12-01_10-00-00", tmp_path / "2026-12-01_11-00-00"
    (old / "checkpoints").mkdir(parents=True)
    (old / "checkpoints" / "last.ckpt").write_bytes(b"x")
    (new / "3" / ".hydra").mkdir(parents=True)  # a sweep folder: one of its jobs started
    (new / "3" / ".hydra" / "overrides.yaml").write_text("- seed=1\n")
    empty.mkdir()  # a run refused at start-up leaves an empty folder: nothing to resume there
    assert run_folder(tmp_path, "last") == str(new)
    fresh = Path(run_folder(tmp_path, None))
    assert fresh.parent == tmp_path and is_stamp(fresh.name) and not fresh.exists()
    assert Path(run_folder(tmp_path / "none-yet", "last")).parent == tmp_path / "none-yet"
    assert point_latest(new / "3") == tmp_path / "latest" and os.readlink(tmp_path / "latest") == new.name
    assert point_latest(old) == tmp_path / "latest" and os.readlink(tmp_path / "latest") == old.name
    assert point_latest(tmp_path / "by-hand") is None and not (tmp_path / "by-hand").exists()


def test_a_resumed_sweep_must_repeat_its_grid(tmp_path):
    OmegaConf.save(OmegaConf.create({"hydra": {"overrides": {"task": ["lr=1e-3,5e-4", "seed=1,2"]}}}),
                   tmp_path / "multirun.yaml")
    check_same_sweep(tmp_path, ["lr=1e-3,5e-4", "seed=1,2", "ckpt_path=last"])
    with pytest.raises(ResumeError, match=r"it had lr=1e-3,5e-4, this command has lr=1e-3,2e-4"):
        check_same_sweep(tmp_path, ["lr=1e-3,2e-4", "seed=1,2", "ckpt_path=last"])


def test_a_sweep_job_is_named_by_the_overrides_its_sweep_varies():
    keys = swept_keys({"model.loss.body_sigma": "interval(1.5, 3)"},
                      ["data.root=/d", "trainer.max_epochs=3", "model.optimizer.lr=1e-3,5e-4", "seed=range(1,3)"])
    assert keys == {"model.loss.body_sigma", "model.optimizer.lr", "seed"}
    job = ["data.root=/d", "trainer.max_epochs=3", "model.optimizer.lr=0.0005", "seed=2", "model.loss.body_sigma=2.1"]
    assert sweep_job_name("zoomnet", job, keys) == "zoomnet lr=0.0005 seed=2 body_sigma=2.1"


# ---------------------------------------------------------------------------------------- single runs
def test_two_runs_of_one_command_write_two_folders_and_last_resumes_the_newest(synth_root, tmp_path):
    args = tiny_overrides(synth_root, tmp_path, "name=twice")
    first = compose_config(args)
    train(first)
    second = compose_config(args)
    assert Path(second.paths.run_dir) != Path(first.paths.run_dir)
    assert Path(second.paths.run_dir).parent == Path(first.paths.run_dir).parent == tmp_path / "twice"
    train(second)
    assert os.readlink(tmp_path / "twice" / "latest") == Path(second.paths.run_dir).name
    before = (Path(first.paths.run_dir) / "checkpoints" / "last.ckpt").stat().st_mtime_ns
    resumed = compose_config([*args, "ckpt_path=last", "trainer.max_epochs=2"])
    assert resumed.paths.run_dir == second.paths.run_dir
    train(resumed)
    import torch

    state = torch.load(Path(second.paths.run_dir) / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert state["global_step"] == 4  # went on from the second run's 2 steps
    assert (Path(first.paths.run_dir) / "checkpoints" / "last.ckpt").stat().st_mtime_ns == before
    with pytest.raises(ConfigError, match=r"no earlier run of this name under .*nothing"):
        train(compose_config([*tiny_overrides(synth_root, tmp_path, "name=nothing"), "ckpt_path=last"]))


# ---------------------------------------------------------------------------------------- sweeps
def _sweep(synth_root, out, *extra, logger="csv"):
    args = [a for a in tiny_overrides(synth_root, out, "name=sweep") if not a.startswith("logger=")]
    return run_cli(["wholebody-train", "-m", *args, f"logger={logger}", *extra], cwd=out,
                   env={"NETRC": str(out / "no-netrc")})  # no wandb credentials: offline, never a prompt


def test_a_2x2_sweep_reruns_into_a_new_folder_resumes_only_the_same_grid_and_names_its_wandb_runs(
        synth_root, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    grid = ["model.optimizer.lr=1e-3,5e-4", "seed=1,2"]
    res = _sweep(synth_root, tmp_path, *grid, logger="wandb")
    assert res.returncode == 0, res.stderr[-3000:]
    base = tmp_path / "multirun" / "sweep"
    (first,) = stamped_folders(base)
    assert os.readlink(base / "latest") == first.name
    expected = [("0.001", "1"), ("0.001", "2"), ("0.0005", "1"), ("0.0005", "2")]
    for num, (lr, seed) in enumerate(expected):
        job = first / str(num)
        overrides = OmegaConf.load(job / ".hydra" / "overrides.yaml")
        assert f"model.optimizer.lr={lr}" in overrides and f"seed={seed}" in overrides
        assert OmegaConf.load(job / ".hydra" / "hydra.yaml").hydra.job.num == num
        assert set(read_json(job / "stats.json")) == {"body", "foot", "face", "lefthand", "righthand", "wholebody"}
        (wandb_file,) = job.glob("wandb/offline-run-*/run-*.wandb")
        run = read_wandb_run(wandb_file)["run"]
        assert run["name"] == f"sweep lr={lr} seed={seed}" and run["group"] == f"sweep/{first.name}"

    # the same command again: a new sweep folder; the first one is untouched
    stamp = {p: p.stat().st_mtime_ns for p in first.rglob("*.ckpt")}
    res = _sweep(synth_root, tmp_path, *grid)
    assert res.returncode == 0, res.stderr[-3000:]
    older, second = stamped_folders(base)
    assert older == first and {p: p.stat().st_mtime_ns for p in first.rglob("*.ckpt")} == stamp
    assert os.readlink(base / "latest") == second.name

    # a resume with another grid is refused before any job runs, in one line, and leaves no trace
    record = (second / "multirun.yaml").read_text()
    res = _sweep(synth_root, tmp_path, "model.optimizer.lr=1e-3,2e-4", "seed=1,2", "ckpt_path=last")
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-3000:]
    (line,) = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert "it had model.optimizer.lr=1e-3,5e-4, this command has model.optimizer.lr=1e-3,2e-4" in line
    assert (second / "multirun.yaml").read_text() == record and len(stamped_folders(base)) == 2

    # the same grid with ckpt_path=last resumes every job of the newest sweep; a job that never saved
    # a checkpoint (here: its folder removed) starts afresh in its place
    import shutil

    shutil.rmtree(second / "3")
    res = _sweep(synth_root, tmp_path, *grid, "ckpt_path=last")
    assert res.returncode == 0, res.stderr[-3000:]
    assert len(stamped_folders(base)) == 2
    log = res.stdout + res.stderr
    resumed = {n for n in range(4) if f"{second / str(n) / 'checkpoints' / 'last.ckpt'}" in log}
    assert resumed == {0, 1, 2} and "job 3 of the resumed sweep" in log
    assert (second / "3" / "stats.json").is_file()
    # the resumed jobs' earlier metrics are kept beside the new ones
    assert sorted(p.parent.name for p in (second / "0" / "csv").glob("*/metrics.csv")) == ["version_0", "version_1"]


def test_a_resume_of_a_sweep_that_never_ran_says_so(synth_root, tmp_path):
    res = _sweep(synth_root, tmp_path, "seed=1,2", "ckpt_path=last")
    assert res.returncode == 2 and "no earlier sweep of this name" in res.stderr, res.stderr[-3000:]


# ---------------------------------------------------------------------------------------- search
def _needs(module: str, extra: str, what: str):
    """Skip where an optional extra is absent (``[dev]`` installs them all, so the suite runs these)."""
    return pytest.mark.skipif(importlib.util.find_spec(module) is None,
                              reason=f"{what} needs the extra: pip install wholebody[{extra}]")


needs_optuna = _needs("hydra_plugins.hydra_optuna_sweeper", "search", "the Optuna search")
needs_ray = _needs("hydra_plugins.hydra_ray_launcher", "ray", "the Ray launcher")
needs_submitit = _needs("hydra_plugins.hydra_submitit_launcher", "slurm", "the SLURM launcher")


@needs_optuna
def test_the_search_config_composes_with_its_metric_and_space():
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_module("wholebody.conf", version_base="1.3"):
        cfg = compose("train", overrides=["+hparams_search=zoomnet_tiny_optuna"], return_hydra_config=True)
    assert cfg.optimized_metric == "val/wholebody/AP" and cfg.hydra.sweeper.direction == "maximize"
    assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper") and cfg.hydra.mode.name == "MULTIRUN"
    assert set(cfg.hydra.sweeper.params) == {"model.optimizer.lr", "model.loss.body_sigma", "model.loss.face_sigma",
                                             "model.loss.weights.boxes", "model.loss.weights.face",
                                             "model.loss.weights.lefthand"}
    cfg.model.loss.weights.lefthand = 0.7
    assert cfg.model.loss.weights.righthand == 0.7  # the hands share one weight


@needs_optuna
def test_a_two_trial_optuna_search_receives_each_trials_metric(synth_root, tmp_path):
    import optuna

    db = tmp_path / "search.db"
    args = [a for a in tiny_overrides(synth_root, tmp_path) if not a.startswith("model=")]
    # val/loss (minimised) differs between two 2-step trials; AP would be 0 for both
    res = run_cli(["wholebody-train", "+hparams_search=zoomnet_tiny_optuna", *args, "hydra.sweeper.n_trials=2",
                   "hydra.sweeper.sampler.n_startup_trials=2", "optimized_metric=val/loss",
                   "hydra.sweeper.direction=minimize", f"hydra.sweeper.storage=sqlite:///{db}"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    (sweep,) = stamped_folders(tmp_path / "multirun" / "zoomnet_tiny-search")
    study = optuna.load_study(study_name="zoomnet_tiny-search", storage=f"sqlite:///{db}")
    trials = sorted(study.trials, key=lambda t: t.number)
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    for t in trials:
        job = sweep / str(t.number)
        overrides = OmegaConf.load(job / ".hydra" / "overrides.yaml")
        assert f"model.optimizer.lr={t.params['model.optimizer.lr']}" in overrides
        (metrics_file,) = (job / "csv").rglob("metrics.csv")
        val_losses = [float(r["val/loss"]) for r in csv.DictReader(metrics_file.open()) if r.get("val/loss")]
        assert t.value == pytest.approx(val_losses[-1], rel=1e-6)  # the final validation's, as train(cfg) returned
    assert trials[0].value != trials[1].value
    best = OmegaConf.load(sweep / "optimization_results.yaml")
    assert best.best_value == pytest.approx(min(t.value for t in trials))


# ---------------------------------------------------------------------------------------- launchers
def _compose_launcher(name: str, *extra: str):
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_module("wholebody.conf", version_base="1.3"):
        return compose("train", overrides=[f"hydra/launcher={name}", *extra], return_hydra_config=True)


@pytest.mark.parametrize(("name", "target"), [
    pytest.param("ray_example", "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher", marks=needs_ray),
    pytest.param("submitit_slurm_example", "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
                 marks=needs_submitit),
])
def test_the_cluster_launcher_examples_compose_and_build(name, target):
    from hydra.utils import instantiate

    cfg = _compose_launcher(name)
    assert cfg.hydra.launcher._target_ == target
    launcher = instantiate(cfg.hydra.launcher)
    assert type(launcher).__name__ == target.rsplit(".", 1)[-1]
    if name == "ray_example":
        assert cfg.hydra.launcher.ray.remote.num_gpus == 1 and cfg.hydra.launcher.ray.init.address is None
    else:
        assert cfg.hydra.launcher.gpus_per_node == cfg.hydra.launcher.tasks_per_node == 8


@needs_ray
def test_a_ray_sweep_of_multi_device_ddp_jobs_is_refused(tmp_path):
    from hydra.core.hydra_config import HydraConfig

    from wholebody.training.run import _guard_multirun_ddp

    cfg = _compose_launcher("ray_example", "hydra.mode=MULTIRUN", "trainer=ddp", "trainer.devices=2",
                            f"paths.output_dir={tmp_path}", "paths.run_dir=unused")
    HydraConfig.instance().set_config(cfg)
    with pytest.raises(ConfigError, match=r"a sweep through RayLauncher cannot run DDP jobs .*trainer.devices=1"):
        _guard_multirun_ddp(cfg)


@needs_ray
def test_a_local_ray_sweep_runs_each_job_in_the_one_sweep_folder(synth_root, tmp_path):
    res = run_cli(["wholebody-train", "-m", "hydra/launcher=ray_example", "hydra.launcher.ray.remote.num_gpus=0",
                   "hydra.launcher.ray.remote.num_cpus=1", "+hydra.launcher.ray.init.num_cpus=2",
                   "+hydra.launcher.ray.init.include_dashboard=false",
                   *tiny_overrides(synth_root, tmp_path, "name=ray"), "seed=1,2"], cwd=tmp_path,
                  env={"RAY_USAGE_STATS_ENABLED": "0"})
    assert res.returncode == 0, res.stderr[-3000:]
    (sweep,) = stamped_folders(tmp_path / "multirun" / "ray")  # every Ray worker resolved the same folder
    for num, seed in enumerate(("1", "2")):
        assert f"seed={seed}" in OmegaConf.load(sweep / str(num) / ".hydra" / "overrides.yaml")
        assert read_json(sweep / str(num) / "stats.json")["wholebody"]["AP"] >= 0
