"""Training and inference speed on a CUDA device: ZoomNet and the one-stage HRNet-W32 at 384x288.

One process, sections in this order, each skipped (and said so) once ``--budget-s`` would be exceeded:

1. training img/s (forward + backward + Adam step; the loss encodes its Gaussian targets on the device
   from the batch's keypoints and boxes, as in training) for each model at batch 32 and 64, in fp32 with
   TF32 on and in bf16-mixed (autocast), each NCHW and channels_last, then ``torch.compile`` of the
   fastest eager variant (compile time reported apart from the steady rate); peak GPU memory of each;
2. the ZoomNet/HRNet time ratio against their MACs ratio (target: <= 1.15x);
3. host syncs per steady-state training step (``torch.cuda.set_sync_debug_mode``; target 0);
4. inference img/s at batch 1, 8 and 64, eager and compiled;
5. the data pipeline's samples/s (COCO-sized JPEGs, training augmentation, DataLoader with the machine's
   cores as workers, pinned memory) against the training rate, and the JPEG decode rate of one core
   against nvJPEG's (``torchvision.io.decode_jpeg(device="cuda")``).

``--smoke`` runs every section on the CPU in seconds (tiny inputs, batch 2, the ``eager`` compile backend,
no sync counting), so the test suite keeps the script working. Ends with one JSON line.

    python scripts/bench_gpu.py [--budget-s 420] [--steps 20] [--models zoomnet,hrnet_wholebody]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_model import Runner  # noqa: E402  (the paper configs and a batch in the pipeline's format)

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


def _args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget-s", type=float, default=420.0, help="wall-clock budget; later sections are skipped")
    p.add_argument("--smoke", action="store_true", help="tiny CPU run of every section (the test suite's)")
    p.add_argument("--models", default="zoomnet,hrnet_wholebody")
    p.add_argument("--batches", default="32,64", help="training batch sizes")
    p.add_argument("--infer-batches", default="1,8,64")
    p.add_argument("--steps", type=int, default=20, help="timed steps per measurement (after --warmup)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--compile-backend", default="inductor")
    p.add_argument("--data-samples", type=int, default=2048, help="samples the data-pipeline section loads")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: the CPU count)")
    args = p.parse_args(argv)
    if args.smoke:
        args.batches, args.infer_batches, args.steps, args.warmup = "2", "1,2", 2, 1
        args.compile_backend, args.data_samples, args.workers = "eager", 16, 1
    return args


class Budget:
    def __init__(self, seconds: float) -> None:
        self.t0, self.seconds = time.perf_counter(), seconds
        self.skipped: list[str] = []

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.t0)

    def allows(self, what: str, needs_s: float) -> bool:
        if self.left() >= needs_s:
            return True
        self.skipped.append(what)
        print(f"  skipped (budget): {what}")
        return False


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _reset_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gb(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 3) if device.type == "cuda" else None


#: ``--smoke``: the same two architectures, small (the tiny ZoomNet; an HRNet of tiny widths), at 96x128
SMOKE_MODELS = {
    "zoomnet": ("zoomnet_tiny", ()),
    "hrnet_wholebody": ("hrnet_wholebody", ("model.input_size=[96,128]", "model.net.stem_width=16",
                                            "model.net.stem_planes=16", "model.net.stem_blocks=1",
                                            "model.net.widths=[8,16,32,64]", "model.net.num_modules=[1,1,1]",
                                            "model.net.num_blocks=1")),
}


def make_runner(name: str, batch: int, device: torch.device, smoke: bool, channels_last: bool) -> Runner:
    config, overrides = SMOKE_MODELS.get(name, (name, ())) if smoke else (name, ())
    return Runner(config, batch, device, channels_last=channels_last, overrides=overrides, label=name)


def train_rate(r: Runner, precision: str, steps: int, warmup: int) -> tuple[float, float]:
    """(img/s, seconds of the first step, compile included) of forward + backward + Adam steps."""
    dtype = PRECISIONS[precision]
    first = r.forward_backward(step=True, autocast=dtype)[0]
    for _ in range(warmup - 1):
        r.forward_backward(step=True, autocast=dtype)
    _sync(r.device)
    t = time.perf_counter()
    for _ in range(steps):
        train_step(r, dtype)
    _sync(r.device)
    return r.images.shape[0] * steps / (time.perf_counter() - t), first


def train_step(r: Runner, dtype: torch.dtype | None) -> None:
    """One step with no host sync of its own (the timed loop; ``Runner.forward_backward`` syncs)."""
    with torch.autocast(r.device.type, dtype=dtype, enabled=dtype is not None):
        out = r.net(r.images, part_boxes=r.batch["part_boxes"], part_valid=r.batch["part_valid"])
        total = r.loss(out, r.batch)["total"]
    r.opt.zero_grad(set_to_none=True)
    total.backward()
    r.opt.step()


def count_syncs(r: Runner, dtype: torch.dtype | None, steps: int) -> float | None:
    """Host syncs per steady-state training step (CUDA only: ``set_sync_debug_mode("warn")`` warns at
    each synchronising call)."""
    if r.device.type != "cuda":
        return None
    train_step(r, dtype)
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for _ in range(steps):
                train_step(r, dtype)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    syncs = [w for w in caught if "synchroniz" in str(w.message).lower()]
    for w in {str(w.message).splitlines()[0]: w for w in syncs}.values():
        print(f"    sync: {w.filename}:{w.lineno}: {str(w.message).splitlines()[0][:120]}")
    return len(syncs) / steps


def infer_rate(net: torch.nn.Module, images: torch.Tensor, steps: int, warmup: int) -> tuple[float, float]:
    """(img/s, seconds of the first call) of eval forwards under no_grad and bf16 autocast."""
    dev = images.device
    with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16):
        _sync(dev)
        t = time.perf_counter()
        net(images)
        _sync(dev)
        first = time.perf_counter() - t
        for _ in range(warmup - 1):
            net(images)
        _sync(dev)
        t = time.perf_counter()
        for _ in range(steps):
            net(images)
        _sync(dev)
    return images.shape[0] * steps / (time.perf_counter() - t), first


def data_section(args: argparse.Namespace, device: torch.device, budget: Budget) -> dict:
    """Samples/s of the training pipeline from COCO-sized JPEGs with the machine's cores as workers, and
    one core's JPEG decode rate against nvJPEG's."""
    import cv2
    import numpy as np
    from torch.utils.data import DataLoader

    from wholebody.data.coco import load_coco_wholebody
    from wholebody.data.dataset import TopDownDataset
    from wholebody.data.synthetic import generate_synthetic
    from wholebody.data.transforms import AugmentConfig, default_photometric

    out: dict = {}
    workers = args.workers or os.cpu_count() or 1
    size = (96, 128) if args.smoke else (288, 384)
    with tempfile.TemporaryDirectory() as tmp:
        files = generate_synthetic(Path(tmp) / "set", images=4 if args.smoke else 32, val_images=0, seed=0,
                                   config={"image_size": (640, 480), "persons": (1, 3)})
        recs = load_coco_wholebody(files["train"], Path(tmp) / "set" / "train2017").records
        recs = (recs * (args.data_samples // len(recs) + 1))[: args.data_samples]
        ds = TopDownDataset(recs, size, train=True, augment=AugmentConfig(), photometric=default_photometric())
        batch = int(args.batches.split(",")[0])
        loader = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
                            pin_memory=device.type == "cuda", persistent_workers=False, prefetch_factor=4)
        it = iter(loader)
        next(it)  # workers started, first batches in flight
        t, n = time.perf_counter(), 0
        for b in it:
            n += b["image"].shape[0]
            if budget.left() < 60 and not args.smoke:
                budget.skipped.append("data: the rest of the epoch")
                break
        rate = n / (time.perf_counter() - t)
        out.update(workers=workers, batch=batch, samples=n, samples_per_s=round(rate, 1))
        print(f"  data pipeline, {workers} workers, batch {batch}: {rate:.0f} samples/s ({n} samples)")
        jpegs = sorted((Path(tmp) / "set" / "train2017").glob("*.jpg"))
        cv2.setNumThreads(0)
        t = time.perf_counter()
        for p in jpegs * 4:
            cv2.imread(str(p))
        out["cpu_decode_per_s_one_core"] = round(len(jpegs) * 4 / (time.perf_counter() - t), 1)
        if device.type == "cuda":
            from torchvision.io import decode_jpeg

            raw = [torch.from_numpy(np.fromfile(p, dtype=np.uint8)) for p in jpegs]
            decode_jpeg(raw, device="cuda")
            torch.cuda.synchronize()
            t = time.perf_counter()
            for _ in range(8):
                decode_jpeg(raw, device="cuda")
            torch.cuda.synchronize()
            out["nvjpeg_decode_per_s"] = round(len(raw) * 8 / (time.perf_counter() - t), 1)
        print(f"  JPEG decode 640x480: one CPU core {out['cpu_decode_per_s_one_core']}/s, "
              f"nvJPEG {out.get('nvjpeg_decode_per_s', 'n/a (no GPU)')}/s")
    return out


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    budget = Budget(args.budget_s)
    cuda = torch.cuda.is_available() and not args.smoke
    device = torch.device("cuda" if cuda else "cpu")
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    torch.set_float32_matmul_precision("high")
    result: dict = {"device": torch.cuda.get_device_name(0) if cuda else "cpu", "torch": torch.__version__,
                    "cuda": torch.version.cuda if cuda else None, "smoke": bool(args.smoke),
                    "budget_s": args.budget_s, "train": {}, "infer": {}}
    print(f"device {result['device']}, torch {torch.__version__}, CUDA {result['cuda']}, budget {args.budget_s:.0f} s")
    models = args.models.split(",")
    batches = [int(b) for b in args.batches.split(",")]

    # 1. training rates
    best: dict[str, tuple[str, bool]] = {}
    macs: dict[str, float] = {}
    for name in models:
        result["train"][name] = {}
        for batch in batches:
            rates = {}
            for precision in PRECISIONS:
                for cl in (False, True):
                    key = f"{precision}{'_cl' if cl else ''}"
                    if not budget.allows(f"train {name} b{batch} {key}", 20):
                        continue
                    _reset_memory(device)
                    r = make_runner(name, batch, device, args.smoke, cl)
                    rate, _ = train_rate(r, precision, args.steps, args.warmup)
                    rates[key] = {"img_per_s": round(rate, 1), "peak_gb": _peak_gb(device)}
                    macs[name] = r.gmacs
                    print(f"  train {name:16s} b{batch:<3d} {key:8s} {rate:9.1f} img/s  peak {rates[key]['peak_gb']} GB")
                    del r
            result["train"][name][f"b{batch}"] = rates
            if rates and batch == batches[0]:
                key = max(rates, key=lambda k: rates[k]["img_per_s"])
                best[name] = (key.split("_")[0], key.endswith("_cl"))
        # compile of the fastest eager variant at the first batch size
        if name in best and budget.allows(f"train {name} compiled", 150 if not args.smoke else 1):
            precision, cl = best[name]
            _reset_memory(device)
            r = make_runner(name, batches[0], device, args.smoke, cl)
            r.net = torch.compile(r.net, backend=args.compile_backend)
            rate, first = train_rate(r, precision, args.steps, args.warmup)
            key = f"{precision}{'_cl' if cl else ''}_compiled"
            result["train"][name][f"b{batches[0]}"][key] = {"img_per_s": round(rate, 1), "compile_s": round(first, 1),
                                                             "peak_gb": _peak_gb(device)}
            print(f"  train {name:16s} b{batches[0]:<3d} {key} {rate:9.1f} img/s  (first step, compile included, {first:.1f} s)")
            # 3. host syncs per step, on the compiled variant of the first model
            if name == models[0]:
                result["syncs_per_step"] = count_syncs(r, PRECISIONS[precision], max(args.steps, 5))
            del r

    # 2. ZoomNet/HRNet time ratio against the MACs ratio
    if {"zoomnet", "hrnet_wholebody"} <= set(macs):
        b = f"b{batches[0]}"
        zoom, hr = result["train"]["zoomnet"].get(b, {}), result["train"]["hrnet_wholebody"].get(b, {})
        common = [k for k in zoom if k in hr]
        macs_ratio = macs["zoomnet"] / macs["hrnet_wholebody"]
        result["ratio"] = {"macs_ratio": round(macs_ratio, 4), "time_ratio": {}}
        for k in common:
            t = hr[k]["img_per_s"] / zoom[k]["img_per_s"]  # time per image, ZoomNet over HRNet
            result["ratio"]["time_ratio"][k] = {"ratio": round(t, 4), "x_macs": round(t / macs_ratio, 4)}
            print(f"  ZoomNet/HRNet time {k:16s} {t:.3f} = {t / macs_ratio:.3f} x the MACs ratio {macs_ratio:.3f} "
                  f"(target <= 1.15)")

    # 4. inference
    infer_batches = [int(b) for b in args.infer_batches.split(",")]
    for name in models:
        result["infer"][name] = {}
        _, cl = best.get(name, ("bf16", True))
        for compiled in (False, True):
            if not budget.allows(f"infer {name} {'compiled' if compiled else 'eager'}", 60 if compiled and not args.smoke else 10):
                continue
            r = make_runner(name, max(infer_batches), device, args.smoke, cl)
            net = r.net.eval()
            if compiled:
                net = torch.compile(net, backend=args.compile_backend, dynamic=False)
            for b in infer_batches:
                rate, first = infer_rate(net, r.images[:b], args.steps, args.warmup)
                key = f"b{b}_{'compiled' if compiled else 'eager'}"
                result["infer"][name][key] = {"img_per_s": round(rate, 1), **({"compile_s": round(first, 1)} if compiled else {})}
                print(f"  infer {name:16s} {key:14s} {rate:9.1f} img/s")
            del r, net

    # 5. data pipeline
    if budget.allows("data pipeline", 30 if not args.smoke else 1):
        result["data"] = data_section(args, device, budget)
        train0 = result["train"].get(models[0], {}).get(f"b{batches[0]}", {})
        if train0:
            top = max(v["img_per_s"] for v in train0.values())
            result["data"]["feeds_training"] = result["data"]["samples_per_s"] >= top
            print(f"  the pipeline {'keeps' if result['data']['feeds_training'] else 'does NOT keep'} up with "
                  f"{models[0]} training ({top:.0f} img/s)")

    result["skipped"] = budget.skipped
    result["wall_s"] = round(time.perf_counter() - budget.t0, 1)
    targets = {}
    z = result["train"].get("zoomnet", {}).get("b32", {})
    bf16 = [v["img_per_s"] for k, v in z.items() if k.startswith("bf16")]
    if bf16 and cuda:
        targets["zoomnet_bf16_train_ge_400"] = max(bf16) >= 400
    if "ratio" in result and result["ratio"]["time_ratio"]:
        targets["time_ratio_le_1.15x_macs"] = min(v["x_macs"] for v in result["ratio"]["time_ratio"].values()) <= 1.15
    if result.get("syncs_per_step") is not None:
        targets["zero_syncs_per_step"] = result["syncs_per_step"] == 0
    if "feeds_training" in result.get("data", {}):
        targets["data_feeds_training"] = result["data"]["feeds_training"]
    result["targets"] = targets
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
