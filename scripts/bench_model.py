"""Benchmark: ZoomNet vs the one-stage HRNet-W32 (133 keypoints) — parameters, MACs, throughput.

Both paper configs run in the same process at their input size (384x288) with the same batch, timed
alternately (ZoomNet, HRNet, ZoomNet, ...) so that load from other processes hits both alike; the
median of the repeats is reported. Forward = eval mode under ``torch.no_grad`` (what inference pays,
box decoding and RoIAlign included); forward+backward = training mode with GT part boxes, the loss
and ``backward()`` (no optimiser step). The target: ZoomNet's time over HRNet's stays within 1.15x of
their MACs ratio (no per-person or per-part Python loops hiding extra cost).

Also measured: the tiny config's training throughput (forward+backward+Adam step, batch 16) on this
CPU (target >= 40 crops/s), and on a GPU, if there is one, bf16-autocast + channels_last training
throughput in img/s.

Usage: python scripts/bench_model.py [--batch 8] [--reps 3] [--threads N] [--omp-passive]
Ends with one JSON line of the figures.
"""

from __future__ import annotations

import argparse
import os
import sys


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8, help="crops per batch for the paper configs (default 8)")
    p.add_argument("--reps", type=int, default=3, help="timed repeats per measurement (median reported)")
    p.add_argument("--tiny-batch", type=int, default=16)
    p.add_argument("--tiny-reps", type=int, default=10)
    p.add_argument("--gpu-batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--omp-passive", action="store_true",
                   help="set OMP_WAIT_POLICY=PASSIVE (idle OpenMP threads sleep instead of spinning; much "
                        "steadier when other processes share the cores)")
    p.add_argument("--channels-last", action="store_true", help="run both paper configs in channels_last")
    p.add_argument("--skip-tiny", action="store_true")
    return p.parse_args()


ARGS = _args() if __name__ == "__main__" else None
if ARGS is not None and ARGS.omp_passive:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # read by the OpenMP runtime when torch loads

import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
from hydra import compose, initialize_config_module  # noqa: E402
from hydra.utils import instantiate  # noqa: E402

from wholebody.keypoints import BOX_PARTS, COCO_WHOLEBODY  # noqa: E402
from wholebody.models import count_macs, count_params  # noqa: E402


def model_cfg(name: str, overrides: tuple[str, ...] = ()):
    with initialize_config_module("wholebody.conf", version_base="1.3"):
        return compose(config_name="train", overrides=[f"model={name}", *overrides]).model


def synthetic_batch(b: int, w: int, h: int, device: torch.device, seed: int = 0) -> dict:
    """A batch in the data pipeline's format: persons with clustered face/hand keypoints and their boxes."""
    g = torch.Generator().manual_seed(seed)
    kp = torch.rand(b, COCO_WHOLEBODY.num_keypoints, 3, generator=g) * torch.tensor([w * 0.8, h * 0.8, 0.0])
    kp[..., :2] += torch.tensor([w * 0.1, h * 0.1])
    kp[..., 2] = 2.0
    boxes = []
    for i, part in enumerate(BOX_PARTS):
        sl = COCO_WHOLEBODY.slice(part)
        c = torch.tensor([w * (0.3 + 0.2 * i), h * (0.2 + 0.25 * i)])
        kp[:, sl, :2] = c + (torch.rand(b, sl.stop - sl.start, 2, generator=g) - 0.5) * (0.12 * h)
        boxes.append(torch.cat([kp[:, sl, :2].amin(1), kp[:, sl, :2].amax(1)], -1))
    batch = {
        "image": torch.randint(0, 256, (b, 3, h, w), dtype=torch.uint8, generator=g),
        "keypoints": kp,
        "part_boxes": torch.stack(boxes, 1),
        "part_valid": torch.ones(b, 3, dtype=torch.bool),
    }
    return {k: v.to(device) for k, v in batch.items()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class Runner:
    """One config: its net, loss, batch, and the timed steps."""

    def __init__(self, name: str, batch: int, device: torch.device, channels_last: bool = False,
                 overrides: tuple[str, ...] = (), label: str | None = None):
        cfg = model_cfg(name, overrides)
        self.name = label or name
        self.w, self.h = (int(v) for v in cfg.input_size)
        torch.manual_seed(0)
        self.net = instantiate(cfg.net).to(device)
        self.loss = instantiate(cfg.loss).to(device)
        self.device = device
        self.batch = synthetic_batch(batch, self.w, self.h, device)
        self.images = self.batch["image"]
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
            self.images = self.images.contiguous(memory_format=torch.channels_last)
        self.params_m = count_params(self.net) / 1e6
        self.gmacs = count_macs(self.net, (self.w, self.h)) / 1e9
        self.opt = None

    def forward(self) -> tuple[float, float]:
        self.net.eval()
        _sync(self.device)
        t, c = time.perf_counter(), time.process_time()
        with torch.no_grad():
            self.net(self.images)
        _sync(self.device)
        return time.perf_counter() - t, time.process_time() - c

    def forward_backward(self, step: bool = False, autocast: torch.dtype | None = None) -> tuple[float, float]:
        self.net.train()
        if step and self.opt is None:
            self.opt = torch.optim.Adam(self.net.parameters(), 1e-3)
        _sync(self.device)
        t, c = time.perf_counter(), time.process_time()
        with torch.autocast(self.device.type, dtype=autocast, enabled=autocast is not None):
            out = self.net(self.images, part_boxes=self.batch["part_boxes"], part_valid=self.batch["part_valid"])
            total = self.loss(out, self.batch)["total"]
        if self.opt is not None:
            self.opt.zero_grad(set_to_none=True)
        else:
            self.net.zero_grad(set_to_none=True)
        total.backward()
        if self.opt is not None:
            self.opt.step()
        _sync(self.device)
        return time.perf_counter() - t, time.process_time() - c


def alternate(runners: list[Runner], what: str, reps: int) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) seconds per batch of each runner's ``what``; warm-up first, repeats interleaved.

    CPU time (all threads of this process) is what the work costs; wall time is what one waits, and
    also counts time other processes took the cores."""
    times: dict[str, list[tuple[float, float]]] = {r.name: [] for r in runners}
    for r in runners:
        getattr(r, what)()  # warm-up (allocator, oneDNN primitives)
    for _ in range(reps):
        for r in runners:
            times[r.name].append(getattr(r, what)())
    return {k: (statistics.median(t[0] for t in v), statistics.median(t[1] for t in v)) for k, v in times.items()}


@torch.no_grad()
def breakdown(r: Runner, reps: int) -> list[tuple[str, float, float]]:
    """(part, GMACs per crop, CPU seconds per crop) of an eval forward, part by part."""
    from torch.utils.flop_counter import FlopCounterMode

    net = r.net.eval()
    x = net.normalize(r.images)
    f1, f2 = net.feature_net(x)
    parts = [("FeatureNet", lambda: net.feature_net(x)), ("BodyNet / stages", lambda: net.body_net(f2))]
    if hasattr(net, "zoom"):
        rois = net.select_rois(net(r.images)["body_boxes"], None, None)
        parts.append(("RoIAlign + part heads", lambda: net.zoom(f1, f2, rois)))
    out = []
    for label, fn in parts:
        with FlopCounterMode(display=False) as counter:
            fn()
        fn()
        cpu = []
        for _ in range(reps):
            c = time.process_time()
            fn()
            cpu.append(time.process_time() - c)
        b = r.images.shape[0]
        out.append((label, counter.get_total_flops() / 2e9 / b, statistics.median(cpu) / b))
    return out


def main() -> None:
    args = ARGS
    if args.threads:
        torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    print(f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}, batch {args.batch}, {args.reps} repeats, "
          f"{'channels_last' if args.channels_last else 'NCHW'}")
    cl = args.channels_last
    runners = [Runner("zoomnet", args.batch, cpu, cl), Runner("hrnet_wholebody", args.batch, cpu, cl)]
    zoom, hrnet = runners
    print(f"\n{'config':18s} {'input':>9s} {'params (M)':>11s} {'GMACs':>8s}")
    for r in runners:
        print(f"{r.name:18s} {r.w}x{r.h:<5d} {r.params_m:11.2f} {r.gmacs:8.2f}")
    flops_ratio = zoom.gmacs / hrnet.gmacs
    print("(MACs = multiply-adds, the unit of the paper's 'GFLOPs': ZoomNet 27.36, HRNet-W32 16.0 at 384x288)")

    fwd = alternate(runners, "forward", args.reps)
    fb = alternate(runners, "forward_backward", args.reps)
    result: dict = {}
    print(f"\n{'config':18s} {'fwd crops/s':>12s} {'fwd+bwd crops/s':>16s}   (wall clock)")
    for r in runners:
        result[r.name] = {
            "params_m": round(r.params_m, 3),
            "gmacs": round(r.gmacs, 3),
            "crops_per_s": round(args.batch / fwd[r.name][0], 3),
            "train_crops_per_s": round(args.batch / fb[r.name][0], 3),
        }
        print(f"{r.name:18s} {args.batch / fwd[r.name][0]:12.2f} {args.batch / fb[r.name][0]:16.2f}")
    print(f"\nMACs ratio ZoomNet/HRNet: {flops_ratio:.3f}")
    ratios = {}
    for label, d in (("forward", fwd), ("forward+backward", fb)):
        for i, clock in enumerate(("wall", "CPU")):
            t = d["zoomnet"][i] / d["hrnet_wholebody"][i]
            ratios[(label, clock)] = t
            verdict = "OK" if t <= 1.15 * flops_ratio else "OVER"
            print(f"time ratio ({label}, {clock} time): {t:.3f} = {t / flops_ratio:.3f} x the MACs ratio "
                  f"(target <= 1.15): {verdict}")
    result["time_ratio_zoomnet_vs_hrnet"] = round(ratios[("forward", "wall")], 4)
    result["time_ratio_train_zoomnet_vs_hrnet"] = round(ratios[("forward+backward", "wall")], 4)
    result["cpu_time_ratio_zoomnet_vs_hrnet"] = round(ratios[("forward", "CPU")], 4)
    result["cpu_time_ratio_train_zoomnet_vs_hrnet"] = round(ratios[("forward+backward", "CPU")], 4)
    result["flops_ratio_zoomnet_vs_hrnet"] = round(flops_ratio, 4)
    result["batch"] = args.batch
    result["threads"] = torch.get_num_threads()
    result["omp_wait_policy"] = os.environ.get("OMP_WAIT_POLICY", "")
    result["channels_last"] = bool(args.channels_last)

    print("\nwhere the time goes (eval forward, CPU time per crop):")
    for r in runners:
        for label, g, c in breakdown(r, max(2, args.reps)):
            print(f"  {r.name:16s} {label:22s} {g:7.2f} GMACs {c * 1e3:8.1f} ms {g / c:6.1f} GMAC/s")
    # control: the same ZoomNet with 16-multiple head widths (W16). If its time ratio meets its own MACs
    # ratio, the zoom adds no overhead of its own and a gap at W18 is the cost of 18/36-channel convs.
    ctrl = Runner("zoomnet", args.batch, cpu, cl, overrides=("model.net.head_widths=[16,32,64,128]",),
                  label="zoomnet_w16heads")
    c_fwd = alternate([ctrl, hrnet], "forward", args.reps)
    c_ratio = ctrl.gmacs / hrnet.gmacs
    c_t = c_fwd[ctrl.name][1] / c_fwd["hrnet_wholebody"][1]
    print(f"\ncontrol, ZoomNet with W16 heads: {ctrl.gmacs:.2f} GMACs, MACs ratio {c_ratio:.3f}, forward CPU-time "
          f"ratio {c_t:.3f} = {c_t / c_ratio:.3f} x its MACs ratio")
    result["control_w16_heads"] = {"gmacs": round(ctrl.gmacs, 3), "flops_ratio": round(c_ratio, 4),
                                   "cpu_time_ratio": round(c_t, 4)}
    del ctrl
    del runners, zoom, hrnet

    if not args.skip_tiny:
        tiny = Runner("zoomnet_tiny", args.tiny_batch, cpu)
        times = []
        tiny.forward_backward(step=True)
        for _ in range(args.tiny_reps):
            times.append(tiny.forward_backward(step=True)[0])
        rate = args.tiny_batch / statistics.median(times)
        verdict = "OK" if rate >= 40 else "BELOW"
        print(f"\nzoomnet_tiny {tiny.w}x{tiny.h}: {tiny.params_m:.2f} M params, {tiny.gmacs:.3f} GMACs; training "
              f"(fwd+bwd+Adam, batch {args.tiny_batch}): {rate:.1f} crops/s (target >= 40): {verdict}")
        result["zoomnet_tiny"] = {"params_m": round(tiny.params_m, 3), "gmacs": round(tiny.gmacs, 4),
                                  "train_crops_per_s": round(rate, 2), "batch": args.tiny_batch}

    if torch.cuda.is_available():
        gpu = torch.device("cuda")
        print(f"\nGPU {torch.cuda.get_device_name(0)}: bf16 autocast + channels_last training, batch {args.gpu_batch}")
        for name in ("zoomnet", "hrnet_wholebody"):
            r = Runner(name, args.gpu_batch, gpu, channels_last=True)
            for _ in range(3):
                r.forward_backward(step=True, autocast=torch.bfloat16)
            t = statistics.median(r.forward_backward(step=True, autocast=torch.bfloat16)[0] for _ in range(10))
            result[name]["gpu_train_img_per_s"] = round(args.gpu_batch / t, 1)
            print(f"{name:18s} {args.gpu_batch / t:10.1f} img/s")
    else:
        print("\nno GPU: bf16 + channels_last GPU throughput not measured")
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
