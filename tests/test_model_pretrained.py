"""ImageNet HRNet weights (timm, the HRNet authors' files) and mmpose's whole-body checkpoints mapped
into the package's networks (``pretrained``; ``wholebody-convert mmpose``). Every source is built
here with random weights (timm ``pretrained=False``); nothing is downloaded."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import timm
import torch

from wholebody.inference import load_checkpoint
from wholebody.models import HRNetPose, ZoomNet
from wholebody.models.baselines import shift_right
from wholebody.models.pretrained import (
    PretrainedError,
    load_pretrained,
    read_weights_file,
    source_names,
    timm_weights,
)

pytestmark = pytest.mark.usefixtures("one_thread")

#: timm tensors with no place in a pose network: ImageNet's classification head.
IMAGENET_HEAD = ("incre_modules", "downsamp_modules", "final_layer", "classifier")


def _timm(name: str, seed: int = 0) -> torch.nn.Module:
    """A timm HRNet with random weights and BN statistics (so equal outputs mean equal tensors)."""
    torch.manual_seed(seed)
    m = timm.create_model(name, pretrained=False).eval()
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.normal_(0, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
                mod.weight.normal_(1, 0.1)
                mod.bias.normal_(0, 0.1)
            elif isinstance(mod, torch.nn.Conv2d):
                mod.weight.mul_(0.5)
    return m


def _timm_stem(m: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return m.act2(m.bn2(m.conv2(m.act1(m.bn1(m.conv1(x))))))


def _save(sd: dict, path) -> str:
    torch.save(sd, path)
    return str(path)


def _mapped_equal(module: torch.nn.Module, kind: str, sd: dict) -> int:
    """Tensors of ``module`` whose source (by the mapping's rule) is in ``sd``, each asserted equal."""
    n = 0
    for d, t in module.state_dict().items():
        src = next((c for c in source_names(kind, d) if c in sd), None)
        if src is not None:
            assert torch.equal(t, sd[src]), d
            n += 1
    return n


@pytest.fixture(scope="module")
def w32(tmp_path_factory):
    m = _timm("hrnet_w32")
    return m, _save(m.state_dict(), tmp_path_factory.mktemp("w") / "hrnet_w32.pth")


# ----------------------------------------------------------------------------- ImageNet HRNet (timm)
def test_every_hrnet_w32_backbone_tensor_finds_its_place_in_the_one_stage_baseline(w32, caplog):
    m, path = w32
    sd = m.state_dict()
    with caplog.at_level("INFO", logger="wholebody.models.pretrained"):
        net = HRNetPose(input_size=(64, 64), pretrained=path).eval()
    report = load_pretrained(net, net.pretrained_plan(), path)  # again, for the report object
    assert report.mapped() == {"feature_net": 90, "body_net": 1662}
    assert _mapped_equal(net.feature_net, "stem", sd) + _mapped_equal(net.body_net, "body", sd) == 1752
    # the backbone (stem + layer1 + transitions + stages) all placed, but for the last module's fusions
    # into the three lower branches, which pose HRNet does not compute (it outputs the 1/4 branch only)
    unused = report.unused[path]
    fused_low = [k for k in unused if re.match(r"stage4\.2\.fuse_layers\.[123]\.", k)]
    assert sorted(set(unused) - set(fused_low)) == sorted(k for k in sd if k.split(".")[0] in IMAGENET_HEAD)
    assert len(fused_low) == 78
    assert [k for k in net.state_dict() if k.startswith("body_net.final")] == [f"body_net.{k}" for k in
                                                                                report.modules[1].kept]
    assert "feature_net: 90/90 tensors mapped" in caplog.text and "body_net: 1662/1664" in caplog.text
    # the same network: stem + stages give timm's highest-resolution branch exactly
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = m.stages(_timm_stem(m, x))[0]
        ours = net.body_net.stages(net.feature_net(x)[1])[0]
    assert torch.equal(ours, ref)


def test_zoomnet_takes_w32_into_featurenet_and_bodynet_and_w18_into_both_part_heads(w32, tmp_path):
    m32, p32 = w32
    m18 = _timm("hrnet_w18", seed=1)
    p18 = _save(m18.state_dict(), tmp_path / "hrnet_w18.pth")
    net = ZoomNet(pretrained={"body": p32, "heads": p18}).eval()
    report = load_pretrained(net, net.pretrained_plan(), {"body": p32, "heads": p18})
    assert report.mapped() == {"feature_net": 36, "body_net": 1662, "face_head": 1818, "hand_head": 1818}
    kept = {m.module: m.kept for m in report.modules}
    assert kept["face_head"] == [k for k in net.face_head.state_dict() if k.split(".")[0] in ("f2_proj", "last", "out")]
    sd18 = m18.state_dict()
    assert _mapped_equal(net.face_head, "head", sd18) == _mapped_equal(net.hand_head, "head", sd18) == 1818
    assert _mapped_equal(net.feature_net, "stem", m32.state_dict()) == 36  # ZoomNet's stem: 1 bottleneck
    r1 = torch.randn(1, 64, 32, 32)
    with torch.no_grad():
        ref = m18.stages(r1)
        ours = net.hand_head.stages(net.hand_head.layer1(r1))
    assert all(torch.equal(a, b) for a, b in zip(ours, ref, strict=True))


def test_zoomnet_takes_an_mmpose_wholebody_file_as_its_body_source(mmpose_w32):
    sd, path = mmpose_w32
    sd = {k.removeprefix("backbone."): v for k, v in sd.items()}
    fresh = ZoomNet().body_net.final.out.weight.shape
    net = ZoomNet(pretrained={"body": str(path)})
    report = load_pretrained(net, net.pretrained_plan(), str(path))
    assert report.mapped() == {"feature_net": 36, "body_net": 1662}
    assert _mapped_equal(net.body_net, "stages", sd) == 1662
    # the 133 mmpose heatmaps are not ZoomNet's 38: the layer keeps its own initialisation, the file's is unused
    assert [k for m in report.modules if m.module == "body_net" for k in m.kept] == ["final.out.weight", "final.out.bias"]
    assert net.body_net.final.out.weight.shape == fresh and "head.final_layer.weight" in report.unused[str(path)]


def test_hrnet_w48_fills_the_w48_baseline(tmp_path):
    m = _timm("hrnet_w48", seed=2)
    path = _save(m.state_dict(), tmp_path / "hrnet_w48.pth")
    net = HRNetPose(input_size=(64, 64), widths=(48, 96, 192, 384), pretrained=path)
    report = load_pretrained(net, net.pretrained_plan(), path)
    assert report.mapped() == {"feature_net": 90, "body_net": 1662}
    assert _mapped_equal(net.body_net, "body", m.state_dict()) == 1662


SMALL = dict(input_size=(64, 64), stem_planes=64, stem_blocks=2, widths=(18, 36, 72, 144), num_modules=(1, 3, 2),
             num_blocks=2)  # exactly hrnet_w18_small_v2


def test_an_original_hrnet_checkpoint_layout_loads_like_timms(tmp_path):
    """The HRNet authors' ImageNet files share timm's names; a DataParallel ``module.`` prefix, a
    ``state_dict`` wrapper and missing BN batch counters (older PyTorch) are accepted."""
    m = _timm("hrnet_w18_small_v2", seed=3)
    sd = m.state_dict()
    original = {"state_dict": {f"module.{k}": v for k, v in sd.items() if not k.endswith("num_batches_tracked")}}
    path = _save(original, tmp_path / "hrnetv2_w18_small_v2_imagenet_pretrained.pth")
    net = HRNetPose(**SMALL, pretrained={"body": path})
    ref = HRNetPose(**SMALL, pretrained=_save(sd, tmp_path / "timm.pth"))
    for (k, a), (_, b) in zip(net.state_dict().items(), ref.state_dict().items(), strict=True):
        if not k.endswith("num_batches_tracked") and not k.startswith("body_net.final"):
            assert torch.equal(a, b), k


def test_files_that_do_not_fit_are_refused_in_one_line_naming_the_file(w32, tmp_path):
    _, p32 = w32
    m18 = _timm("hrnet_w18", seed=1)
    p18 = _save(m18.state_dict(), tmp_path / "w18.pth")
    with pytest.raises(PretrainedError, match=r"w18\.pth does not fit body_net: .*HRNet-W18") as e:
        HRNetPose(input_size=(64, 64), pretrained=p18)
    assert "\n" not in str(e.value)
    small = _save(_timm("hrnet_w18_small_v2").state_dict(), tmp_path / "small.pth")
    with pytest.raises(PretrainedError, match=r"small\.pth does not fit face_head: it lacks .* tensors"):
        ZoomNet(pretrained={"heads": small})
    resnet = _save(timm.create_model("resnet18", pretrained=False).state_dict(), tmp_path / "resnet18.pth")
    with pytest.raises(PretrainedError, match=r"resnet18\.pth holds no HRNet tensors"):
        HRNetPose(input_size=(64, 64), pretrained=resnet)
    with pytest.raises(PretrainedError, match=r"HRNetPose: has no modules for pretrained\.heads"):
        HRNetPose(input_size=(64, 64), pretrained={"body": p32, "heads": p18})
    with pytest.raises(PretrainedError, match="unknown key"):
        HRNetPose(input_size=(64, 64), pretrained={"backbone": p32})
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        HRNetPose(input_size=(64, 64), pretrained=str(tmp_path / "nowhere.pth"))


class Payload:  # a class a weights file must not be able to make us build
    pass


def test_weights_only_allows_numpy_data_in_meta_and_names_any_other_refused_global(w32, tmp_path):
    sd = dict(list(w32[0].state_dict().items())[:6])
    ok = _save({"state_dict": sd, "meta": {"epoch": 210, "best": np.float64(0.6), "sigmas": np.ones(3, np.float32)}},
               tmp_path / "with_meta.pth")
    assert read_weights_file(ok).keys() == sd.keys()
    bad = _save({"state_dict": sd, "meta": {"x": Payload()}}, tmp_path / "with_object.pth")
    with pytest.raises(PretrainedError, match=r"with_object\.pth holds objects .*Payload.*weights_only=True"):
        read_weights_file(bad)


def test_a_timm_name_reads_only_the_local_cache_and_says_how_to_fetch_the_weights(w32, tmp_path):
    from safetensors.torch import save_file

    with pytest.raises(PretrainedError, match=r"'hrnet_w32' .* not in timm's local cache .*download=true") as e:
        timm_weights("hrnet_w32", cache_dir=str(tmp_path / "empty"))
    assert "\n" not in str(e.value)
    # a cached copy in the Hugging Face hub layout timm downloads into
    snap = tmp_path / "hub" / "models--timm--hrnet_w32.ms_in1k"
    (snap / "refs").mkdir(parents=True)
    (snap / "refs" / "main").write_text("0" * 40)
    (snap / "snapshots" / ("0" * 40)).mkdir(parents=True)
    sd = {k: v.contiguous() for k, v in w32[0].state_dict().items()}
    save_file(sd, str(snap / "snapshots" / ("0" * 40) / "model.safetensors"))
    got = timm_weights("hrnet_w32", cache_dir=str(tmp_path / "hub"))
    assert got.keys() == sd.keys() and all(torch.equal(got[k], sd[k]) for k in sd)


# ----------------------------------------------------------------------------- mmpose's published models
def mmpose_state_dict(name: str = "hrnet_w32", version: int = 1, outputs: int = 133, seed: int = 4) -> dict:
    """An mmpose top-down HRNet heatmap checkpoint's layout with random weights: the HRNet backbone (no
    ImageNet head; the last stage fuses into the highest-resolution branch only) under ``backbone.``,
    the 1x1 heatmap layer under ``head.final_layer`` (1.x) or ``keypoint_head.final_layer`` (0.x)."""
    m = _timm(name, seed)
    sd = {f"backbone.{k}": v for k, v in m.state_dict().items()
          if k.split(".")[0] not in IMAGENET_HEAD and not re.match(r"stage4\.2\.fuse_layers\.[123]\.", k)}
    width = m.state_dict()["transition1.0.0.weight"].shape[0]
    head = "head" if version == 1 else "keypoint_head"
    sd[f"{head}.final_layer.weight"] = torch.randn(outputs, width, 1, 1) * 0.05
    sd[f"{head}.final_layer.bias"] = torch.randn(outputs) * 0.05
    return {"state_dict": sd, "meta": {"epoch": 210, "mmpose_version": "1.3.2", "best_score": np.float64(0.58)}}


@pytest.fixture(scope="module")
def mmpose_w32(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mmpose")
    ck = mmpose_state_dict()
    path = folder / "td-hm_hrnet-w32_8xb64-210e_coco-wholebody-256x192-853765cd_20220926.pth"
    torch.save(ck, path)
    return ck["state_dict"], path


def test_mmpose_checkpoints_convert_with_every_tensor_placed(mmpose_w32, tmp_path):
    from wholebody.cli.convert import main

    sd, path = mmpose_w32
    out = tmp_path / "w32.ckpt"
    assert main(["mmpose", str(path), str(out)]) == 0
    net, info = load_checkpoint(out)
    assert (info.input_size, info.refine, info.flip_test, net.heatmap_grid) == ((192, 256), "quarter", True, "mmpose")
    own = net.state_dict()
    assert len(sd) == len(own) == 1754
    place = {c: f"{mod}.{x}" for mod, kind in (("feature_net", "stem"), ("body_net", "body"))
             for x in getattr(net, mod).state_dict() for c in source_names(kind, x)}
    for k, v in sd.items():  # every file tensor, at its place
        assert torch.equal(own[place[k.removeprefix("backbone.")]], v), k
    # 0.x layout, a DARK model at 384x288 named so
    old = mmpose_state_dict(version=0)
    p0 = tmp_path / "hrnet_w32_coco_wholebody_384x288_dark-f5726563_20200918.pth"
    torch.save(old, p0)
    assert main(["mmpose", str(p0), str(tmp_path / "dark.ckpt")]) == 0
    net0, info0 = load_checkpoint(tmp_path / "dark.ckpt")
    assert (info0.input_size, info0.refine) == ((288, 384), "dark")
    assert torch.equal(net0.body_net.final.out.bias, old["state_dict"]["keypoint_head.final_layer.bias"])


def test_the_converter_refuses_what_is_not_an_mmpose_wholebody_model(w32, mmpose_w32, tmp_path, capsys):
    from wholebody.cli.convert import main

    _, imagenet = w32
    assert main(["mmpose", imagenet, str(tmp_path / "a.ckpt"), "--input-size", "192x256"]) == 2
    assert "not an mmpose top-down HRNet heatmap checkpoint" in capsys.readouterr().err
    unnamed = tmp_path / "model.pth"
    unnamed.write_bytes(mmpose_w32[1].read_bytes())
    assert main(["mmpose", str(unnamed), str(tmp_path / "b.ckpt")]) == 2
    assert "no HxW crop size in the file name" in capsys.readouterr().err
    assert main(["mmpose", str(mmpose_w32[1]), str(tmp_path / "w32.ckpt")]) == 0
    assert main(["mmpose", str(mmpose_w32[1]), str(tmp_path / "w32.ckpt")]) == 2  # exists
    assert "--overwrite" in capsys.readouterr().err


def test_mmpose_grid_decodes_and_flip_tests_where_mmpose_trained_the_peaks():
    """mmpose's (non-UDP) targets put a keypoint at crop px index ``a`` (our ``u = a + 0.5``) on heatmap
    index ``a / 4``. Decoding and the flip test of heatmap_grid=mmpose must give back ``u``."""
    from wholebody.codecs import gaussian_heatmaps

    net = HRNetPose(input_size=(64, 64), parts=["body"], widths=(8, 16, 32, 64), num_modules=1, num_blocks=1,
                    heatmap_grid="mmpose").eval()
    w, h = 64, 64
    torch.manual_seed(5)
    u = 10 + 44 * torch.rand(1, 17, 2)  # (1, 17, 2) crop px
    hm_pos = lambda p: (p - 0.5) / 4 + 0.5  # noqa: E731 - mmpose's heatmap index a/4, in heatmap px centres
    ones = torch.ones(1, 17)
    maps, _ = gaussian_heatmaps(hm_pos(u), ones, (h // 4, w // 4), sigma=2.0)
    got = net.decode({"heatmaps": maps}, refine="dark")["keypoints"][0, :17, :2]
    assert (got - u[0]).abs().max() < 0.05
    assert (HRNetPose(input_size=(64, 64), parts=["body"], widths=(8, 16, 32, 64), num_modules=1, num_blocks=1)
            .eval().decode({"heatmaps": maps}, refine="dark")["keypoints"][0, :17, 0] - u[0, :, 0]).mean() > 1.4
    # the mirrored crop's maps: content at W - u, left and right swapped
    flip = net._flip
    mirrored = u[:, flip].clone()
    mirrored[..., 0] = w - mirrored[..., 0]
    fmaps, _ = gaussian_heatmaps(hm_pos(mirrored), ones, (h // 4, w // 4), sigma=2.0)
    avg = net.average_flipped({"heatmaps": maps}, {"heatmaps": fmaps})
    got = net.decode(avg, refine="dark")["keypoints"][0, :17, :2]
    assert (got - u[0]).abs().max() < 0.1
    assert torch.allclose(shift_right(torch.tensor([[0.0, 4.0, 0.0]]), 0.75), torch.tensor([[0.0, 1.0, 3.0]]))


def test_predict_runs_on_a_converted_mmpose_checkpoint(mmpose_w32, memorised, tmp_path):
    from wholebody.cli.convert import main

    ckpt = tmp_path / "w32.ckpt"
    assert main(["mmpose", str(mmpose_w32[1]), str(ckpt)]) == 0
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "wholebody.cli.predict", f"ckpt={ckpt}", f"input={memorised.image_dir}",
                           f"output={out}", f"boxes={memorised.ann_file}", "progress=false", "overlay=false"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads((out / "results.json").read_text())
    parts = ("keypoints", "foot_kpts", "face_kpts", "lefthand_kpts", "righthand_kpts")
    assert len(rows) == 5 and all(sum(len(r[k]) for k in parts) == 133 * 3 for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["estimator"]["net"] == "HRNetPose" and summary["estimator"]["flip_test"] is True


# ----------------------------------------------------------------------------- the experiments
def test_paper_experiments_name_imagenet_weights_and_say_how_to_get_them(w32, tmp_path, monkeypatch):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    import wholebody.models.pretrained as pretrained
    from wholebody.models.allowlist import check_model_config
    from wholebody.training.run import compose_config

    for name, want in (("zoomnet", {"body": "hrnet_w32", "heads": "hrnet_w18"}), ("zoomnet_body", None),
                       ("hrnet_wholebody", {"body": "hrnet_w32", "heads": None}), ("hrnet_body", None), ("demo", "none")):
        cfg = compose_config([f"+experiment={name}", "data.root=/x"])
        got = cfg.model.net.pretrained
        if want == "none":
            assert got is None  # the demo trains from scratch
        elif want is not None:
            assert dict(got) == {**want}
        else:
            assert got.body == "hrnet_w32"
    monkeypatch.setattr(pretrained, "HF_CACHE_DIR", str(tmp_path / "empty_cache"))  # nothing cached, nothing fetched
    cfg = compose_config(["+experiment=hrnet_wholebody", "data.root=/x"])
    with pytest.raises(Exception) as e:
        instantiate(cfg.model.net)
    cause = str(e.value.__cause__)  # what wholebody-train prints (Hydra's wrapping removed: training.run.build)
    assert re.search(r"'hrnet_w32' .* not in timm's local cache .*model\.net\.pretrained\.download=true", cause)
    assert "\n" not in cause
    cfg = compose_config(["+experiment=hrnet_wholebody", "data.root=/x", f"model.net.pretrained.body={w32[1]}"])
    net = instantiate(cfg.model.net, _convert_="all")
    assert torch.equal(net.feature_net.conv1[0].weight, w32[0].state_dict()["conv1.weight"])
    stored = check_model_config(OmegaConf.to_container(cfg.model, resolve=True))  # rebuilt from a checkpoint:
    assert "pretrained" not in stored["net"]  # the weights come from the checkpoint, nothing else is read
