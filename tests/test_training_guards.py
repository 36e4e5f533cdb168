"""Guards of the training start-up: a local sweep of multi-device DDP jobs is refused in one line, and
wandb with credentials but no reachable server logs offline within seconds instead of waiting."""

from __future__ import annotations

import logging
import os
import socket
import time

import pytest
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from training_utils import run_cli
from wholebody.training.loggers import _prepare_wandb, wandb_server_reachable
from wholebody.training.run import ConfigError, compose_config, train


def _multirun(overrides: list[str], tmp_path):
    cfg = compose_config([*overrides, "hydra.mode=MULTIRUN", "logger=csv", f"paths.output_dir={tmp_path}"])
    assert HydraConfig.get().mode.name == "MULTIRUN"
    return cfg


@pytest.mark.parametrize("devices", ["2", "-1", "[0,1]"])
def test_a_local_sweep_of_multi_device_ddp_jobs_is_refused(devices, tmp_path):
    cfg = _multirun(["trainer=ddp", f"trainer.devices={devices}"], tmp_path)
    with pytest.raises(ConfigError, match=r"local sweep .* cannot run DDP jobs .*hydra/launcher=submitit_slurm_example") as e:
        train(cfg)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "zoomnet_tiny-synthetic" / "checkpoints").exists()


def test_single_device_ddp_sweeps_and_ddp_runs_are_allowed_past_the_guard(tmp_path):
    from wholebody.training.run import _guard_multirun_ddp

    _guard_multirun_ddp(_multirun(["trainer=ddp", "trainer.devices=1"], tmp_path))
    cfg = compose_config(["trainer=ddp", "trainer.devices=2", "logger=csv", f"paths.output_dir={tmp_path}"])
    _guard_multirun_ddp(cfg)  # a single run: Lightning starts the ranks itself


def test_the_command_refuses_it_in_one_line(tmp_path):
    res = run_cli(["wholebody-train", "-m", "trainer=ddp", "trainer.devices=2", "logger=csv", "seed=1,2",
                   f"paths.output_dir={tmp_path}"], cwd=tmp_path, timeout=300)
    assert res.returncode == 2, res.stderr[-2000:]
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "submitit_slurm_example" in errors[0] and "Traceback" not in res.stderr
    # the sweep folder takes the default run name (model-data), resolved before any job exists
    assert (tmp_path / "multirun" / "zoomnet_tiny-synthetic").is_dir()


@pytest.fixture()
def wandb_env(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    return OmegaConf.create({"_target_": "lightning.pytorch.loggers.WandbLogger", "save_dir": str(tmp_path),
                             "offline": False, "project": "p"})


def test_wandb_without_a_reachable_server_goes_offline_in_seconds(wandb_env, monkeypatch, caplog):
    with socket.socket() as s:  # a loopback port nobody listens on: the connection is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")
    t0 = time.perf_counter()
    with caplog.at_level(logging.WARNING):
        node = _prepare_wandb(wandb_env)
    assert time.perf_counter() - t0 < 5
    assert node.offline is True and os.environ["WANDB_MODE"] == "offline"
    assert f"127.0.0.1:{port} is not reachable" in caplog.text and "logging offline" in caplog.text


def test_wandb_with_a_reachable_server_stays_online(wandb_env, monkeypatch):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")
        assert wandb_server_reachable() == (True, f"127.0.0.1:{port}")
        node = _prepare_wandb(wandb_env)
    assert node.offline is False and os.environ.get("WANDB_MODE") != "offline"


def test_each_sweep_job_gets_its_own_wandb_run_name_group_and_tag(tmp_path):
    from wholebody.training.loggers import build_loggers, sweep_job_name

    assert sweep_job_name("zoomnet", ["+experiment=zoomnet", "model.optimizer.lr=0.0005", "seed=2",
                                      "paths.output_dir=/o", "data.root=/d"]) == "zoomnet lr=0.0005 seed=2"
    assert sweep_job_name("r", ["a.lr=1", "b.lr=2"]) == "r a.lr=1 b.lr=2"  # ambiguous short keys stay long
    cfg = compose_config(["+experiment=zoomnet", "model.optimizer.lr=0.0005", "seed=2", "hydra.mode=MULTIRUN",
                          f"paths.output_dir={tmp_path}"], run_dir=tmp_path / "multirun" / "zoomnet-sweep" / "3")
    (lg,) = build_loggers(cfg.logger, run_name=str(cfg.name), run_dir=str(cfg.paths.run_dir))
    init = lg._wandb_init
    assert init["name"] == f"{cfg.name} lr=0.0005 seed=2" and init["group"] == "zoomnet-sweep"
    assert "zoomnet" in init["tags"]
    # a single run keeps the plain names
    one = compose_config(["logger=wandb", f"paths.output_dir={tmp_path}"])
    (lg,) = build_loggers(one.logger, run_name=str(one.name), run_dir=str(one.paths.run_dir))
    assert lg._wandb_init["name"] == lg._wandb_init["group"] == one.name == "zoomnet_tiny-synthetic"
