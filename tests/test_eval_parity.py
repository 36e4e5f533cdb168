"""Parity of wholebody.evaluation with the reference: xtcocotools' COCOeval called as mmpose calls it.

Live comparisons need xtcocotools (skipped without it). The pinned test always runs: it compares
with numbers recorded from xtcocotools on the same deterministic inputs (tests/data/
eval_pinned_xtcocotools.json). Re-record them with ``python tests/test_eval_parity.py --repin``.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import SAMPLE_JSON, need_reference
from wholebody.evaluation import STAT_NAMES, evaluate
from wholebody.evaluation.simulate import simulate, simulate_results
from wholebody.keypoints import COCO_WHOLEBODY, EVAL_PARTS, PARTS

PINNED = Path(__file__).parent / "data" / "eval_pinned_xtcocotools.json"
TOL = 1e-9
#: the synthetic set pinned for runs without xtcocotools (thousands of persons, seconds to evaluate)
PINNED_SYNTHETIC = {"n_images": 1500, "seed": 0}


# ----------------------------------------------------------------------------- reference runner
def reference_stats(gt: dict | str | Path, rows: list, tmp_dir: Path) -> dict[str, list[float]]:
    """The six xtcocotools evaluations exactly as mmpose's CocoWholeBodyMetric runs them (part -> 10 stats)."""
    from wholebody.evaluation.reference import reference_stats as run_reference

    tmp_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(gt, dict):
        gt_path = tmp_dir / "gt.json"
        gt_path.write_text(json.dumps(gt))
    else:
        gt_path = Path(gt)
    res_path = tmp_dir / "results.json"
    res_path.write_text(json.dumps(rows))
    return {p: list(v.values()) for p, v in run_reference(gt_path, res_path).items()}


def as_lists(stats: dict) -> dict[str, list[float]]:
    return {p: [stats[p][n] for n in STAT_NAMES] for p in stats}


def max_diff(a: dict, b: dict) -> float:
    assert set(a) == set(b)
    return max(float(np.max(np.abs(np.array(a[p]) - np.array(b[p])))) for p in a)


def gt_as_predictions(gt: dict) -> list[dict]:
    rows = []
    for a in gt["annotations"]:
        r = {"image_id": a["image_id"], "category_id": 1, "score": 1.0}
        for part in PARTS:
            key = COCO_WHOLEBODY.annotation_keys[part]
            r[key] = list(a[key])
        rows.append(r)
    return rows


def sample_cases() -> dict[str, tuple[dict, list]]:
    gt = json.loads(SAMPLE_JSON.read_text())
    return {
        "real_sample_gt_as_predictions": (gt, gt_as_predictions(gt)),
        "real_sample_noisy_seed3": (gt, simulate_results(gt, seed=3)),
    }


def synthetic_case() -> tuple[dict, list]:
    return simulate(PINNED_SYNTHETIC["n_images"], PINNED_SYNTHETIC["seed"])


# ----------------------------------------------------------------------------- live comparisons
def test_real_sample_gt_as_predictions_scores_one(real_sample_json, tmp_path):
    gt = json.loads(real_sample_json.read_text())
    ours = as_lists(evaluate(gt, gt_as_predictions(gt)))
    for part, vals in ours.items():
        # 1.0 everywhere (precision is tp / (tp + fp + eps)), except -1 where no person of that
        # size has the part labelled
        assert all(abs(v - 1.0) < 1e-12 or v == -1.0 for v in vals), (part, vals)
    assert np.allclose(ours["body"], 1.0, rtol=0, atol=1e-12)
    need_reference()
    assert max_diff(ours, reference_stats(real_sample_json, gt_as_predictions(gt), tmp_path)) == 0.0


def test_real_sample_noisy_predictions_match_reference(real_sample_json, tmp_path):
    need_reference()
    gt = json.loads(real_sample_json.read_text())
    for seed in (3, 4, 5):
        rows = simulate_results(gt, seed=seed)
        ours = as_lists(evaluate(gt, rows))
        assert max_diff(ours, reference_stats(real_sample_json, rows, tmp_path)) <= TOL


@pytest.mark.parametrize("n_images,seed", [(1000, 1)])
def test_synthetic_set_matches_reference(n_images, seed, tmp_path):
    need_reference()
    gt, rows = simulate(n_images, seed)
    assert len(gt["annotations"]) > 1000 and len(rows) > 1000
    ours = as_lists(evaluate(gt, rows))
    ref = reference_stats(gt, rows, tmp_path)
    assert max_diff(ours, ref) <= TOL
    # the set is hard enough that the stats mean something (not all 0 or 1)
    assert all(0.05 < ref[p][0] < 0.95 for p in EVAL_PARTS)


@pytest.mark.slow
@pytest.mark.parametrize("n_images,seed", [(5000, 7), (3000, 8), (3000, 9)])
def test_large_synthetic_sets_match_reference(n_images, seed, tmp_path):
    need_reference()
    gt, rows = simulate(n_images, seed)
    assert max_diff(as_lists(evaluate(gt, rows)), reference_stats(gt, rows, tmp_path)) <= TOL


def _adversarial_case(seed: int) -> tuple[dict, list]:
    """A few images with duplicated persons, crowds with keypoints, zero and boundary areas, integer
    coordinates, coarse (tied) scores and keypoint scores, over-full images."""
    rng = np.random.default_rng(seed)
    spec, K = COCO_WHOLEBODY, COCO_WHOLEBODY.num_keypoints
    anns, rows, aid = [], [], 1
    n_img = int(rng.integers(1, 4))
    for img in range(1, n_img + 1):
        for c in rng.uniform(0, 300, (int(rng.integers(1, 6)), 2)):
            xy = np.round(
                c + rng.uniform(-20, 20, (K, 2)) * rng.choice([0.3, 1, 3]), int(rng.choice([0, 1, 2]))
            )
            v = (rng.random(K) < rng.choice([0, 0.3, 0.9])) * rng.choice([1, 2])
            kp = np.concatenate([np.where(v[:, None] > 0, xy, 0), v[:, None]], axis=1)
            area = float(rng.choice([0.0, 500, 3000, 96.0**2, 20000, rng.uniform(100, 50000)]))
            box = [float(c[0]), float(c[1]), float(rng.uniform(5, 80)), float(rng.uniform(5, 120))]
            a = {
                "id": aid,
                "image_id": img,
                "category_id": 1,
                "area": area,
                "bbox": box,
                "iscrowd": int(rng.random() < 0.15),
            }
            for part in PARTS:
                a[spec.annotation_keys[part]] = kp[spec.slice(part)].ravel().tolist()
            anns.append(a)
            aid += 1
            if rng.random() < 0.3:  # the same person annotated twice
                anns.append(dict(a, id=aid))
                aid += 1
            for _ in range(int(rng.integers(0, 4))):
                pxy = xy + rng.normal(0, rng.choice([0.5, 3, 10, 40]), (K, 2))
                ks = np.round(rng.random(K), 1) * (rng.random(K) < 0.9)
                r = {"image_id": img, "category_id": 1, "score": float(rng.choice([0.5, 0.7, 0.9]))}
                full = np.concatenate([pxy, ks[:, None]], axis=1)
                for part in PARTS:
                    r[spec.annotation_keys[part]] = full[spec.slice(part)].ravel().tolist()
                if rng.random() < 0.3:
                    r["face_score"] = float(rng.choice([0.5, 0.7]))
                rows.append(r)
        for _ in range(int(rng.integers(0, 25)) if rng.random() < 0.2 else 0):  # background clutter
            full = np.concatenate([rng.uniform(0, 300, (K, 2)), np.full((K, 1), 0.5)], axis=1)
            r = {"image_id": img, "category_id": 1, "score": float(rng.choice([0.5, 0.9]))}
            for part in PARTS:
                r[spec.annotation_keys[part]] = full[spec.slice(part)].ravel().tolist()
            rows.append(r)
    gt = {"images": [{"id": i} for i in range(1, n_img + 2)], "annotations": anns, "categories": [{"id": 1}]}
    return gt, rows


def test_adversarial_small_cases_match_reference(tmp_path):
    need_reference()
    for seed in range(40):
        gt, rows = _adversarial_case(seed)
        assert max_diff(as_lists(evaluate(gt, rows)), reference_stats(gt, rows, tmp_path)) <= TOL, seed


def test_inputs_are_not_mutated():
    gt, rows = simulate(60, 2)
    gt0, rows0 = copy.deepcopy(gt), copy.deepcopy(rows)
    evaluate(gt, rows)
    assert gt == gt0 and rows == rows0


# ----------------------------------------------------------------------------- pinned numbers
def _pinned() -> dict:
    return json.loads(PINNED.read_text())


def test_pinned_synthetic_set_matches_recorded_reference():
    pinned = _pinned()
    case = pinned["cases"]["synthetic"]
    assert case["params"] == PINNED_SYNTHETIC
    gt, rows = synthetic_case()
    assert (len(gt["annotations"]), len(rows)) == (case["annotations"], case["results"])
    assert max_diff(as_lists(evaluate(gt, rows)), case["stats"]) <= TOL


def test_pinned_real_sample_matches_recorded_reference(real_sample_json):
    pinned = _pinned()
    for name, (gt, rows) in sample_cases().items():
        assert max_diff(as_lists(evaluate(gt, rows)), pinned["cases"][name]["stats"]) <= TOL, name


def repin(tmp_dir: Path) -> None:
    """Record the reference numbers (needs xtcocotools and the shared sample)."""
    from importlib.metadata import version

    gt, rows = synthetic_case()
    cases = {
        "synthetic": {
            "params": PINNED_SYNTHETIC,
            "annotations": len(gt["annotations"]),
            "results": len(rows),
            "stats": reference_stats(gt, rows, tmp_dir),
        }
    }
    for name, (_, r) in sample_cases().items():
        cases[name] = {"stats": reference_stats(SAMPLE_JSON, r, tmp_dir)}
    doc = {
        "note": "Stats recorded from xtcocotools COCOeval (six evaluations as mmpose runs them); "
        "order: " + ", ".join(STAT_NAMES) + ". Regenerate: python tests/test_eval_parity.py --repin",
        "xtcocotools": version("xtcocotools"),
        "numpy": np.__version__,
        "cases": cases,
    }
    PINNED.parent.mkdir(parents=True, exist_ok=True)
    PINNED.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {PINNED}")


if __name__ == "__main__":
    if "--repin" in sys.argv:
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            repin(Path(d))
