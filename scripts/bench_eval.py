#!/usr/bin/env python
"""Benchmark: ``wholebody-eval`` against the reference (xtcocotools), side by side, same files.

On a synthetic val-sized set (default 5,000 images, ~7,700 persons, ~10,000 results; see
``wholebody.evaluation.simulate``) it times

* ours: the whole ``wholebody-eval GT RESULTS --out ... --no-boxes`` process (interpreter start,
  imports, JSON reading, the six evaluations, writing the stats; part-box AP, which the reference
  does not compute, is switched off), with the default ``--jobs auto`` and with 1 and 2 processes;
* the reference: a separate Python process doing what mmpose does - ``COCO(gt)``,
  ``loadRes(results)`` and six ``COCOeval`` runs (evaluate, accumulate, summarize);
* ours with the JSON already loaded (``evaluate(gt_dict, rows)`` in this process), and with the
  arrays already built (the six evaluations alone);

and checks that all 60 stats agree. Each timing is the median of ``--repeat`` runs. The last
line printed is one JSON object: ``{"ours_s", "xtcocotools_s", "speedup", "max_abs_diff"}``.

    python scripts/bench_eval.py [--images 5000] [--repeat 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PARTS = ("body", "foot", "face", "lefthand", "righthand", "wholebody")
STATS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")


def reference(gt_path: str, res_path: str, out_path: str) -> None:
    """The reference evaluation as mmpose's CocoWholeBodyMetric runs it (the package's one definition,
    ``wholebody.evaluation.reference``); stats to ``out_path``."""
    from wholebody.evaluation.reference import reference_stats

    Path(out_path).write_text(json.dumps(reference_stats(gt_path, res_path, PARTS)))


def timed(cmd: list[str], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True)
        times.append(time.perf_counter() - t)
        if r.returncode != 0:
            sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr}")
    return times


def ours_command(gt: Path, res: Path, out: Path, *extra: str) -> list[str]:
    """``wholebody-eval`` doing the reference's work: the six keypoint evaluations (no part-box AP)."""
    exe = shutil.which("wholebody-eval", path=str(Path(sys.executable).parent))
    base = [exe] if exe else [sys.executable, "-m", "wholebody.cli.evaluate"]
    return [*base, str(gt), str(res), "--out", str(out), "-q", "--no-boxes", *extra]


def _runs(times: list[float]) -> str:
    return f"{statistics.median(times):.3f} s  (runs: " + ", ".join(f"{x:.3f}" for x in times) + ")"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeat", type=int, default=3, help="runs per timing (median reported)")
    p.add_argument("--keep", metavar="DIR", help="write the files here and keep them")
    p.add_argument("--reference", nargs=3, metavar=("GT", "RES", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.reference:
        reference(*args.reference)
        return

    import numpy as np
    import orjson

    from wholebody.evaluation import evaluate, load_ground_truth, load_results
    from wholebody.evaluation.part import evaluate_keypoints
    from wholebody.evaluation.simulate import simulate

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_eval_"))
    work.mkdir(parents=True, exist_ok=True)
    gt_path, res_path = work / "gt.json", work / "results.json"
    t = time.perf_counter()
    gt, rows = simulate(args.images, args.seed)
    gt_path.write_bytes(orjson.dumps(gt))
    res_path.write_bytes(orjson.dumps(rows))
    print(
        f"set: {len(gt['images'])} images, {len(gt['annotations'])} persons, {len(rows)} results "
        f"({gt_path.stat().st_size / 1e6:.1f} + {res_path.stat().st_size / 1e6:.1f} MB, made in "
        f"{time.perf_counter() - t:.1f} s) in {work}"
    )
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}, numpy {np.__version__}")

    print(f"load average before timing: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    # in-process timings: JSON already loaded, and arrays already built
    loaded, arrays = [], []
    g = load_ground_truth(gt)
    d = load_results(rows, g)
    for _ in range(args.repeat):
        t = time.perf_counter()
        evaluate(gt, rows)
        loaded.append(time.perf_counter() - t)
        t = time.perf_counter()
        evaluate_keypoints(g, d)
        arrays.append(time.perf_counter() - t)
    del g, d

    from wholebody.evaluation.reference import reference_status

    state, why = reference_status()
    if state == "broken":
        sys.exit(why)
    have_reference = state == "ok"
    ours_out, ref_out = work / "stats_ours.json", work / "stats_xtcocotools.json"
    commands = {
        "ours": ours_command(gt_path, res_path, ours_out),
        "ours -j1": ours_command(gt_path, res_path, work / "stats_j1.json", "--jobs", "1"),
        "ours -j2": ours_command(gt_path, res_path, work / "stats_j2.json", "--jobs", "2"),
    }
    if have_reference:
        me = str(Path(__file__).resolve())
        commands["xtcocotools"] = [
            sys.executable,
            me,
            "--reference",
            str(gt_path),
            str(res_path),
            str(ref_out),
        ]
    times: dict[str, list[float]] = {k: [] for k in commands}
    for _ in range(args.repeat):  # interleaved, so that a change of machine load hits every command alike
        for name, cmd in commands.items():
            times[name] += timed(cmd, 1)

    print(f"ours, whole wholebody-eval process (default --jobs auto): {_runs(times['ours'])}")
    print(f"ours, whole process, --jobs 1: {_runs(times['ours -j1'])}")
    print(f"ours, whole process, --jobs 2: {_runs(times['ours -j2'])}")
    print(f"ours, JSON already loaded (dicts -> arrays -> six evaluations): {_runs(loaded)}")
    print(f"ours, arrays already built (six evaluations only): {_runs(arrays)}")
    print(f"load average after timing: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    ours_s = statistics.median(times["ours"])
    if not have_reference:
        print("xtcocotools is not installed: no reference timing")
        print(
            json.dumps(
                {"ours_s": round(ours_s, 4), "xtcocotools_s": None, "speedup": None, "max_abs_diff": None}
            )
        )
        return
    ref_s = statistics.median(times["xtcocotools"])
    print(f"xtcocotools, whole process (COCO + loadRes + six COCOeval): {_runs(times['xtcocotools'])}")
    ref_stats = json.loads(ref_out.read_text())
    diff = 0.0
    for out in (ours_out, work / "stats_j1.json", work / "stats_j2.json"):
        ours_stats = json.loads(out.read_text())
        diff = max(diff, max(abs(ours_stats[p][s] - ref_stats[p][s]) for p in PARTS for s in STATS))
    print(
        f"speedup {ref_s / ours_s:.1f}x (whole process; -j1 {ref_s / statistics.median(times['ours -j1']):.1f}x, "
        f"-j2 {ref_s / statistics.median(times['ours -j2']):.1f}x), {ref_s / statistics.median(loaded):.1f}x "
        f"(JSON already loaded); max |difference| over the 60 stats: {diff:.3g}"
    )
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    print(
        json.dumps(
            {
                "ours_s": round(ours_s, 4),
                "xtcocotools_s": round(ref_s, 4),
                "speedup": round(ref_s / ours_s, 2),
                "max_abs_diff": diff,
            }
        )
    )


if __name__ == "__main__":
    main()
