"""The staged recipe as one job (+experiment=zoomnet_staged), its schedule, the per-step warm-up, frozen
sub-modules, and the augmentation of the paper experiments."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as L
import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback

from training_utils import tiny_overrides
from wholebody.data.transforms import AugmentConfig, half_body_region, sample_crop
from wholebody.inference.checkpoint import read_checkpoint
from wholebody.io_utils import folder_lock
from wholebody.keypoints import COCO_WHOLEBODY
from wholebody.training.module import PoseModule
from wholebody.training.run import ConfigError, compose_config
from wholebody.training.staged import DONE, stage_config, stage_names, train_staged

#: what StartProbe saw, per stage folder name: [{epoch, global_step, lr, state}, ...] (one per fit)
STARTS: dict[str, list[dict]] = {}


class StartProbe(Callback):
    """Records the network's tensors, epoch, step and learning rate when a fit starts training."""

    def on_train_start(self, trainer, pl_module) -> None:
        STARTS.setdefault(Path(trainer.default_root_dir).name, []).append({
            "epoch": trainer.current_epoch, "global_step": trainer.global_step,
            "lr": trainer.optimizers[0].param_groups[0]["lr"],
            "state": {k: v.detach().clone() for k, v in pl_module.net.state_dict().items()},
        })


class CrashInSecondEpoch(Callback):
    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == 1:
            raise RuntimeError("simulated crash")


def _staged(synth_root: Path, out: Path, *extra: str) -> list[str]:
    base = [o for o in tiny_overrides(synth_root, out, *extra) if not o.startswith("trainer.max_epochs")]
    return [*base, "+experiment=zoomnet_staged", "name=staged", "callbacks.report.analyze=false",
            f"+callbacks.probe._target_={__name__}.StartProbe",
            "staged.stages.body.trainer.max_epochs=1", "staged.stages.heads.trainer.max_epochs=2",
            "staged.stages.finetune.trainer.max_epochs=1"]


def _net(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)[0]


def _same(a: dict, b: dict, prefixes: tuple[str, ...]) -> bool:
    keys = [k for k in b if k.startswith(prefixes)]
    assert keys
    return all(torch.equal(a[k], b[k]) for k in keys)


@pytest.fixture(scope="module")
def crashed_and_resumed(tmp_path_factory):
    """A staged run killed in the heads stage's second epoch, then the same command with ckpt_path=last."""
    synth_root, out = tmp_path_factory.mktemp("synth") / "set", tmp_path_factory.mktemp("staged")
    STARTS.clear()
    crash = f"+staged.stages.heads.callbacks.crash._target_={__name__}.CrashInSecondEpoch"
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_staged(compose_config(_staged(synth_root, out, crash)))
    first = {k: list(v) for k, v in STARTS.items()}
    root = Path(compose_config(_staged(synth_root, out, "ckpt_path=last")).paths.run_dir)
    body_ckpt = root / "body" / "checkpoints" / "last.ckpt"
    body_mtime = body_ckpt.stat().st_mtime_ns
    metrics = train_staged(compose_config(_staged(synth_root, out, "ckpt_path=last")))
    second = {k: v[len(first.get(k, [])):] for k, v in STARTS.items()}  # the fits of the re-run
    return {"root": root, "first": first, "second": second, "metrics": metrics, "body_mtime": body_mtime,
            "again": lambda: train_staged(compose_config(_staged(synth_root, out, "ckpt_path=last")))}


def test_each_stage_starts_from_the_previous_stage(crashed_and_resumed):
    root, first, second = (crashed_and_resumed[k] for k in ("root", "first", "second"))
    body = _net(root / "body" / "checkpoints" / "last.ckpt")
    heads = _net(root / "heads" / "checkpoints" / "last.ckpt")
    heads_start = first["heads"][0]["state"]
    # the heads stage started from the body stage's FeatureNet and BodyNet, its heads from their own init
    assert _same(heads_start, body, ("feature_net.", "body_net."))
    assert not _same(heads_start, body, ("face_head.", "hand_head."))
    # ... which it kept frozen, BatchNorm statistics included
    assert _same(heads, body, ("feature_net.", "body_net."))
    assert not _same(heads, body, ("face_head.",))
    # the fine-tune started from every tensor of the heads stage
    assert _same(second["finetune"][0]["state"], heads, ("",))


def test_a_rerun_skips_finished_stages_and_resumes_the_unfinished_one(crashed_and_resumed):
    root, first, second, metrics = (crashed_and_resumed[k] for k in ("root", "first", "second", "metrics"))
    assert set(first) == {"body", "heads"} and (root / "body" / DONE).is_file()
    assert not second.get("body")                    # not trained again ...
    assert (root / "body" / "checkpoints" / "last.ckpt").stat().st_mtime_ns == crashed_and_resumed["body_mtime"]
    assert second["heads"][0]["epoch"] == 1 and second["heads"][0]["global_step"] == 2  # ... heads from epoch 1
    assert all((root / s / DONE).is_file() for s in ("body", "heads", "finetune"))
    assert metrics["val/wholebody/AP"] >= 0.0
    # a third run has nothing left to do and returns the final stage's metrics
    again = crashed_and_resumed["again"]()
    assert again["val/wholebody/AP"] == metrics["val/wholebody/AP"]
    assert (root.parent / "latest").resolve() == root.resolve()


def test_every_stage_logs_face_and_hand_box_ap_at_each_validation(crashed_and_resumed):
    root = crashed_and_resumed["root"]
    for stage in ("body", "heads", "finetune"):
        rows = [line.split(",") for f in sorted((root / stage / "csv").glob("version_*/metrics.csv"))
                for line in f.read_text().splitlines()]
        header = rows[0]
        for part in ("face", "lefthand", "righthand"):
            col = header.index(f"val/boxes/{part}/AP")
            epochs = {r[header.index("epoch")] for r in rows[1:] if len(r) > col and r[col]}
            assert epochs, (stage, part)


def test_the_stages_follow_the_paper_schedule(tmp_path):
    """Along every parameter: 120 epochs, 1e-3, x0.1 at global epochs 80 and 100 (docs/training.md)."""
    cfg = compose_config(["+experiment=zoomnet_staged", "data.root=/x", f"paths.output_dir={tmp_path}"])
    assert stage_names(cfg) == ["body", "heads", "finetune"] and cfg.data.batch_size == 32

    def rates(stage: str) -> list[float]:
        c = stage_config(cfg, stage, resume=False)
        opt = instantiate(c.model.optimizer)([torch.nn.Parameter(torch.zeros(1))])
        sched = instantiate(c.model.scheduler)(opt)
        out = []
        for _ in range(c.trainer.max_epochs):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return out

    paper = [1e-3] * 80 + [1e-4] * 20 + [1e-5] * 20
    for pretrain in ("body", "heads"):  # each pre-training stage, then the shared fine-tune
        assert rates(pretrain) + rates("finetune") == pytest.approx(paper, rel=1e-9)
    heads = stage_config(cfg, "heads", resume=False)
    assert list(heads.model.freeze) == ["feature_net", "body_net"] and heads.model.net.init_from[-1] == {
        "path": str(Path(cfg.paths.run_dir) / "body" / "checkpoints" / "last.ckpt"),
        "modules": ["feature_net", "body_net"]}
    fine = stage_config(cfg, "finetune", resume=False)
    assert list(fine.model.freeze) == [] and set(fine.model.loss.weights.values()) == {1.0}
    assert fine.model.net.init_from[-1] == {"path": str(Path(cfg.paths.run_dir) / "heads" / "checkpoints" /
                                                         "last.ckpt")}
    # every tensor comes from the heads stage: no ImageNet weights read for the fine-tune
    assert cfg.model.net.pretrained is not None and heads.model.net.pretrained == cfg.model.net.pretrained
    assert fine.model.net.pretrained is None


def test_an_override_a_stage_replaces_is_refused(tmp_path):
    cfg = compose_config(["+experiment=zoomnet_staged", "data.root=/x", f"paths.output_dir={tmp_path}",
                          "trainer.max_epochs=3"])
    with pytest.raises(ConfigError, match=r"staged.stages.body.trainer.max_epochs"):
        train_staged(cfg)


def test_a_staged_run_folder_in_use_is_refused_before_any_marker_is_deleted(tmp_path):
    cfg = compose_config(["+experiment=zoomnet_staged", "data.root=/x", f"paths.output_dir={tmp_path}",
                          "overwrite=true"])
    root = Path(cfg.paths.run_dir)
    (root / "body" / "checkpoints").mkdir(parents=True)
    (root / "body" / "checkpoints" / "last.ckpt").write_bytes(b"")
    (root / "body" / DONE).write_text("{}")
    with folder_lock(root), pytest.raises(ConfigError, match="in use by another staged run"):
        train_staged(cfg)
    assert (root / "body" / DONE).is_file()


def test_a_single_init_from_mapping_of_the_command_stays_one_entry(tmp_path):
    own = {"path": "/x/a.ckpt", "modules": ["face_head"]}
    cfg = compose_config(["+experiment=zoomnet_staged", "data.root=/x", f"paths.output_dir={tmp_path}",
                          "model.net.init_from={path: /x/a.ckpt, modules: [face_head]}"])
    heads = stage_config(cfg, "heads", resume=False)
    assert len(heads.model.net.init_from) == 2 and heads.model.net.init_from[0] == own


def test_baselines_train_on_hrnets_recipe_and_paper_experiments_on_the_papers_augmentation():
    for name in ("hrnet_wholebody", "hrnet_body"):
        cfg = compose_config([f"+experiment={name}", "data.root=/x"])
        assert cfg.model.optimizer.lr == 5e-4 and cfg.trainer.max_epochs == 210
        assert list(cfg.model.scheduler.milestones) == [170, 200] and cfg.model.scheduler.gamma == 0.1
        assert cfg.model.warmup.iters == 500 and cfg.model.warmup.start_factor == 0.001
    for name in ("zoomnet", "zoomnet_staged", "zoomnet_body", "hrnet_wholebody"):
        cfg = compose_config([f"+experiment={name}", "data.root=/x"])
        assert cfg.data.photometric is None and cfg.data.augment.half_body_prob == 0.3
    plus = compose_config(["+experiment=zoomnet_plus", "data.root=/x"])
    assert plus.data.photometric is not None and plus.model.refine == "dark" and plus.trainer.max_epochs > 120


class _Toy(PoseModule):
    def training_step(self, batch, batch_idx):
        return self.net(batch).square().mean()


class _LrProbe(Callback):
    def __init__(self) -> None:
        self.seen: list[tuple[int, int, float]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen.append((trainer.current_epoch, trainer.global_step, trainer.optimizers[0].param_groups[0]["lr"]))


def test_the_warmup_rises_linearly_per_step_then_the_epoch_schedule_takes_over():
    torch.manual_seed(0)
    base, start, iters, gamma = 5e-4, 0.001, 6, 0.1
    module = _Toy(torch.nn.Linear(2, 1), torch.nn.MSELoss(),
                  optimizer=lambda p: torch.optim.Adam(p, lr=base),
                  scheduler=lambda o: torch.optim.lr_scheduler.MultiStepLR(o, milestones=[2], gamma=gamma),
                  warmup_iters=iters, warmup_start_factor=start)
    probe = _LrProbe()
    trainer = L.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[probe])
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(torch.randn(16, 2), batch_size=4))
    assert len(probe.seen) == 12
    for epoch, step, lr in probe.seen:
        expected = base * (start + (1 - start) * min(step, iters) / iters) * gamma ** (epoch >= 2)
        assert lr == pytest.approx(expected, rel=1e-9), (epoch, step)


def test_frozen_modules_are_not_optimised_and_stay_in_eval_mode():
    net = torch.nn.Sequential()
    net.add_module("stem", torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2)))
    net.add_module("head", torch.nn.Linear(2, 1))
    module = PoseModule(net, torch.nn.MSELoss(), optimizer=torch.optim.SGD, freeze=["stem"])
    module.train()
    assert not net.stem.training and net.head.training
    opt = module.configure_optimizers()
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == 3  # the head's weight and bias
    with pytest.raises(ValueError, match="no sub-module 'body_net'"):
        PoseModule(net, torch.nn.MSELoss(), optimizer=torch.optim.SGD, freeze=["body_net"])


def test_half_body_follows_hrnet():
    """HRNet's half-body: p=0.3 when > 8 body+foot keypoints are labelled; upper or lower half (the lower
    only with > 2 labelled), centred on their mean, their extent at the input aspect x 1.5."""
    spec = COCO_WHOLEBODY
    upper, lower = spec.indices(spec.upper_body), spec.indices(spec.lower_body)
    rng = np.random.default_rng(0)
    kps = np.zeros((spec.num_keypoints, 3))
    kps[upper, :2] = rng.uniform([40, 10], [80, 60], (len(upper), 2))
    kps[lower, :2] = rng.uniform([40, 70], [90, 160], (len(lower), 2))
    kps[np.r_[upper, lower], 2] = 2
    aspect, seen = 0.75, set()
    for _ in range(40):
        center, size = half_body_region(kps, rng, aspect)
        half = upper if center[1] < 65 else lower
        seen.add(len(half))
        pts = kps[half, :2]
        np.testing.assert_allclose(center, pts.mean(0))
        w, h = pts.max(0) - pts.min(0)
        np.testing.assert_allclose(size, 1.5 * np.array([max(w, h * aspect), max(h, w / aspect)]))
    assert seen == {len(upper), len(lower)}
    two_lower = kps.copy()
    two_lower[lower[2:], 2] = 0  # 11 upper + 2 lower labelled: always the upper half
    assert all(half_body_region(two_lower, rng, aspect)[0][1] < 65 for _ in range(20))
    assert half_body_region(np.where(np.arange(len(kps))[:, None] < 8, kps, 0), rng, aspect) is None
    cfg = AugmentConfig()  # the paper experiments' defaults (conf/data/coco_wholebody.yaml)
    draws = [sample_crop(rng, np.array([65.0, 85.0]), np.array([120.0, 160.0]), kps, aspect, cfg).half_body
             for _ in range(3000)]
    assert cfg.half_body_prob == 0.3 and abs(np.mean(draws) - 0.3) < 0.03
