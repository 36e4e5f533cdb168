"""Benchmark: end-to-end prediction on the CPU — persons batched vs one by one, ONNX Runtime vs PyTorch.

End to end = what ``WholeBodyEstimator`` does for one decoded image with N person boxes: crop every
person (one affine warp each), run the network, decode the heatmaps, map back to image px and make the
COCO-WholeBody results rows. Measured in the same process, interleaved round by round (so that load
from other processes hits every variant alike), median over the rounds:

* **batched**: one call per image, the N crops in one forward pass (what ``wholebody-predict`` does);
* **one by one**: N calls per image with one box each (N forward passes of one crop);
* **ONNX Runtime**: the batched path with the network's forward pass in ONNX Runtime (the model
  exported by ``export_onnx``, dynamic batch) instead of PyTorch eager.

Also the network alone (forward + decode of B crops, no cropping): crops/s at batch 1 and at batch N,
which bounds what batching can gain: on a CPU a convolution costs the same per crop in any batch, so
batching saves only the fixed cost of each call (Python, operator dispatch, thread start-up, small
tensors), and the end-to-end speed-up tends to the network's batch-N/batch-1 crop-rate ratio.

Images: the shared COCO-WholeBody sample's JPEGs when present, else synthetic 640x480 renders; person
boxes are drawn at random inside each image. The network is untrained (speed does not depend on the
weights). Usage:

    python scripts/bench_predict.py [--model zoomnet_tiny] [--persons 1 4 8] [--rounds 5] [--threads N]

Ends with one JSON line of the figures.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the command-line tools run (wholebody.cli)

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from wholebody.inference import (  # noqa: E402
    WholeBodyEstimator,
    build_net,
    export_onnx,
    load_model_config,
    write_checkpoint,
)

SAMPLE = Path(os.environ.get("WHOLEBODY_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "data" / "cocowb_sample"


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="zoomnet_tiny", help="packaged model config (zoomnet_tiny, zoomnet, ...)")
    p.add_argument("--persons", type=int, nargs="+", default=[1, 4, 8], help="persons per image")
    p.add_argument("--images", type=int, default=4, help="images per round")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds (median reported)")
    p.add_argument("--threads", type=int, default=None, help="torch and ONNX Runtime threads (default: torch's)")
    p.add_argument("--no-onnx", action="store_true", help="skip the ONNX Runtime comparison")
    return p.parse_args()


def load_images(n: int) -> tuple[list[np.ndarray], str]:
    """n RGB images: the shared sample's JPEGs (cycled) or synthetic 640x480 renders."""
    import cv2

    files = sorted(SAMPLE.glob("*.jpg")) if SAMPLE.is_dir() else []
    if files:
        return [cv2.imread(str(files[i % len(files)]))[:, :, ::-1].copy() for i in range(n)], f"{SAMPLE} JPEGs"
    from wholebody.data.synthetic import SynthConfig, render_image

    rng = np.random.default_rng(0)
    cfg = SynthConfig(image_size=(640, 480))
    return [render_image(rng, cfg)[0] for _ in range(n)], "synthetic 640x480 renders (no shared sample)"


def random_boxes(rng: np.random.Generator, n: int, w: int, h: int) -> np.ndarray:
    """n person-shaped boxes (height 40-90% of the image, width 40-80% of the height) inside the image."""
    bh = rng.uniform(0.4, 0.9, n) * h
    bw = np.minimum(bh * rng.uniform(0.4, 0.8, n), w - 1)
    x = rng.uniform(0, w - bw)
    y = rng.uniform(0, h - bh)
    return np.stack([x, y, x + bw, y + bh], 1)


def time_it(fn, min_seconds: float = 0.25) -> float:
    """Seconds per call of ``fn``, calling it until at least ``min_seconds`` have passed."""
    calls, t0 = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        dt = time.perf_counter() - t0
        if dt >= min_seconds:
            return dt / calls


def main() -> int:
    args = _args()
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    images, source = load_images(args.images)
    rng = np.random.default_rng(0)
    boxes = {n: [random_boxes(rng, n, im.shape[1], im.shape[0]) for im in images] for n in args.persons}
    mc = load_model_config(args.model)
    torch.manual_seed(0)
    tmp = Path(tempfile.mkdtemp(prefix="bench_predict_"))
    ckpt = write_checkpoint(build_net(mc), tmp / "model.ckpt", mc)
    eager = WholeBodyEstimator.from_checkpoint(ckpt, batch_size=max(args.persons))
    variants = {"batched": eager}
    if not args.no_onnx:
        t0 = time.perf_counter()
        net, info = eager.net, eager.info
        export_onnx(net, info, tmp / "model.onnx")
        print(f"exported {args.model} to ONNX in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        variants["onnxruntime"] = WholeBodyEstimator.from_onnx(tmp / "model.onnx", batch_size=max(args.persons),
                                                               threads=threads)

    def run_batched(est, n):
        for im, b in zip(images, boxes[n]):
            for i, res in enumerate(est.estimate_many([im], [b])):
                res.rows(i)

    def run_single(n):
        for im, b in zip(images, boxes[n]):
            for j in range(n):
                eager(im, boxes=b[j: j + 1]).rows(j)

    # warm-up (allocators, ORT's first-run graph work), then interleaved rounds
    w, h = eager.input_size
    crops = {n: torch.randint(0, 256, (n, 3, h, w), dtype=torch.uint8) for n in args.persons}
    for n in args.persons:
        run_batched(eager, n)
        run_single(n)
        eager.predict_crops(crops[n])
        if "onnxruntime" in variants:
            run_batched(variants["onnxruntime"], n)
    times: dict[str, dict[int, list[float]]] = {k: {n: [] for n in args.persons} for k in ("batched", "one_by_one", "onnxruntime")}
    net_times: dict[str, dict[int, list[float]]] = {"batch1": {n: [] for n in args.persons}, "batchN": {n: [] for n in args.persons}}
    for _ in range(args.rounds):
        for n in args.persons:
            times["batched"][n].append(time_it(lambda n=n: run_batched(eager, n)) / len(images))
            times["one_by_one"][n].append(time_it(lambda n=n: run_single(n)) / len(images))
            if "onnxruntime" in variants:
                times["onnxruntime"][n].append(time_it(lambda n=n: run_batched(variants["onnxruntime"], n)) / len(images))
            c = crops[n]
            net_times["batchN"][n].append(time_it(lambda c=c: eager.predict_crops(c)) / n)
            net_times["batch1"][n].append(time_it(lambda c=c: [eager.predict_crops(c[i: i + 1]) for i in range(len(c))]) / n)

    med = {k: {n: statistics.median(v[n]) for n in args.persons if v[n]} for k, v in times.items()}
    net_med = {k: {n: statistics.median(v[n]) for n in args.persons} for k, v in net_times.items()}
    print(f"end-to-end prediction, {args.model} ({w}x{h} crops), {source}, {len(images)} images x "
          f"{args.rounds} rounds, {threads} threads (torch {torch.__version__})")
    print(f"{'persons':>8}{'batched img/s':>15}{'1-by-1 img/s':>14}{'speed-up':>10}{'net bound':>11}"
          + (f"{'ORT img/s':>11}{'ORT/eager':>11}" if med["onnxruntime"] else ""))
    figures: dict = {"model": args.model, "input_size": [w, h], "threads": threads, "images": source, "rounds": args.rounds,
                     "persons": {}}
    for n in args.persons:
        b, s = 1 / med["batched"][n], 1 / med["one_by_one"][n]
        bound = net_med["batch1"][n] / net_med["batchN"][n]
        row = {"batched_images_per_s": round(b, 3), "one_by_one_images_per_s": round(s, 3), "speedup": round(b / s, 3),
               "network_batchN_over_batch1": round(bound, 3),
               "network_crops_per_s_batch1": round(1 / net_med["batch1"][n], 2),
               "network_crops_per_s_batchN": round(1 / net_med["batchN"][n], 2)}
        # the target: batching persons gains (at least) what batching gains the network itself; 10 % for
        # timing noise between interleaved runs
        row["batching_gain_kept"] = bool(b / s >= 0.9 * bound)
        line = f"{n:>8}{b:>15.2f}{s:>14.2f}{b / s:>10.2f}{bound:>11.2f}"
        if n in med["onnxruntime"]:
            o = 1 / med["onnxruntime"][n]
            row.update({"onnxruntime_images_per_s": round(o, 3), "onnxruntime_over_eager": round(o / b, 3)})
            line += f"{o:>11.2f}{o / b:>11.2f}"
        figures["persons"][str(n)] = row
        print(line)
    print("net bound: the network alone (forward + decode), crops/s at batch N over batch 1 — the most that "
          "batching persons can gain on this CPU")
    kept = [n for n in args.persons if figures["persons"][str(n)]["batching_gain_kept"]]
    figures["batching_gain_kept_all"] = len(kept) == len(args.persons)
    print(f"target (end-to-end speed-up >= 0.9 x net bound): {'OK' if figures['batching_gain_kept_all'] else 'BELOW'}; "
          f"met for {len(kept)} of {len(args.persons)} person counts")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
