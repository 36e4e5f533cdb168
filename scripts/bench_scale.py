"""Full-scale benchmark: the COCO-WholeBody training file's size, 8 loader workers, 100k detected persons.

It writes (once, into ``--work``) an annotation-only file with the training file's shape: 118,287 images,
about 250k person annotations with every COCO-WholeBody field (133 keypoints, three part boxes, flags,
a segmentation polygon), about 1.4 GB; and a 100k-row results file on 5,000 of its images. Then, each in
its own process (so that peaks are its own):

* reference load: ``json.load`` + pycocotools ``COCO()`` index of the file: time, peak RSS;
* cold load: parse the file and build the column cache (:func:`wholebody.column_cache.cached_columns`):
  time, peak RSS;
* warm load: the training path from the cache (:func:`wholebody.data.coco.load_coco_wholebody`):
  time, RSS after the load and peak;
* workers: 8 DataLoader workers iterating 10k training samples from the mapped cache (image decoding
  stubbed by an image-sized blank array): PSS of each worker after its first batch and at the end;
* gather: two gloo processes gathering the 100k rows to rank 0: rows each rank holds afterwards;
* evaluation: the package's evaluator on the results against the file, and xtcocotools on the same files
  (when installed): time, and the largest difference over the 6 x 10 stats.

Everything runs within 2 CPU cores (``torch`` threads 1, workers time-share) and the peaks are printed.
The last line is one JSON object of the figures. ``--scale 0.05`` runs the same at 5 % for a quick look.

    python scripts/bench_scale.py [--scale 1.0] [--work .bench_scale] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

FULL_IMAGES = 118_287
PERSONS_PER_IMAGE = 2.12  # ~250k persons on 118k images
RESULT_ROWS = 100_000
RESULT_IMAGES = 5_000


# ----------------------------------------------------------------------------- measurements
def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB


def rss_gb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def pss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# ----------------------------------------------------------------------------- the files
def _write_annotations(path: Path, n_images: int, seed: int = 0) -> dict:
    """Stream an annotation-only COCO-WholeBody file; returns its counts."""
    import orjson

    from wholebody.keypoints import BOX_PARTS, PARTS
    from wholebody.keypoints import COCO_WHOLEBODY as S

    rng = np.random.default_rng(seed)
    widths = rng.choice([640, 480, 500, 427, 612], n_images)
    heights = rng.choice([480, 640, 375, 333, 612], n_images)
    persons = rng.poisson(PERSONS_PER_IMAGE / 0.55, n_images) * (rng.random(n_images) < 0.55)
    tmp = path.with_suffix(".tmp")
    ann_id = 0
    with open(tmp, "wb") as f:
        f.write(b'{"info":{"description":"bench_scale: annotation-only, COCO-WholeBody fields"},"images":[')
        for i in range(n_images):
            f.write((b"," if i else b"") + orjson.dumps({
                "license": 1, "file_name": f"{i + 1:012d}.jpg", "coco_url": "", "height": int(heights[i]),
                "width": int(widths[i]), "date_captured": "2013-11-14 16:28:13", "flickr_url": "", "id": i + 1}))
        f.write(b'],"annotations":[')
        first = True
        for i in np.flatnonzero(persons):
            w, h = float(widths[i]), float(heights[i])
            chunk = []
            for _ in range(int(persons[i])):
                ann_id += 1
                bw, bh = rng.uniform(20, w / 2), rng.uniform(40, h / 1.2)
                x0, y0 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
                a = {"segmentation": [np.round(rng.uniform([x0, y0] * 120, [x0 + bw, y0 + bh] * 120), 2).tolist()],
                     "num_keypoints": 0, "area": float(np.round(bw * bh * 0.6, 4)), "iscrowd": int(rng.random() < 0.01),
                     "image_id": int(i + 1), "bbox": np.round([x0, y0, bw, bh], 2).tolist(), "category_id": 1,
                     "id": ann_id}
                for part in PARTS:
                    k = S.num_part(part)
                    labelled = rng.random() < (0.9 if part == "body" else 0.55)
                    kp = np.zeros((k, 3))
                    if labelled:
                        m = rng.random(k) < 0.8
                        kp[m, 0] = rng.uniform(x0, x0 + bw, m.sum())
                        kp[m, 1] = rng.uniform(y0, y0 + bh, m.sum())
                        kp[m, 2] = 2 if part in ("body", "face") else rng.uniform(0.2, 1, m.sum())
                        if part == "body":
                            kp[:, :2] = np.round(kp[:, :2])
                    a[S.annotation_keys[part]] = kp.reshape(-1).tolist()
                    if part in S.valid_keys:
                        a[S.valid_keys[part]] = bool(labelled)
                    if part in BOX_PARTS:
                        b = np.zeros(4)
                        if labelled:
                            lab = kp[kp[:, 2] > 0, :2]
                            if len(lab):
                                b = np.concatenate([lab.min(0), lab.max(0) - lab.min(0)])
                        a[S.box_keys[part]] = b.tolist()
                    if part == "body":
                        a["num_keypoints"] = int((kp[:, 2] > 0).sum())
                chunk.append(orjson.dumps(a))
            f.write((b"" if first else b",") + b",".join(chunk))
            first = False
        f.write(b'],"categories":[{"supercategory":"person","id":1,"name":"person","keypoints":[],"skeleton":[]}]}')
    tmp.replace(path)
    return {"images": n_images, "annotations": ann_id, "bytes": path.stat().st_size}


def _write_results(ann_path: Path, out: Path, rows: int, images: int, seed: int = 1) -> int:
    """100k results rows on the first ``images`` images with persons: a perturbed copy of each labelled
    person, the rest false positives near them (detector-like, up to 20 per image)."""
    import orjson

    from wholebody.cocowb import read_wholebody
    from wholebody.keypoints import COCO_WHOLEBODY as S
    from wholebody.keypoints import PARTS

    c = read_wholebody(ann_path)
    rng = np.random.default_rng(seed)
    with_persons = np.unique(c.image_id[~c.iscrowd])[:images]
    per_image = -(-rows // len(with_persons))
    order = np.argsort(c.image_id, kind="stable")
    starts = np.searchsorted(c.image_id[order], with_persons)
    ends = np.searchsorted(c.image_id[order], with_persons, side="right")
    out_rows = []
    for iid, a, b in zip(with_persons, starts, ends):
        idx = order[a:b]
        for r in range(per_image):
            j = idx[r % len(idx)]
            kp = c.keypoints[j].copy()
            noise = 2.0 if r < len(idx) else 25.0
            kp[:, :2] += rng.normal(0, noise, (len(kp), 2))
            kp[:, 2] = rng.uniform(0.05, 1.0, len(kp))
            kp = np.round(kp, 3)
            row = {"image_id": int(iid), "category_id": 1, "score": float(np.round(rng.uniform(0.1, 1), 4))}
            for part in PARTS:
                row[S.annotation_keys[part]] = kp[S.slice(part)].reshape(-1).tolist()
            out_rows.append(row)
            if len(out_rows) == rows:
                break
        if len(out_rows) == rows:
            break
    out.write_bytes(orjson.dumps(out_rows))
    return len(out_rows)


# ----------------------------------------------------------------------------- child tasks
def task_reference_load(a: dict) -> dict:
    import contextlib
    import io

    from pycocotools.coco import COCO

    t = time.perf_counter()
    with open(a["ann"]) as f:
        data = json.load(f)
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return {"s": time.perf_counter() - t, "peak_rss_gb": peak_rss_gb(), "annotations": len(coco.anns)}


def task_cold(a: dict) -> dict:
    from wholebody.column_cache import cached_columns

    t = time.perf_counter()
    c = cached_columns(a["ann"], a["cache"])
    return {"s": time.perf_counter() - t, "peak_rss_gb": peak_rss_gb(), "annotations": c.num_annotations,
            "cache_bytes": Path(c.mapped_from).stat().st_size}


def task_warm(a: dict) -> dict:
    t = time.perf_counter()
    from wholebody.data.coco import load_coco_wholebody

    imported = time.perf_counter() - t
    t = time.perf_counter()
    ann = load_coco_wholebody(a["ann"], cache_dir=a["cache"])
    return {"s": time.perf_counter() - t, "import_s": imported, "rss_gb": rss_gb(), "peak_rss_gb": peak_rss_gb(),
            "persons": len(ann.persons)}


def task_workers(a: dict) -> dict:
    import torch
    from torch.utils.data import DataLoader, RandomSampler

    from wholebody.data.coco import load_coco_wholebody
    from wholebody.data.dataset import TopDownDataset, seed_worker

    torch.set_num_threads(1)
    ann = load_coco_wholebody(a["ann"], cache_dir=a["cache"])
    ds = TopDownDataset(ann.persons, (288, 384), train=True, photometric=None)
    # image-sized blanks instead of JPEG decodes, made before the workers fork (shared, never written)
    blank = {(int(w), int(h)): np.zeros((int(h), int(w), 3), np.uint8) for w, h in np.unique(ann.persons.image_size, axis=0)}

    def stub(self, j):
        return blank[tuple(int(v) for v in self._table.image_size[j])]

    TopDownDataset._image = stub
    sampler = RandomSampler(ds, num_samples=a["samples"], generator=torch.Generator().manual_seed(0))
    loader = DataLoader(ds, batch_size=32, sampler=sampler, num_workers=a["workers"], worker_init_fn=seed_worker,
                        persistent_workers=False)
    it = iter(loader)
    t = time.perf_counter()
    n = len(next(it)["image"])
    pids = [w.pid for w in it._workers]
    start = [pss_mb(p) for p in pids]
    start_rss = [rss_gb(p) * 1024 for p in pids]
    end = start
    for i, batch in enumerate(it):
        n += len(batch["image"])
        if i == len(loader) - 3:  # the last batches still to come: every worker alive
            end = [pss_mb(p) for p in pids]
    return {"samples": n, "s": time.perf_counter() - t, "pss_start_mb": start, "pss_end_mb": end,
            "rss_start_mb": start_rss, "growth_mb_max": max(e - s for s, e in zip(start, end)),
            "main_rss_gb": rss_gb(), "main_peak_rss_gb": peak_rss_gb()}


def _gather_worker(rank: int, port: int, results: str, out: str) -> None:
    import torch.distributed as dist

    from wholebody.evaluation.distributed import gather_results

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        import orjson

        rows = orjson.loads(Path(results).read_bytes())[rank::2]
        for i, r in enumerate(rows):
            r["bbox_id"] = 2 * i + rank
        mine = len(rows)
        t = time.perf_counter()
        got = gather_results(rows)
        Path(out, f"gather{rank}.json").write_text(json.dumps({
            "own_rows": mine, "rows_after_gather": len(got), "s": time.perf_counter() - t, "peak_rss_gb": peak_rss_gb()}))
    finally:
        dist.destroy_process_group()


def task_gather(a: dict) -> dict:
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_gather_worker, args=(port, a["results"], a["work"]), nprocs=2, join=True)
    return {f"rank{r}": json.loads(Path(a["work"], f"gather{r}.json").read_text()) for r in (0, 1)}


def task_ours(a: dict) -> dict:
    from wholebody.column_cache import cached_columns
    from wholebody.evaluation.groundtruth import load_ground_truth
    from wholebody.evaluation.wholebody import evaluate

    t = time.perf_counter()
    gt = load_ground_truth(cached_columns(a["ann"], a["cache"]))
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    stats = evaluate(gt, a["results"])
    Path(a["out"]).write_text(json.dumps(stats))
    return {"gt_load_s": load_s, "s": time.perf_counter() - t, "peak_rss_gb": peak_rss_gb()}


def task_xtcocotools(a: dict) -> dict:
    from wholebody.evaluation.reference import reference_stats, reference_status

    state, why = reference_status()
    if state != "ok":
        return {"skipped": why}
    t = time.perf_counter()
    stats = reference_stats(a["ann"], a["results"])
    Path(a["out"]).write_text(json.dumps(stats))
    return {"s": time.perf_counter() - t, "peak_rss_gb": peak_rss_gb()}


def task_generate(a: dict) -> dict:
    return _write_annotations(Path(a["ann"]), a["images"])


def task_results(a: dict) -> dict:
    return {"rows": _write_results(Path(a["ann"]), Path(a["out"]), a["rows"], a["images"])}


TASKS = {n[5:]: f for n, f in globals().items() if n.startswith("task_")}


def child(task: str, args: dict) -> dict:
    """Run a task in a fresh process (its own peak RSS), one intra-op thread."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    p = subprocess.run([sys.executable, __file__, "--child", task, json.dumps(args)], capture_output=True, text=True,
                       env=env)
    if p.returncode != 0:
        raise SystemExit(f"bench_scale: task {task} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(TASKS[sys.argv[2]](json.loads(sys.argv[3]))))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the full size (images, rows, samples)")
    ap.add_argument("--work", type=Path, default=Path(".bench_scale"), help="folder of the generated files")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--keep", action="store_true", help="keep the generated files for the next run")
    a = ap.parse_args()
    work = a.work / f"scale{a.scale:g}"
    work.mkdir(parents=True, exist_ok=True)
    ann, res = work / "coco_wholebody_train_bench.json", work / "results.json"
    n_images = max(100, round(FULL_IMAGES * a.scale))
    rows = max(200, round(RESULT_ROWS * a.scale))
    samples = max(500, round(10_000 * a.scale))
    print(f"machine: {os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
          f"python {sys.version.split()[0]}, numpy {np.__version__}")
    if not ann.exists():
        t = time.perf_counter()
        counts = child("generate", {"ann": str(ann), "images": n_images})
        print(f"wrote {ann}: {counts['images']} images, {counts['annotations']} persons, "
              f"{counts['bytes'] / 2**30:.2f} GiB in {time.perf_counter() - t:.0f} s")
    if not res.exists():
        n = child("results", {"ann": str(ann), "out": str(res), "rows": rows, "images": max(20, round(RESULT_IMAGES * a.scale))})
        print(f"wrote {res}: {n['rows']} rows")
    size_gb = ann.stat().st_size / 2**30
    cache = work / "cache"
    shutil.rmtree(cache, ignore_errors=True)

    ref = child("reference_load", {"ann": str(ann)})
    print(f"reference json.load + COCO(): {ref['s']:.1f} s, peak RSS {ref['peak_rss_gb']:.2f} GiB")
    cold = child("cold", {"ann": str(ann), "cache": str(cache)})
    print(f"cold (parse + build the cache): {cold['s']:.1f} s, peak RSS {cold['peak_rss_gb']:.2f} GiB, "
          f"cache {cold['cache_bytes'] / 2**30:.2f} GiB")
    warm = child("warm", {"ann": str(ann), "cache": str(cache)})
    print(f"warm (map the cache, training policy): {warm['s']:.2f} s, RSS {warm['rss_gb']:.3f} GiB "
          f"(peak {warm['peak_rss_gb']:.3f}), {warm['persons']} persons")
    wk = child("workers", {"ann": str(ann), "cache": str(cache), "samples": samples, "workers": a.workers})
    print(f"{a.workers} workers, {wk['samples']} samples in {wk['s']:.0f} s: PSS per worker "
          f"{min(wk['pss_start_mb']):.0f}-{max(wk['pss_start_mb']):.0f} MB at start, "
          f"{min(wk['pss_end_mb']):.0f}-{max(wk['pss_end_mb']):.0f} MB at the end; largest growth {wk['growth_mb_max']:.1f} MB")
    ga = child("gather", {"results": str(res), "work": str(work)})
    print(f"gather of {rows} rows over 2 gloo ranks: rank 0 holds {ga['rank0']['rows_after_gather']}, "
          f"rank 1 holds {ga['rank1']['rows_after_gather']} ({ga['rank0']['s']:.1f} s)")
    ours = child("ours", {"ann": str(ann), "cache": str(cache), "results": str(res), "out": str(work / "ours.json")})
    print(f"evaluator: {ours['s']:.1f} s on {rows} rows (ground truth from the cache in {ours['gt_load_s']:.2f} s), "
          f"peak RSS {ours['peak_rss_gb']:.2f} GiB")
    ref_eval = child("xtcocotools", {"ann": str(ann), "results": str(res), "out": str(work / "xtcocotools.json")})
    figures = {
        "scale": a.scale, "file_gb": round(size_gb, 3), "persons": warm["persons"], "rows": rows,
        "reference_load_s": round(ref["s"], 2), "reference_peak_rss_gb": round(ref["peak_rss_gb"], 2),
        "cold_s": round(cold["s"], 2), "cold_peak_rss_gb": round(cold["peak_rss_gb"], 2),
        "cold_vs_reference_time": round(cold["s"] / ref["s"], 3),
        "cold_vs_reference_peak": round(cold["peak_rss_gb"] / ref["peak_rss_gb"], 3),
        "warm_s": round(warm["s"], 3), "warm_rss_gb": round(warm["rss_gb"], 3),
        "workers": a.workers, "worker_samples": wk["samples"],
        "worker_pss_start_mb": round(max(wk["pss_start_mb"]), 1), "worker_pss_end_mb": round(max(wk["pss_end_mb"]), 1),
        "worker_pss_growth_mb": round(wk["growth_mb_max"], 1),
        "gather_rank0_rows": ga["rank0"]["rows_after_gather"], "gather_rank1_rows": ga["rank1"]["rows_after_gather"],
        "ours_eval_s": round(ours["s"], 2),
    }
    if "skipped" in ref_eval:
        print(f"xtcocotools: {ref_eval['skipped']}")
    else:
        a_stats = json.loads((work / "ours.json").read_text())
        b_stats = json.loads((work / "xtcocotools.json").read_text())
        diff = max(abs(a_stats[p][k] - b_stats[p][k]) for p in b_stats for k in b_stats[p])
        print(f"xtcocotools: {ref_eval['s']:.1f} s, peak RSS {ref_eval['peak_rss_gb']:.2f} GiB; "
              f"speed-up {ref_eval['s'] / ours['s']:.1f}x, largest stat difference {diff:g}")
        figures |= {"xtcocotools_eval_s": round(ref_eval["s"], 2), "eval_speedup": round(ref_eval["s"] / ours["s"], 2),
                    "eval_max_abs_diff": diff}
    if not a.keep:
        shutil.rmtree(work)
        if not any(a.work.iterdir()):  # nothing else kept there
            a.work.rmdir()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
