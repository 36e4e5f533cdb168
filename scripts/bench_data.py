"""Training-sample throughput of the data pipeline per CPU core, against JPEG decoding alone.

On the real COCO-WholeBody sample (../shared/data/cocowb_sample, its 12 persons repeated) -- or, when
that folder is absent, on synthetic JPEGs (said so in the output) -- one process on one core measures:

* decode: ``cv2.imread`` of each sample's image (the reference);
* pipeline: the training sample at 384x288 with every augmentation (half-body, scale, rotation, flip,
  photometric) and its targets as keypoints/boxes in crop px (the model encodes heatmaps on its device);
* + all maps: the alternative design, the same plus every dense target a worker would have to ship if
  the loss did not encode them on the device (BodyNet's 38 heatmaps at 1/4 and the 110 face/hand RoI
  heatmaps at 64x64).

Variants run interleaved for several rounds (the median is reported) so that load from other
processes hits them alike. Prints a table, a per-stage profile, and ends with one JSON line.

    python scripts/bench_data.py [--samples 300] [--rounds 3] [--input-size 288 384]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from wholebody.codecs import encode_body_targets, encode_roi_targets, square_boxes
from wholebody.data.coco import PersonRecord, load_coco_wholebody
from wholebody.data.dataset import TopDownDataset, warp_to_rgb
from wholebody.data.synthetic import generate_synthetic
from wholebody.data.transforms import AugmentConfig, default_photometric, sample_crop
from wholebody.geometry import affine_matrix, apply_affine, box_to_center_size, transform_boxes
from wholebody.images import read_image
from wholebody.keypoints import BODY_FOOT, BOX_PARTS
from wholebody.keypoints import COCO_WHOLEBODY as S

SHARED = Path(os.environ.get("WHOLEBODY_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
SAMPLE = SHARED / "data" / "cocowb_sample" / "test_coco_wholebody.json"


def records(tmp: Path) -> tuple[list[PersonRecord], str]:
    if SAMPLE.is_file():
        return load_coco_wholebody(SAMPLE).records, f"real COCO-WholeBody sample ({SAMPLE.parent})"
    print(f"note: {SAMPLE} not found; benchmarking on synthetic 640x480 JPEGs instead", file=sys.stderr)
    out = generate_synthetic(tmp / "synth", images=8, val_images=0, seed=0,
                             config={"image_size": (640, 480), "persons": (1, 3)})
    return load_coco_wholebody(out["train"], tmp / "synth" / "train2017").records, "synthetic 640x480 JPEGs"


class WithDenseMaps(TopDownDataset):
    """The alternative design: also ship BodyNet's 38 heatmaps (stride 4) and the face/hand RoI heatmaps
    (68 + 21 + 21 at 64x64) per sample, at the paper's sigma 3."""

    def build_sample(self, index, image, params=None):
        s = super().build_sample(index, image, params)
        w, h = self.input_size
        nb = BODY_FOOT.num_keypoints
        body, body_w = encode_body_targets(s["keypoints"][None, :nb], s["part_boxes"][None], s["part_valid"][None],
                                           (h // 4, w // 4), 4, 3.0)
        s["body_targets"], s["body_target_weights"] = body[0], body_w[0]
        rois = square_boxes(s["part_boxes"], 1.25)
        maps = []
        for j, part in enumerate(BOX_PARTS):
            hm, _ = encode_roi_targets(s["keypoints"][None, S.slice(part)], rois[None, j], 64, 3.0)
            maps.append(hm[0] * s["part_valid"][j])
        s["part_targets"] = torch.cat(maps)
        return s


def nbytes(sample) -> int:
    if isinstance(sample, torch.Tensor):
        return sample.element_size() * sample.nelement()
    if isinstance(sample, dict):
        return sum(nbytes(v) for v in sample.values())
    return 0


def elapsed(fn, start: int, stop: int) -> float:
    t = time.perf_counter()
    for i in range(start, stop):
        fn(i)
    return time.perf_counter() - t


def stage_profile(recs: list[PersonRecord], size: tuple[int, int], n: int) -> dict[str, float]:
    """Milliseconds per sample of each step of the training sample, timed separately."""
    rng = np.random.default_rng(0)
    aug, photo = AugmentConfig(), default_photometric()
    photo.set_random_seed(0)
    ar = size[0] / size[1]
    t = dict.fromkeys(("decode", "crop params", "warp + RGB", "photometric", "keypoints + boxes", "to tensors"), 0.0)
    for i in range(n):
        r = recs[i % len(recs)]
        t0 = time.perf_counter()
        img = read_image(r.image_path)
        t1 = time.perf_counter()
        c, s = box_to_center_size(r.bbox, ar, 1.25)
        p = sample_crop(rng, c, s, r.keypoints, ar, aug)
        m = affine_matrix(p.center, p.size, p.rotation, size, p.flip)
        t2 = time.perf_counter()
        crop = warp_to_rgb(img, m, size)
        t3 = time.perf_counter()
        crop = photo(image=crop)["image"]
        t4 = time.perf_counter()
        kp = apply_affine(m, r.keypoints[:, :2])
        bx = transform_boxes(m, r.part_boxes)
        if p.flip:
            kp = kp[S.flip_index]
        t5 = time.perf_counter()
        torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1)))
        torch.from_numpy(kp.astype(np.float32)), torch.from_numpy(bx.astype(np.float32))
        t6 = time.perf_counter()
        for k, a, b in zip(t, (t0, t1, t2, t3, t4, t5), (t1, t2, t3, t4, t5, t6)):
            t[k] += b - a
    return {k: 1e3 * v / n for k, v in t.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=300, help="samples per variant and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--input-size", type=int, nargs=2, default=(288, 384), metavar=("W", "H"))
    args = ap.parse_args()
    cv2.setNumThreads(0)  # as in a DataLoader worker: one core, no OpenCV thread pool
    torch.set_num_threads(1)
    size = tuple(args.input_size)
    with tempfile.TemporaryDirectory() as tmp:
        recs, source = records(Path(tmp))
        n = args.samples
        kw = dict(train=True, augment=AugmentConfig(), photometric=default_photometric())
        variants = {
            "pipeline": TopDownDataset(recs, size, **kw),
            "+ all maps": WithDenseMaps(recs, size, **kw),
        }
        paths = [r.image_path for r in recs]
        fns = {"decode": lambda i: cv2.imread(paths[i % len(paths)], cv2.IMREAD_COLOR)}
        fns.update({k: (lambda i, ds=ds: ds[i % len(ds)]) for k, ds in variants.items()})
        for f in fns.values():  # warm-up
            f(0)
        # fine-grained interleaving (chunks of 10 samples, variants in turn) so that load from other
        # processes hits every variant alike; one rate per variant and round, the median reported
        runs: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(args.rounds):
            spent = dict.fromkeys(fns, 0.0)
            for start in range(0, n, 10):
                for k, f in fns.items():
                    spent[k] += elapsed(f, start, min(n, start + 10))
            for k in fns:
                runs[k].append(n / spent[k])
        med = {k: statistics.median(v) for k, v in runs.items()}
        ratios = [p / d for p, d in zip(runs["pipeline"], runs["decode"])]
        sizes = {k: nbytes(ds[0]) for k, ds in variants.items()}
        profile = stage_profile(recs, size, n)

    dec = med["decode"]
    print(f"data pipeline benchmark: {source}, {len(recs)} persons repeated, input {size[0]}x{size[1]}, "
          f"1 process on 1 core, {args.rounds} rounds x {n} samples (median)")
    print(f"{'variant':<14}{'samples/s':>12}{'x decode':>10}{'bytes/sample':>14}")
    print(f"{'decode':<14}{dec:>12.1f}{1.0:>10.2f}{'':>14}")
    for k in variants:
        print(f"{k:<14}{med[k]:>12.1f}{med[k] / dec:>10.2f}{sizes[k]:>14,}")
    print("pipeline / decode per round: " + ", ".join(f"{r:.3f}" for r in ratios))
    print("per-stage profile (ms/sample): " + ", ".join(f"{k} {v:.2f}" for k, v in profile.items()))
    print(json.dumps({
        "samples_per_s_per_core": round(med["pipeline"], 1),
        "decode_per_s_per_core": round(dec, 1),
        "ratio": round(statistics.median(ratios), 3),
        "bytes_per_sample": sizes["pipeline"],
        "all_maps": {"samples_per_s_per_core": round(med["+ all maps"], 1),
                     "ratio": round(med["+ all maps"] / dec, 3), "bytes_per_sample": sizes["+ all maps"]},
        "source": source.split(" (")[0],
    }))


if __name__ == "__main__":
    main()
