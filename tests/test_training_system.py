"""The training system end to end through the CLI: multirun sweeps, wandb offline, DDP parity, kill-and-resume."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from training_utils import BIN, REPO, read_json, read_wandb_run, render_synthetic_set, run_cli, tiny_overrides
from wholebody.training.run import build_datamodule, compose_config, train


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    """The tiny synthetic set, rendered once here exactly as the runs below would render it."""
    return render_synthetic_set(tmp_path_factory)


def _val_people(root: Path) -> set[int]:
    gt = read_json(root / "annotations" / "coco_wholebody_val_v1.0.json")
    return {a["id"] for a in gt["annotations"] if not a["iscrowd"]}


def test_wandb_offline_logs_the_dashboard_into_the_run_folder(synth_root, tmp_path, monkeypatch):
    """What the dashboard shows, read back from the offline run file: per-part AP/AP50/AP75/AR and losses,
    the learning rate, the prediction panel, part-box AP, throughput, and after the final validation the
    stats and part-box tables and the report's charts; the resolved config with the code's git commit."""
    import json

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))  # no credentials anywhere: must not prompt
    cfg = compose_config(tiny_overrides(synth_root, tmp_path, "name=wb", "logger=wandb", "trainer.log_every_n_steps=1",
                                        "callbacks.report.plots=true"))
    metrics = train(cfg)
    run_dir = Path(cfg.paths.run_dir)
    runs = list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1
    run = read_wandb_run(runs[0])
    logged = {k: v for h in run["history"] for k, v in h.items()}
    parts = ("body", "foot", "face", "lefthand", "righthand", "wholebody")
    assert logged["val/wholebody/AP"] == pytest.approx(metrics["val/wholebody/AP"])
    assert {f"val/{p}/{s}" for p in parts for s in ("AP", "AP50", "AP75", "AR")} <= set(logged)
    assert {f"train/loss/{p}_epoch" for p in ("body", "boxes", "face", "lefthand", "righthand")} <= set(logged)
    assert any(k.startswith("lr-") for k in logged)
    assert logged["val/predictions/_type"].startswith("images")  # the panel of drawn predictions
    assert {f"val/boxes/{p}/AP" for p in ("face", "lefthand", "righthand")} <= set(logged)  # paper Table 8
    assert logged["train/img_per_s"] > 0
    assert not any(k.startswith("train/gpu_mem") for k in logged)  # on a GPU only
    for chart in ("pr_curves", "error_breakdown", "error_pr_curves", "box_pr_curves"):
        assert logged[f"val/final/{chart}/_type"].startswith("images"), chart
        assert (run_dir / "eval" / "report" / f"{chart}.png").is_file()
    # the final stats table holds the numbers of stats.json, row by row
    files = runs[0].parent / "files"
    assert logged["val/final/stats/_type"] == "table-file" and logged["val/final/part_boxes/nrows"] == 3
    table = json.loads((files / logged["val/final/stats/path"]).read_text())
    stats = read_json(run_dir / "stats.json")
    assert [row[0] for row in table["data"]] == list(parts)
    assert {row[0]: dict(zip(table["columns"][1:], row[1:])) for row in table["data"]} == stats
    assert read_json(run_dir / "eval" / "report" / "details.json")["keypoints"] == stats
    assert {"model", "data", "trainer", "seed", "code"} <= run["config"]
    code = run["config_values"]["code"]["value"] if "value" in run["config_values"]["code"] else run["config_values"]["code"]
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert code["git_commit"] == (head or None) and code["torch"] == torch.__version__


def test_ddp_two_processes_match_one_process(synth_root, tmp_path):
    """2 gloo processes: every val person is evaluated exactly once, and the stats equal a 1-process
    evaluation of the same weights."""
    res = run_cli(["wholebody-train", *tiny_overrides(synth_root, tmp_path, "name=ddp"), "trainer=ddp",
                   "trainer.devices=2", "trainer.accelerator=cpu", "data.batch_size=2", "data.val_batch_size=1"],
                  cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    run = tmp_path / "ddp" / "latest"  # the run's timestamped folder
    rows = read_json(run / "results.json")
    ids = [r["ann_id"] for r in rows]
    assert len(ids) == len(set(ids)) and set(ids) == _val_people(synth_root)
    ddp_stats = read_json(run / "stats.json")
    # the same weights evaluated by one process, through wholebody-eval-ckpt (same thread count: 1)
    res = run_cli(["wholebody-eval-ckpt", f"ckpt={run / 'checkpoints' / 'last.ckpt'}", "data=synthetic",
                   f"data.root={synth_root}", "data.synthetic.images=16", "data.synthetic.val_images=5",
                   "data.synthetic.workers=1", "data.num_workers=0", "data.batch_size=1", "trainer=cpu",
                   "~callbacks.progress", f"hydra.run.dir={tmp_path / 'one'}"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "wholebody" in res.stdout  # the final table
    one = read_json(tmp_path / "one" / "stats.json")
    # the same prediction for every person (the stats of a barely trained net are near 0, so compare rows
    # too; batches of one person on both sides make the arithmetic identical)
    one_rows = {r["ann_id"]: r for r in read_json(tmp_path / "one" / "results.json")}
    assert set(one_rows) == set(ids)
    for r in rows:
        for key in ("keypoints", "foot_kpts", "face_kpts", "lefthand_kpts", "righthand_kpts"):
            assert r[key] == pytest.approx(one_rows[r["ann_id"]][key], abs=1e-4), (r["ann_id"], key)
        assert r["score"] == pytest.approx(one_rows[r["ann_id"]]["score"], abs=1e-5)
    for part, s in ddp_stats.items():
        for k, v in s.items():
            assert one[part][k] == pytest.approx(v, abs=1e-9), (part, k)


def test_kill_and_resume_continues_at_the_right_step(synth_root, tmp_path):
    probe = tmp_path / "probe.json"
    args = tiny_overrides(synth_root, tmp_path, "name=resume", "trainer.max_epochs=2", "data.batch_size=2",
                          "+trainer.limit_train_batches=null", "callbacks.last.every_n_train_steps=2",
                          "trainer.check_val_every_n_epoch=2",
                          "+callbacks.probe._target_=training_utils.ResumeProbe", f"+callbacks.probe.path={probe}")
    args = [a for a in args if a != "+trainer.limit_train_batches=2"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests"), "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    last = tmp_path / "resume" / "latest" / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen([str(BIN / "wholebody-train"), *args], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    killed_at = None
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if last.exists():
            try:
                step = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
            except Exception:  # noqa: BLE001 - caught mid-replace; try again
                step = 0
            if step >= 4:
                proc.send_signal(signal.SIGKILL)
                killed_at = step
                break
        time.sleep(0.2)
    proc.wait(timeout=60)
    assert killed_at is not None, f"the run ended before a mid-epoch checkpoint: {proc.stderr.read()[-2000:]}"
    saved = torch.load(last, map_location="cpu", weights_only=True)
    # same command again, resuming
    res = run_cli(["wholebody-train", *args, "ckpt_path=last"], cwd=tmp_path, env={"PYTHONPATH": str(REPO / "tests")})
    assert res.returncode == 0, res.stderr[-3000:]
    starts = read_json(probe)
    first, resumed = starts[0], starts[-1]
    assert first["global_step"] == 0 and len(starts) == 2
    assert resumed["global_step"] == saved["global_step"]
    assert resumed["epoch"] == saved["epoch"]
    assert resumed["adam_step"] == saved["global_step"]  # optimizer state restored
    assert resumed["scheduler_last_epoch"] == saved["lr_schedulers"][0]["last_epoch"]
    final = torch.load(last, map_location="cpu", weights_only=True)
    dm = build_datamodule(compose_config(args), stage="fit")
    steps_per_epoch = len(dm.train_dataloader())
    assert steps_per_epoch >= 4
    # killed mid-epoch, resumed at the next batch of that epoch
    assert 0 < resumed["batch_idx"] == saved["global_step"] % steps_per_epoch
    # no step lost or repeated across the kill: two full epochs in all
    assert final["global_step"] == 2 * steps_per_epoch
    assert final["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"] == 2
    assert read_json(tmp_path / "resume" / "latest" / "stats.json")
