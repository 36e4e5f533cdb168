"""The training system: configs compose, a tiny run trains and evaluates, eval of a checkpoint, errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

import wholebody
from training_utils import read_json, run_cli, tiny_overrides
from wholebody.evaluation import STAT_NAMES, WholeBodyEvaluator
from wholebody.keypoints import EVAL_PARTS
from wholebody.training.evaluate import evaluate
from wholebody.training.module import NonFiniteLossError, PoseModule
from wholebody.training.run import ConfigError, compose_config, train

EXPERIMENTS = sorted(p.stem for p in (Path(wholebody.__file__).parent / "conf" / "experiment").glob("*.yaml"))


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    """A tiny synthetic set, generated once for the module (runs reuse it: same settings)."""
    return tmp_path_factory.mktemp("synth") / "set"


@pytest.fixture(scope="module")
def trained(synth_root, tmp_path_factory):
    """One tiny training run: (config, metrics, run_dir)."""
    out = tmp_path_factory.mktemp("runs")
    cfg = compose_config(tiny_overrides(synth_root, out, "name=tiny"))
    metrics = train(cfg)
    return cfg, metrics, Path(cfg.paths.run_dir)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_instantiates(experiment, tmp_path):
    extra = ["model.init_from=[]"] if experiment in ("zoomnet_heads", "zoomnet_finetune") else []
    extra.append("model.net.pretrained=null")  # no ImageNet weights here (test_model_pretrained loads them)
    cfg = compose_config([f"+experiment={experiment}", f"data.root={tmp_path}", f"paths.output_dir={tmp_path}",
                          "logger=csv", *extra])
    assert cfg.name == experiment
    module = instantiate(cfg.module, _convert_="all")
    assert isinstance(module, PoseModule)
    datamodule = instantiate(cfg.data, _convert_="all")
    assert tuple(datamodule.input_size) == tuple(cfg.model.input_size)
    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c is not None]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=False)
    assert trainer.max_epochs == cfg.trainer.max_epochs
    opt = module.configure_optimizers()  # a dict, or ([optimizer], [schedulers]) with a warm-up
    optimizer = opt["optimizer"] if isinstance(opt, dict) else opt[0][0]
    assert optimizer.defaults["lr"] == cfg.model.optimizer.lr


def test_experiments_hold_the_paper_recipe():
    cfg = compose_config(["+experiment=zoomnet", "data.root=/data/coco"])
    assert list(cfg.model.input_size) == [288, 384]
    assert cfg.model.optimizer._target_ == "torch.optim.Adam" and cfg.model.optimizer.lr == 1e-3
    assert list(cfg.model.scheduler.milestones) == [80, 100] and cfg.model.scheduler.gamma == 0.1
    assert cfg.trainer.max_epochs == 120 and cfg.data.batch_size == 32
    assert cfg.model.loss.body_sigma == cfg.model.loss.face_sigma == cfg.model.loss.hand_sigma == 3.0
    assert cfg.model.loss.kind == "sse" and set(cfg.model.loss.weights.values()) == {1.0}
    assert cfg.data.augment.scale_factor == 0.35 and cfg.data.augment.rotation_factor == 45.0
    assert cfg.data.augment.flip_prob == 0.5 and cfg.model.flip_test
    body = compose_config(["+experiment=zoomnet_body", "data.root=/x"])
    assert body.model.loss.weights.face == 0 and body.model.loss.weights.body == 1
    heads = compose_config(["+experiment=zoomnet_heads", "data.root=/x"])
    assert heads.model.loss.weights.body == 0 and heads.model.net.train_rois == "gt"
    # its BodyNet is untrained: it validates on ground-truth part boxes and keeps the best heads
    assert heads.oracle_boxes and heads.callbacks.checkpoint.monitor == "val/heads/AP"


def test_tiny_run_trains_evaluates_and_writes_outputs(trained):
    cfg, metrics, run_dir = trained
    for part in EVAL_PARTS:
        assert 0.0 <= metrics[f"val/{part}/AP"] <= 1.0
    stats = read_json(run_dir / "stats.json")
    assert list(stats) == list(EVAL_PARTS) and all(list(stats[p]) == list(STAT_NAMES) for p in EVAL_PARTS)
    rows = read_json(run_dir / "results.json")
    # one row per val person, every one evaluable against the ground truth
    gt = read_json(Path(cfg.data.root) / "annotations" / "coco_wholebody_val_v1.0.json")
    usable = {a["id"] for a in gt["annotations"] if not a["iscrowd"]}
    assert sorted(r["ann_id"] for r in rows) == sorted(usable)
    ev = WholeBodyEvaluator(Path(cfg.data.root) / "annotations" / "coco_wholebody_val_v1.0.json")
    ev.process(rows)
    assert ev.evaluate() == stats
    ckpts = run_dir / "checkpoints"
    assert (ckpts / "last.ckpt").is_file() and len(list(ckpts.glob("epoch*.ckpt"))) == 1
    ck = torch.load(ckpts / "last.ckpt", map_location="cpu", weights_only=True)
    assert ck["wholebody"]["model_config"]["net"]["_target_"] == "wholebody.models.ZoomNet"
    # the weights once, under the network's own names
    assert ck["state_dict"] and all(k.startswith("net.") for k in ck["state_dict"])
    assert 0.0 <= metrics["val/heads/AP"] <= 1.0 and "train/loss/total_epoch" in metrics
    assert (run_dir / "eval" / "val_epoch000_stats.json").is_file()
    # the results rows once per validation, compact; "latest" links to them
    latest = run_dir / "eval" / "val_latest_results.json"
    assert latest.is_symlink() and os.readlink(latest) == "val_epoch001_results.json"  # the final validation's (after epoch 0)
    assert read_json(latest) == rows and b"\n " not in latest.read_bytes()
    assert read_json(run_dir / "eval" / "val_latest_stats.json") == read_json(run_dir / "eval" / "val_epoch000_stats.json")
    assert list((run_dir / "eval").glob("panel_epoch*.png"))
    header = (run_dir / "csv" / "version_0" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header.count("val/wholebody/AP") == 1 and "val/wholebody/AP75" in header


def test_unreadable_training_images_are_counted_across_loader_workers(trained, tmp_path):
    """A corrupt training image never stops the epoch; the replacements counted in two loader worker
    processes reach the logged metric."""
    import shutil

    import cv2

    from wholebody.data.coco import load_coco_wholebody

    cfg, _, _ = trained
    root = tmp_path / "set"
    shutil.copytree(cfg.data.root, root)
    records = load_coco_wholebody(root / "annotations" / "coco_wholebody_train_v1.0.json", root / "train2017").records
    victim = records[0].image_path
    Path(victim).write_bytes(b"not a jpeg")
    assert cv2.imread(victim) is None
    expected = sum(r.image_path == victim for r in records)
    out = tmp_path / "runs"
    overrides = [o for o in tiny_overrides(root, out, "name=bad_image") if not o.startswith(("+trainer.limit_train",
                                                                                           "data.num_workers"))]
    cfg = compose_config([*overrides, "data.num_workers=2", "data.drop_last=false", "trainer.check_val_every_n_epoch=2"])
    metrics = train(cfg)
    assert metrics["train/unreadable_images"] == expected
    # no validation ran during this one-epoch fit, yet the epoch left a checkpoint to resume from
    assert (Path(cfg.paths.run_dir) / "checkpoints" / "last.ckpt").is_file()


def test_validation_on_detected_persons_predicts_without_a_loss(trained, tmp_path):
    """Detected persons have no targets: their batches skip the loss (no val/loss on empty targets) and
    still give their rows, one per detected box."""
    cfg, _, _ = trained
    gt = read_json(Path(cfg.data.root) / "annotations" / "coco_wholebody_val_v1.0.json")
    dets = [{"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 0.8}
            for a in gt["annotations"] if not a["iscrowd"]]
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    run = compose_config(tiny_overrides(Path(cfg.data.root), tmp_path, "name=dets", f"data.val_boxes={tmp_path / 'dets.json'}"))
    metrics = train(run)
    assert "val/wholebody/AP" in metrics and not any(k.startswith("val/loss") for k in metrics)
    rows = read_json(Path(run.paths.run_dir) / "results.json")
    assert sorted(r["bbox_id"] for r in rows) == list(range(len(dets)))


def _eval_overrides(cfg, *extra: str) -> list[str]:
    return ["data=synthetic", f"data.root={cfg.data.root}", "data.synthetic.images=16", "data.synthetic.val_images=5",
            "data.num_workers=0", "trainer=cpu", "~callbacks.progress", "logger=csv", *extra]


def test_evaluation_in_the_training_folder_keeps_the_training_files(trained):
    """``wholebody-eval-ckpt ckpt=last`` run in the training folder: the network comes from the
    checkpoint, and the stats land beside the training's own, not over them."""
    cfg, metrics, run_dir = trained
    before = {p: p.read_bytes() for p in [run_dir / "stats.json", *sorted((run_dir / "csv").rglob("*.csv"))]}
    ecfg = compose_config(_eval_overrides(cfg, "ckpt=last", "flip_test=false", "model.net.head_widths=[8,16]"),
                          config_name="eval", run_dir=run_dir)  # a wrong model: the checkpoint's own config is used
    em = evaluate(ecfg)
    assert len(before) > 1 and all(p.read_bytes() == b for p, b in before.items())  # stats and csv logs kept
    stats = read_json(run_dir / "eval" / "last" / "stats.json")
    assert list((run_dir / "eval" / "last" / "csv").rglob("*.csv"))
    assert stats["wholebody"]["AP"] == em["val/wholebody/AP"]


def test_the_optimized_metric_is_named_in_the_config_and_checked(trained, tmp_path):
    cfg, metrics, run_dir = trained
    assert cfg.optimized_metric == "val/wholebody/AP" and cfg.callbacks.checkpoint.monitor == cfg.optimized_metric
    best = next((run_dir / "checkpoints").glob("epoch*.ckpt"))
    em = evaluate(compose_config(_eval_overrides(cfg, f"ckpt={best}", "optimized_metric=val/face/AP",
                                                 f"paths.output_dir={tmp_path}"), config_name="eval",
                                 run_dir=tmp_path / "a"))
    assert "val/face/AP" in em
    with pytest.raises(ConfigError, match="optimized_metric=val/wholebody/APx: not a metric of this run"):
        evaluate(compose_config(_eval_overrides(cfg, f"ckpt={best}", "optimized_metric=val/wholebody/APx"),
                                config_name="eval", run_dir=tmp_path / "b"))


def test_no_logger_trains(synth_root, tmp_path):
    cfg = compose_config(tiny_overrides(synth_root, tmp_path, "logger=none", "name=nolog"))
    assert 0.0 <= train(cfg)["val/wholebody/AP"] <= 1.0


def test_oracle_boxes_refuse_detected_persons(synth_root, tmp_path):
    cfg = compose_config(tiny_overrides(synth_root, tmp_path, "oracle_boxes=true", "data.val_boxes=dets.json"))
    with pytest.raises(ConfigError, match="oracle_boxes"):
        train(cfg)


def test_demo_job_writes_stats_results_checkpoints_and_overlays(synth_root, tmp_path, capsys):
    """The demo's own entry point (``make demo``), shortened to one epoch on a tiny set."""
    from wholebody.cli.demo import main

    assert main(["--help"]) == 0 and "outputs/demo" in capsys.readouterr().out
    assert main([f"data.root={synth_root}", "data.synthetic.images=16", "data.synthetic.val_images=5",
                 "data.synthetic.workers=1", "data.synthetic.preset=default", "trainer.max_epochs=1",
                 "trainer.check_val_every_n_epoch=1", "~callbacks.progress", "trainer.enable_model_summary=false",
                 f"paths.output_dir={tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert "demo finished" in out and "body" in out and "wholebody" in out
    run = tmp_path / "demo"
    stats = read_json(run / "stats.json")
    assert list(stats) == list(EVAL_PARTS) and all(list(stats[p]) == list(STAT_NAMES) for p in EVAL_PARTS)
    assert read_json(run / "results.json") and (run / "checkpoints" / "last.ckpt").is_file()
    assert list((run / "overlays").glob("*.jpg"))


def test_evaluation_reproduces_the_stats_of_the_checkpoint(trained, tmp_path):
    cfg, metrics, run_dir = trained
    best = next((run_dir / "checkpoints").glob("epoch*.ckpt"))
    ecfg = compose_config(_eval_overrides(cfg, f"ckpt={best}", f"paths.output_dir={tmp_path}"),
                          config_name="eval", run_dir=tmp_path / "eval")
    assert "mode" not in ecfg and ecfg.ckpt_path == str(best)
    em = evaluate(ecfg)
    assert read_json(tmp_path / "eval" / "stats.json") == read_json(run_dir / "stats.json")
    assert em["val/wholebody/AP"] == metrics["val/wholebody/AP"]


def test_resuming_an_existing_run_folder_needs_a_decision(trained):
    cfg, _, _ = trained
    with pytest.raises(ConfigError, match="ckpt_path=last"):
        train(cfg.copy())
    c = cfg.copy()
    c.ckpt_path = "/no/such/file.ckpt"
    with pytest.raises(ConfigError, match="no such checkpoint"):
        train(c)


@pytest.mark.parametrize("override,message", [
    ("model.input_size=[100,128]", "multiples of 32"),
    ("trainer.max_epochs=0", "max_epochs"),
])
def test_bad_config_values_get_clear_errors(override, message, synth_root, tmp_path):
    cfg = compose_config(tiny_overrides(synth_root, tmp_path, override))
    with pytest.raises(ConfigError, match=message):
        train(cfg)


def test_cli_reports_bad_config_in_one_line(tmp_path):
    res = run_cli(["wholebody-train", "model.input_size=[100,128]", "logger=csv", f"paths.output_dir={tmp_path}"],
                  cwd=tmp_path)
    assert res.returncode == 2, res.stderr[-2000:]
    assert "error: model.input_size must be positive multiples of 32" in res.stderr and "Traceback" not in res.stderr


def test_nan_loss_stops_with_step_and_batch_ids():
    net = torch.nn.Linear(1, 1)
    module = PoseModule(net, torch.nn.MSELoss(), optimizer=torch.optim.SGD)
    batch = {"meta": {"image_id": torch.tensor([7, 9]), "ann_id": torch.tensor([70, 90])}}
    module._check_finite(torch.tensor(1.0), batch)  # finite: nothing happens
    with pytest.raises(NonFiniteLossError, match=r"global step 0.*\(7, 70\), \(9, 90\)"):
        module._check_finite(torch.tensor(float("nan")), batch)


def test_oracle_boxes_need_a_zooming_network():
    with pytest.raises(ValueError, match="oracle_boxes"):
        PoseModule(torch.nn.Linear(1, 1), torch.nn.MSELoss(), optimizer=torch.optim.SGD, oracle_boxes=True)
