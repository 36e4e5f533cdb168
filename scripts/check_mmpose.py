"""Developer check (issue 10 sections 2 and 6): ``wholebody-convert mmpose`` against mmpose 1.3.2 itself.

NOT part of the package: nothing in ``src/`` or ``tests/`` imports this file, and mmpose is no dependency.
It runs with a SIDE virtual environment holding mmpose, and calls the package's own environment in a
subprocess; the two exchange only JSON and ``.npy`` files (read with ``allow_pickle=False``).

Side environment (CPU; numpy < 2 for mmpose's compiled dependencies)::

    python3.11 -m venv /tmp/mmpose_venv
    /tmp/mmpose_venv/bin/pip install "numpy<2" torch==2.13.0+cpu  # a CPU wheel (download.pytorch.org/whl/cpu
                                                                    # or a local torch-*+cpu .whl)
    /tmp/mmpose_venv/bin/pip install "numpy<2" mmengine==0.10.7 mmcv-lite==2.1.0 mmdet==3.3.0 xtcocotools \
        json_tricks munkres scipy six opencv-python-headless "setuptools<70"
    /tmp/mmpose_venv/bin/pip install --no-deps mmpose==1.3.2

torchvision is not needed (mmpose imports it only for a visualiser; a CPU wheel matching the torch wheel
may be absent) and mmcv-lite has no compiled ops: both are replaced by stubs that fail if ever called.
Run from the repository root::

    /tmp/mmpose_venv/bin/python scripts/check_mmpose.py [--package-python .venv/bin/python] [--workdir DIR]

What it does: builds mmpose's top-down HRNet-W32 COCO-WholeBody 256x192 model from its config (written
here), gives it random weights (fixed seed; BN statistics of the sample's crops, maps of unit spread),
saves an mmpose 1.x checkpoint, converts it with ``wholebody-convert mmpose`` and compares, on one image of
the sample: the heatmaps of the same uint8 crops; the flip index and flip-averaged maps; the keypoints
decoded from the same crops (crop px); the keypoints in image px of ``inference_topdown`` and of the
package's estimator (its results rows, COCO's pixel indices) for a ``unit`` box (padded size = crop size,
integer centre: both warps cut the same pixels); mmpose's maps put through the package's estimator for an
annotated person's box (``gt``, and ``gt_aligned``: mmpose's box moved by its framing offset, so both warps
sample the same points); and the flip test's bias on ideal maps (Gaussians at known keypoints). Random maps
have near ties that float noise decides, and mmpose's decoder has rules of its own (see ``undecided``):
those keypoints are counted and left out of the "decided" maximum. It prints a table and ends with one
JSON line of the figures. (Results: docs/model.md, "Checked against mmpose".)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = Path(os.environ.get("WHOLEBODY_SHARED", ROOT.parent / "shared")) / "data" / "cocowb_sample"
IMAGE, GT_XYWH = "000000000785.jpg", (280.8, 44.7, 218.7, 346.7)  # annotation 442619
UNIT_CENTER = (390.0, 218.0)  # unit box: 192 x 256 / 1.25, centred on an integer pixel
W, H = 192, 256
FLIP = (False, True)
TIE = 1e-3  # map values closer than this decide an argmax or a quarter step by float noise


def load(d: Path, name: str) -> np.ndarray:
    return np.load(d / f"{name}.npy", allow_pickle=False)


# ----------------------------------------------------------------------------- package side
def package_side(d: Path) -> None:
    """Runs under the package's python: the converted checkpoint on the exchanged inputs."""
    import torch

    from wholebody.inference.estimator import WholeBodyEstimator
    from wholebody.keypoints import COCO_WHOLEBODY, PARTS
    from wholebody.models.baselines import channel_flip_index, part_indices

    job = json.loads((d / "job.json").read_text())
    image, boxes = job["image"], np.asarray(job["boxes_xyxy"])

    def file_keypoints(res) -> np.ndarray:  # the results-file rows (COCO's pixel indices) as (N, 133, 3)
        rows = res.rows(image_id=0)
        kp = np.zeros((len(rows), COCO_WHOLEBODY.num_keypoints, 3))
        for i, row in enumerate(rows):
            for part in PARTS:
                kp[i, COCO_WHOLEBODY.slice(part)] = np.reshape(row[COCO_WHOLEBODY.annotation_keys[part]], (-1, 3))
        return kp

    np.save(d / "pkg_flip_index.npy", np.asarray(channel_flip_index(part_indices(PARTS))))
    crops = torch.from_numpy(load(d, "crops_rgb"))
    for flip in FLIP:
        est = WholeBodyEstimator.from_checkpoint(job["ckpt"], flip_test=flip)
        tag = "flip" if flip else "noflip"
        net = est.net
        with torch.no_grad():
            if not flip:
                np.save(d / "pkg_heatmaps.npy", net(torch.from_numpy(load(d, "inputs_rgb")))["heatmaps"].numpy())
            else:
                out = net(crops)
                np.save(d / "pkg_flip_maps.npy", net.average_flipped(out, net.flipped_pass(crops, out))["heatmaps"].numpy())
        np.save(d / f"pkg_crop_{tag}.npy", est.predict_crops(crops)["keypoints"])
        np.save(d / f"pkg_image_{tag}.npy", file_keypoints(est(image, boxes=boxes[:1])))  # the unit box
    with torch.no_grad():  # ideal maps: the package's flip average and decoding (crop px -> pixel indices)
        ideal = net.average_flipped({"heatmaps": torch.from_numpy(load(d, "ideal_direct"))},
                                    {"heatmaps": torch.from_numpy(load(d, "ideal_flipped"))})
        np.save(d / "pkg_ideal_flip.npy", net.decode(ideal, refine=est.refine)["keypoints"][..., :2].numpy() - 0.5)
    # mmpose's maps in place of the network: the package's crop -> decode -> image -> results rows
    for variant in job["map_variants"]:
        maps, kps = load(d, f"mm_maps_{variant}"), []
        for i, box in enumerate(job["box_of_map"]):
            est = WholeBodyEstimator(net, est.input_size, refine=est.refine,
                                     runner=lambda _crops, m=maps[i: i + 1]: {"heatmaps": torch.from_numpy(m)})
            kps.append(file_keypoints(est(image, boxes=boxes[box: box + 1]))[0])
        np.save(d / f"pkg_from_maps_{variant}.npy", np.stack(kps))


# ----------------------------------------------------------------------------- mmpose side
def stub_missing_modules() -> None:
    """mmcv-lite lacks ``mmcv.ops`` and torchvision may not install: stubs that refuse to be used."""
    import types

    import torch

    class Absent(torch.nn.Module):
        def __init__(self, *a, **k):
            raise RuntimeError("a stub: mmcv.ops / torchvision are not installed in the side environment")

    def attr(name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return Absent

    ops = types.ModuleType("mmcv.ops")
    ops.__getattr__ = attr
    sys.modules["mmcv.ops"] = ops
    try:
        import torchvision  # noqa: F401
    except Exception:
        tv, tvt = types.ModuleType("torchvision"), types.ModuleType("torchvision.transforms")
        tvt.ToPILImage, tv.transforms = Absent, tvt
        sys.modules.update({"torchvision": tv, "torchvision.transforms": tvt})


def mmpose_config() -> dict:
    """td-hm_hrnet-w32_8xb64-210e_coco-wholebody-256x192, the parts inference uses."""
    codec = dict(type="MSRAHeatmap", input_size=(W, H), heatmap_size=(W // 4, H // 4), sigma=2)
    stage = lambda m, n, block, ch: dict(num_modules=m, num_branches=n, block=block,  # noqa: E731
                                         num_blocks=(4,) * n, num_channels=ch)
    model = dict(
        type="TopdownPoseEstimator",
        data_preprocessor=dict(type="PoseDataPreprocessor", mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], bgr_to_rgb=True),
        backbone=dict(type="HRNet", in_channels=3, extra=dict(
            stage1=stage(1, 1, "BOTTLENECK", (64,)), stage2=stage(1, 2, "BASIC", (32, 64)),
            stage3=stage(4, 3, "BASIC", (32, 64, 128)), stage4=stage(3, 4, "BASIC", (32, 64, 128, 256)))),
        head=dict(type="HeatmapHead", in_channels=32, out_channels=133, deconv_out_channels=None,
                  loss=dict(type="KeypointMSELoss", use_target_weight=True), decoder=codec),
        test_cfg=dict(flip_test=True, flip_mode="heatmap", shift_heatmap=True))
    pipeline = [dict(type="LoadImage"), dict(type="GetBBoxCenterScale"),
                dict(type="TopdownAffine", input_size=codec["input_size"]), dict(type="PackPoseInputs")]
    return dict(default_scope="mmpose", model=model, test_dataloader=dict(dataset=dict(pipeline=pipeline)))


def preprocess(model, crops_bgr):
    """mmpose's data preprocessor (BGR -> RGB, ImageNet mean / std) on (B, 3, H, W) uint8 BGR crops."""
    from mmengine.model import ImgDataPreprocessor  # PoseDataPreprocessor's normalisation, minus data samples

    return ImgDataPreprocessor.forward(model.data_preprocessor, {"inputs": list(crops_bgr)}, False)["inputs"]


def undecided(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, K) masks of (N, K, h, w) maps: (near tie, mmpose's own rule). Near tie: the two highest values, or
    the two neighbours of the quarter step, within ``TIE``. mmpose's rules: a map whose maximum is <= 0 gives
    heatmap px (-1, -1); no x step in column 1 or row 0, no y step in row 1 or column 0 (the package steps
    from column / row 1 on)."""
    n, k, h, w = maps.shape
    flat = maps.reshape(n, k, -1)
    top = np.sort(flat, -1)[..., -2:]
    ix = flat.argmax(-1)
    x, y = ix % w, ix // w
    at = lambda xx, yy: np.take_along_axis(flat, (np.clip(yy, 0, h - 1) * w + np.clip(xx, 0, w - 1))[..., None], -1)[..., 0]  # noqa: E731
    tie = (top[..., 1] - top[..., 0] < TIE) | (np.abs(at(x + 1, y) - at(x - 1, y)) < TIE) | (np.abs(at(x, y + 1) - at(x, y - 1)) < TIE)
    return tie, (top[..., 1] <= 0) | (x <= 1) | (y <= 1)


def random_weights(model, crops_bgr, seed: int = 0) -> None:
    """He-normal convolutions, random BN affine, BN statistics of ``crops_bgr``, maps scaled to unit spread."""
    import torch

    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                torch.nn.init.normal_(m.bias, 0.0, 0.1)
        elif isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
            torch.nn.init.normal_(m.bias, 0.0, 0.1)
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration pass
    model.train()
    with torch.no_grad():
        std = model.head(model.extract_feat(preprocess(model, crops_bgr))).std()
        model.head.final_layer.weight /= std  # maps of unit spread
        model.head.final_layer.bias /= std
    model.eval()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--package-python", default=str(ROOT / ".venv/bin/python"))
    ap.add_argument("--package-side", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--workdir", type=Path, help="keep the exchanged files here (default: a temporary folder)")
    a = ap.parse_args()
    if a.package_side:
        package_side(a.package_side)
        return 0
    if a.workdir:
        a.workdir.mkdir(parents=True, exist_ok=True)
        return run(a.workdir, a.package_python)
    with tempfile.TemporaryDirectory() as tmp:
        return run(Path(tmp), a.package_python)


def run(d: Path, package_python: str) -> int:
    stub_missing_modules()
    import torch
    from mmengine.config import Config
    from mmengine.dataset import Compose, pseudo_collate
    from mmpose.apis import inference_topdown, init_model
    from mmpose.codecs import MSRAHeatmap
    from mmpose.datasets.datasets.utils import parse_pose_metainfo
    from mmpose.models.utils.tta import flip_heatmaps

    model = init_model(Config(mmpose_config()), None, device="cpu")
    model.dataset_meta = parse_pose_metainfo(dict(from_file="configs/_base_/datasets/coco_wholebody.py"))
    pipeline = Compose(model.cfg.test_dataloader.dataset.pipeline)

    def samples(img: str, bxs: np.ndarray) -> dict:
        return pseudo_collate([pipeline({"img_path": img, "bbox": np.asarray(b, np.float32)[None],
                                         "bbox_score": np.ones(1, np.float32), **model.dataset_meta}) for b in bxs])

    # random weights, BN calibrated on the crops of every annotated person of the sample
    ann = json.loads((SAMPLE / "test_coco_wholebody.json").read_text())
    files = {i["id"]: i["file_name"] for i in ann["images"]}
    crops = torch.cat([torch.stack(samples(str(SAMPLE / files[a["image_id"]]), [[a["bbox"][0], a["bbox"][1],
                       a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]])["inputs"])
                       for a in ann["annotations"] if a["num_keypoints"] > 10])
    random_weights(model, crops)
    ckpt = d / "hrnet_w32_coco_wholebody_256x192-random.pth"  # the converter reads HxW from the name
    meta = {"mmpose_version": "1.3.2", "seed": 0, "dataset_meta": {"sigmas": model.dataset_meta["sigmas"]}}
    torch.save({"meta": meta, "state_dict": model.state_dict()}, ckpt)

    # boxes: unit (same pixels in both warps), gt, and gt moved by mmpose's framing offset (same samples)
    image = str(SAMPLE / IMAGE)
    x, y, w, h = GT_XYWH
    (cx, cy), uw, uh = UNIT_CENTER, W / 1.25, H / 1.25
    pkg_boxes = np.array([[cx - uw / 2, cy - uh / 2, cx + uw / 2, cy + uh / 2], [x, y, x + w, y + h]])
    s = max(w, h * W / H) * 1.25 / W  # image px per crop px
    off = 0.5 * (s - 1.0)  # mmpose's warp centres the box on pixel indices: its crop sits `off` px up-left
    mm_boxes = np.concatenate([pkg_boxes, pkg_boxes[1:] + off])
    names = ("unit", "gt", "gt_aligned")

    # mmpose: maps of the same uint8 crops (+ one noise image); keypoints of the boxes, three flip modes
    noise = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (1, 3, H, W), dtype=np.uint8))
    inputs_bgr = torch.cat([crops, noise])
    batch = samples(image, mm_boxes)
    metas = [ds.metainfo for ds in batch["data_samples"]]
    flip_index = np.asarray(metas[0]["flip_indices"])
    with torch.no_grad():
        mm_hm = model.head(model.extract_feat(preprocess(model, inputs_bgr))).numpy()
        cin = preprocess(model, torch.stack(batch["inputs"]))
        hm, hm_f = model.head(model.extract_feat(cin)), model.head(model.extract_feat(cin.flip(-1)))
        back = flip_heatmaps(hm_f, flip_mode="heatmap", flip_indices=list(flip_index), shift_heatmap=False)
        back1 = flip_heatmaps(hm_f, flip_mode="heatmap", flip_indices=list(flip_index), shift_heatmap=True)
        exact = 0.25 * back + 0.75 * torch.cat([back[..., :1], back[..., :-1]], -1)  # 3/4 hm px right
        maps = {"noflip": hm, "flip_exact": 0.5 * (hm + exact), "flip_mmpose": 0.5 * (hm + back1)}
        mm_crop = {k: np.concatenate([p.keypoints for p in model.head.decode(v)]) for k, v in maps.items()}
        mm_image = {k: np.stack([kp[0] / m["input_size"] * m["input_scale"] + m["input_center"] - 0.5 * m["input_scale"]
                                 for kp, m in zip(v[:, None], metas)]) for k, v in mm_crop.items()}
        topdown = []  # mmpose's own API gives the numbers of the lines above
        for flip, k in ((False, "noflip"), (True, "flip_mmpose")):
            model.test_cfg = dict(flip_test=flip, flip_mode="heatmap", shift_heatmap=True)
            res = inference_topdown(model, image, mm_boxes.astype(np.float32), bbox_format="xyxy")
            topdown.append(float(np.abs(np.concatenate([r.pred_instances.keypoints for r in res]) - mm_image[k]).max()))
    odd = {k: undecided(v.numpy()) for k, v in maps.items()}

    # ideal maps (an exactly equivariant network): unbiased Gaussians at random keypoints and their mirrors
    codec = MSRAHeatmap(input_size=(W, H), heatmap_size=(W // 4, H // 4), sigma=2, unbiased=True)
    truth = np.random.default_rng(1).uniform([16, 16], [W - 17, H - 17], (8, 133, 2)).astype(np.float32)
    mirror = np.stack([W - 1 - truth[:, flip_index, 0], truth[:, flip_index, 1]], -1)  # pixel indices mirror to W-1-x
    enc = lambda kp: np.stack([codec.encode(k[None], np.ones((1, 133)))["heatmaps"] for k in kp])  # noqa: E731
    np.save(d / "ideal_direct.npy", enc(truth))
    np.save(d / "ideal_flipped.npy", enc(mirror))
    with torch.no_grad():
        idl = torch.from_numpy(enc(truth))
        idl_f = flip_heatmaps(torch.from_numpy(enc(mirror)), flip_mode="heatmap", flip_indices=list(flip_index),
                              shift_heatmap=True)
        ideal = {"noflip": idl, "flip_mmpose": 0.5 * (idl + idl_f)}
        ideal = {k: np.concatenate([p.keypoints for p in model.head.decode(v)]) for k, v in ideal.items()}
    np.save(d / "inputs_rgb.npy", inputs_bgr.flip(1).numpy())  # the package takes RGB
    np.save(d / "crops_rgb.npy", torch.stack(batch["inputs"]).flip(1).numpy())
    for k in ("noflip", "flip_mmpose"):
        np.save(d / f"mm_maps_{k}.npy", maps[k].numpy())
    pkg_ckpt = d / "converted.ckpt"
    (d / "job.json").write_text(json.dumps({"ckpt": str(pkg_ckpt), "image": image, "boxes_xyxy": pkg_boxes.tolist(),
                                            "map_variants": ["noflip", "flip_mmpose"], "box_of_map": [0, 1, 1]}))
    convert = [str(Path(package_python).parent / "wholebody-convert"), "mmpose", str(ckpt), str(pkg_ckpt), "--overwrite"]
    print("$", " ".join(convert), flush=True)
    subprocess.run(convert, check=True)
    subprocess.run([package_python, str(Path(__file__).resolve()), "--package-side", str(d)], check=True)

    # compare
    pkg_flip = load(d, "pkg_flip_maps")
    fig = {"heatmap_max_abs_diff": float(np.abs(load(d, "pkg_heatmaps") - mm_hm).max()),
           "heatmap_max_abs": float(np.abs(mm_hm).max()),
           "flip_index_equal": bool(np.array_equal(load(d, "pkg_flip_index"), flip_index)),
           "flip_maps_vs_exact_max_abs_diff": float(np.abs(pkg_flip - maps["flip_exact"].numpy()).max()),
           "flip_maps_vs_mmpose_max_abs_diff": float(np.abs(pkg_flip - maps["flip_mmpose"].numpy()).max()),
           "inference_topdown_vs_decode_max_px": max(topdown), "framing_offset_gt_px": off,
           "mmpose_rule_keypoints": int(odd["noflip"][1].sum()), "near_tie_keypoints": int(odd["noflip"][0].sum())}
    rows: list[tuple[str, str, str, str]] = []

    def compare(key: str, label: str, pkg: np.ndarray, mm: np.ndarray, mode: str, i: slice | int = slice(None)) -> None:
        e, dx, dy = np.linalg.norm(pkg - mm, axis=-1), pkg[..., 0] - mm[..., 0], pkg[..., 1] - mm[..., 1]
        ok = ~(odd[mode][0][i] | odd[mode][1][i])
        fig.update({f"{key}_max_px": float(e.max()), f"{key}_mean_px": float(e.mean()),
                    f"{key}_max_px_decided": float(e[ok].max()), f"{key}_undecided": int((~ok).sum()),
                    f"{key}_median_dx_px": float(np.median(dx)), f"{key}_median_dy_px": float(np.median(dy))})
        rows.append((label, f"{e.max():.4f} / {e.mean():.4f}", f"{e[ok].max():.5f} ({(~ok).sum()} left out)",
                     f"{np.median(dx):+.4f} {np.median(dy):+.4f}"))

    for tag, mode in (("noflip", "noflip"), ("flip", "flip_exact"), ("flip", "flip_mmpose")):
        pc = load(d, f"pkg_crop_{tag}")[..., :2] - 0.5  # package crop px (centres at i + 0.5) -> pixel indices
        compare(f"crop_{mode}", f"own nets, same crops, crop px, {mode}", pc, mm_crop[mode], mode)
    for tag, mode in (("noflip", "noflip"), ("flip", "flip_exact"), ("flip", "flip_mmpose")):
        compare(f"image_unit_{mode}", f"own nets, image px, box unit, {mode}", load(d, f"pkg_image_{tag}")[0, :, :2],
                mm_image[mode][0], mode, 0)
    for mode in ("noflip", "flip_mmpose"):
        pm = load(d, f"pkg_from_maps_{mode}")[..., :2]
        for i, name in enumerate(names):
            compare(f"maps_{name}_{mode}", f"mmpose maps, image px, box {name}, {mode}", pm[i], mm_image[mode][i], mode, i)
    print(f"\nmmpose 1.3.2 vs the package: HRNet-W32 256x192, random weights (seed 0), {IMAGE}; boxes xyxy "
          f"unit {pkg_boxes[0].round(2).tolist()} (both warps cut the same pixels), gt {pkg_boxes[1].round(2).tolist()}, "
          f"gt_aligned: mmpose gets gt moved {off:.3f} px right/down (its warp centres on pixel indices), so both "
          "sample the same points.\n"
          f"heatmaps of the same {len(mm_hm)} uint8 crops (maps within +-{fig['heatmap_max_abs']:.2f}): max |diff| "
          f"{fig['heatmap_max_abs_diff']:.2e}; channel flip index = mmpose's flip_indices: {fig['flip_index_equal']}; "
          f"flip-averaged maps vs mmpose's flipped back with the exact 3/4 px shift: {fig['flip_maps_vs_exact_max_abs_diff']:.2e}"
          f" (with mmpose's 1 px shift: {fig['flip_maps_vs_mmpose_max_abs_diff']:.2e}).\n"
          f"inference_topdown equals the mmpose decode + back-projection used below to {fig['inference_topdown_vs_decode_max_px']:.1e} px; "
          "'decided' leaves out keypoints where mmpose's decoder has its own rules (map maximum <= 0: heatmap px -1; "
          "no quarter step in the first two columns / rows) and near ties of the argmax or the quarter step "
          f"(< {TIE} apart; float noise decides them on random maps); without flip {fig['mmpose_rule_keypoints']} and "
          f"{fig['near_tie_keypoints']} of {odd['noflip'][0].size}.")
    print(f"  {'keypoints, package - mmpose':<50} {'max / mean px':<18} {'max px, decided':<24} median dx dy")
    for r in rows:
        print(f"  {r[0]:<50} {r[1]:<18} {r[2]:<24} {r[3]}")
    ideal["flip_package"] = load(d, "pkg_ideal_flip")
    print(f"ideal maps ({truth.shape[0] * truth.shape[1]} unbiased Gaussians, sigma 2, random keypoints; the flipped "
          "pass holds their mirrors), quarter decoding, error against the true keypoint in crop px:")
    print(f"  {'':<26} {'mean |err|':<12} {'mean dx':<10} mean dy")
    for k, v in ideal.items():
        e = v - truth
        fig.update({f"ideal_{k}_mean_err_px": float(np.linalg.norm(e, axis=-1).mean()),
                    f"ideal_{k}_mean_dx_px": float(e[..., 0].mean()), f"ideal_{k}_mean_dy_px": float(e[..., 1].mean())})
        print(f"  {k:<26} {np.linalg.norm(e, axis=-1).mean():<12.4f} {e[..., 0].mean():<+10.4f} {e[..., 1].mean():+.4f}")
    print(json.dumps({k: (round(v, 6) if isinstance(v, float) else v) for k, v in fig.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
