"""Deterministic synthetic COCO-WholeBody annotations and results, for tests and benchmarks.

:func:`simulate` draws a ground-truth file and a results list that exercise every rule of the
evaluation: crowd annotations, persons with no labelled keypoint, invalid (all-zero) parts,
sizes from tiny to extra large, images with more than 20 persons, missed persons, duplicate
detections, false positives on background, on crowds and on unlabelled persons, parts whose
keypoint scores are all zero, per-part scores present on some rows only, left/right inversions
and swaps with a neighbour, rows of an unknown category, and scores rounded to two decimals (ties).

Stability: the same seed gives the same files on every machine and numpy version. Only
``Generator.random`` (uniform doubles, whose stream numpy keeps fixed) is drawn, and values are
made from it with exactly-rounded arithmetic (+, -, *, /, sqrt, floor, round to 2 decimals);
normal noise is the Irwin-Hall sum of four uniforms. Nothing depends on libm's exp/log/cos.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..keypoints import BOX_PARTS, COCO_WHOLEBODY, PARTS, KeypointSpec

_SQRT3 = 1.7320508075688772  # sqrt(3): Irwin-Hall(4) - 2 has variance 1/3
_H = 0.7071067811865476  # sqrt(1/2)
_OCTAGON = np.array([[1, 0], [_H, _H], [0, 1], [-_H, _H], [-1, 0], [-_H, -_H], [0, -1], [_H, -_H]])


class _Draw:
    """Uniform draws and what is derived from them (only exactly-rounded arithmetic)."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def u(self, *shape: int) -> np.ndarray | float:
        return self.rng.random(shape) if shape else float(self.rng.random())

    def normal(self, *shape: int) -> np.ndarray:
        u = self.rng.random((*shape, 4))
        return (u[..., 0] + u[..., 1] + u[..., 2] + u[..., 3] - 2.0) * _SQRT3  # fixed summation order

    def below(self, n: int) -> int:
        return int(np.floor(self.u() * n))


def _r2(x: Any) -> Any:
    return np.round(x, 2)


def _part_box(xy: np.ndarray) -> list[float]:
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    pad = 0.1 * (hi - lo) + 2.0
    lo, hi = lo - pad, hi + pad
    return [float(v) for v in _r2([lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]])]


def _person(draw: _Draw, spec: KeypointSpec, width: float, height: float, kind: str) -> dict[str, Any]:
    """One annotation (without ids). kind: 'normal' | 'crowd' | 'empty' | 'tiny'."""
    s = 10.0 + 40.0 * draw.u() if kind == "tiny" else 16.0 + 420.0 * draw.u() ** 2
    w = s * (0.35 + 0.45 * draw.u())
    h = s * (0.8 + 0.7 * draw.u())
    x = (width - 0.5 * w) * draw.u()
    y = (height - 0.5 * h) * draw.u()
    K = spec.num_keypoints
    kp = np.zeros((K, 3))
    valid = {p: False for p in PARTS}
    if kind in ("normal", "tiny"):
        pos = np.stack([x + w * draw.u(K), y + h * draw.u(K)], axis=1)
        for part, p_valid, p_lab in (
            ("body", 0.97, 0.8),
            ("foot", 0.6, 0.85),
            ("face", 0.45, 0.95),
            ("lefthand", 0.35, 0.9),
            ("righthand", 0.35, 0.9),
        ):
            sl = spec.slice(part)
            n = sl.stop - sl.start
            if draw.u() >= p_valid:
                continue
            lab = draw.u(n) < p_lab
            if part in ("body", "face"):
                vis = np.where(draw.u(n) < 0.5, 1.0, 2.0)
            else:  # foot and hand files carry confidences in (0, 1]
                vis = _r2(0.3 + 0.7 * draw.u(n))
            kp[sl, :2] = np.where(lab[:, None], _r2(pos[sl]), 0.0)
            kp[sl, 2] = np.where(lab, vis, 0.0)
            valid[part] = bool(lab.any())
    # an octagon inside the box, as the polygons of real annotation files (unused by the evaluation)
    r = 0.35 + 0.15 * draw.u(8)
    outline = np.stack([x + w * (0.5 + r * _OCTAGON[:, 0]), y + h * (0.5 + r * _OCTAGON[:, 1])], axis=1)
    ann: dict[str, Any] = {
        "segmentation": [[float(v) for v in _r2(outline).ravel()]],
        "bbox": [float(v) for v in _r2([x, y, w, h])],
        "area": float(_r2(w * h * (0.45 + 0.4 * draw.u()))),
        "iscrowd": 1 if kind == "crowd" else 0,
        "num_keypoints": int((kp[spec.slice("body"), 2] > 0).sum()),
    }
    for part in PARTS:
        ann[spec.annotation_keys[part]] = kp[spec.slice(part)].ravel().tolist()
    for part in BOX_PARTS:
        xy = kp[spec.slice(part)]
        lab = xy[:, 2] > 0
        ann[spec.box_keys[part]] = _part_box(xy[lab, :2]) if valid[part] else [0.0, 0.0, 0.0, 0.0]
        ann[spec.valid_keys[part]] = valid[part]
    ann[spec.valid_keys["foot"]] = valid["foot"]
    return ann


def simulate_ground_truth(
    n_images: int, seed: int = 0, spec: KeypointSpec = COCO_WHOLEBODY, crowded_every: int = 131
) -> dict[str, Any]:
    """A COCO-WholeBody annotation dict of ``n_images`` images (about 1.5 persons per image, the
    proportions of COCO val: 5,000 images hold about 7,500 persons).

    Every ``crowded_every``-th image holds 24 persons (more than the 20 detections evaluated).
    """
    draw = _Draw(seed)
    images, anns = [], []
    ann_id = 10_000
    for i in range(n_images):
        image_id = 1_000 + 7 * i
        width, height = 640.0, 480.0
        images.append({"id": image_id, "file_name": f"{image_id:012d}.jpg", "width": 640, "height": 480})
        if crowded_every and i % crowded_every == crowded_every - 1:
            n = 24
        else:
            u = draw.u()
            n = 0 if u < 0.25 else 1 if u < 0.62 else 2 if u < 0.86 else 3 if u < 0.96 else 5
        for _ in range(n):
            u = draw.u()
            kind = "crowd" if u < 0.04 else "empty" if u < 0.12 else "tiny" if u < 0.2 else "normal"
            a = _person(draw, spec, width, height, kind)
            a.update(id=ann_id, image_id=image_id, category_id=1)
            ann_id += 1 + draw.below(3)  # ids are unique, not contiguous
            anns.append(a)
    categories = [{"id": 1, "name": "person", "supercategory": "person"}]
    return {"images": images, "annotations": anns, "categories": categories}


def _row(draw: _Draw, spec: KeypointSpec, image_id: int, kp: np.ndarray, score: float) -> dict[str, Any]:
    K = spec.num_keypoints
    kscore = _r2(draw.u(K))
    kscore[draw.u(K) < 0.05] = 0.0
    for part in PARTS:  # sometimes a whole part is predicted with zero confidence
        if part != "body" and draw.u() < 0.1:
            kscore[spec.slice(part)] = 0.0
    row: dict[str, Any] = {"image_id": image_id, "category_id": 1 if draw.u() > 0.005 else 2}
    full = np.concatenate([_r2(kp[:, :2]), kscore[:, None]], axis=1)
    for part in PARTS:
        row[spec.annotation_keys[part]] = full[spec.slice(part)].ravel().tolist()
    row["score"] = float(_r2(score))
    for part in ("foot", "face", "lefthand", "righthand", "wholebody"):
        if draw.u() < 0.5:
            row[spec.score_keys[part]] = float(_r2(draw.u()))
    return row


def _add_boxes(
    draw: _Draw, spec: KeypointSpec, row: dict[str, Any], gt: dict[str, Any] | None, box: list
) -> None:
    for part in BOX_PARTS:
        if draw.u() < 0.15:
            continue
        key = spec.box_keys[part]
        if gt is not None and gt[spec.valid_keys[part]] and draw.u() < 0.85:
            x, y, w, h = gt[key]
            j = 0.05 * draw.normal(4)
            b = [x + j[0] * w, y + j[1] * h, w * (1 + j[2]), h * (1 + j[3])]
            confidence = 0.4 + 0.6 * draw.u()
        else:
            x, y, w, h = box
            s = max(8.0, 0.2 * w) * (0.5 + draw.u())
            b = [x + w * draw.u(), y + h * draw.u(), s, s]
            confidence = 0.6 * draw.u()
        row[key] = [float(v) for v in _r2(b)]
        if draw.u() < 0.6:  # else the part score (or "score") ranks the box
            row[f"{key}_score"] = float(_r2(confidence))


def simulate_results(
    gt: dict[str, Any], seed: int = 1, spec: KeypointSpec = COCO_WHOLEBODY
) -> list[dict[str, Any]]:
    """Noisy result rows for ``gt`` (about 2 rows per image: 5,000 images give about 10,000 rows),
    with every kind of error.

    Rows carry a unique ``bbox_id`` (the de-duplication key of distributed gathering).
    """
    draw = _Draw(seed)
    K = spec.num_keypoints
    flip = spec.flip_index
    sigmas = spec.sigmas_array
    by_image: dict[int, list[dict[str, Any]]] = {}
    for a in gt["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    rows: list[dict[str, Any]] = []

    def gt_xy(a: dict[str, Any]) -> np.ndarray:
        return np.concatenate([np.asarray(a[spec.annotation_keys[p]], float).reshape(-1, 3) for p in PARTS])

    def random_xy(box: list) -> np.ndarray:
        x, y, w, h = box
        return np.stack([x + w * draw.u(K), y + h * draw.u(K)], axis=1)

    for img in gt["images"]:
        image_id = img["id"]
        persons = by_image.get(image_id, [])
        for a in persons:
            box = a["bbox"]
            if a["iscrowd"]:
                if draw.u() < 0.5:  # a detection on a crowd region
                    x, y, w, h = box
                    sub = [x + 0.3 * w * draw.u(), y + 0.3 * h * draw.u(), 0.5 * w, 0.5 * h]
                    rows.append(_row(draw, spec, image_id, random_xy(sub), draw.u()))
                continue
            if draw.u() < 0.12:  # missed person
                continue
            g = gt_xy(a)
            lab = g[:, 2] > 0
            xy = np.where(lab[:, None], g[:, :2], random_xy(box))
            f = 0.1 + 1.6 * draw.u() ** 2  # localisation quality: OKS ~ exp(-f^2) on average
            scale = np.sqrt(max(a["area"], 1.0)) * 2.0 * sigmas * f  # (K,) px
            xy = xy + (scale * (1.0 + 3.0 * (draw.u(K) < 0.08)))[:, None] * draw.normal(K, 2)
            if draw.u() < 0.1:  # left/right inversion of a random subset
                inv = draw.u(K) < 0.4
                xy = np.where(inv[:, None], xy[flip], xy)
            others = [o for o in persons if o is not a and not o["iscrowd"]]
            if others and draw.u() < 0.1:  # some keypoints land on a neighbour
                o = gt_xy(others[draw.below(len(others))])
                sw = (draw.u(K) < 0.3) & (o[:, 2] > 0)
                xy = np.where(sw[:, None], o[:, :2], xy)
            quality = max(1.0 - f / 1.7, 0.0)
            row = _row(draw, spec, image_id, xy, 0.3 * draw.u() + 0.7 * quality * draw.u())
            _add_boxes(draw, spec, row, a, box)
            rows.append(row)
            if draw.u() < 0.06:  # a duplicate, slightly off
                dup = xy + 0.03 * np.sqrt(max(a["area"], 1.0)) * draw.normal(K, 2)
                rows.append(_row(draw, spec, image_id, dup, draw.u() * 0.8))
        for _ in range(draw.below(3) if draw.u() < 0.6 else 0):  # background false positives
            s = 20 + 200 * draw.u()
            box = [600 * draw.u(), 440 * draw.u(), s * 0.6, s]
            row = _row(draw, spec, image_id, random_xy(box), 0.6 * draw.u())
            _add_boxes(draw, spec, row, None, box)
            rows.append(row)
    # interleave images (row order breaks score ties, so it must be deterministic too)
    perm = np.argsort(draw.u(len(rows)), kind="stable")
    out = [rows[i] for i in perm]
    for i, r in enumerate(out):
        r["bbox_id"] = i
    return out


def simulate(n_images: int, seed: int = 0) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``(ground-truth dict, result rows)`` for ``n_images`` images, deterministic in ``seed``."""
    gt = simulate_ground_truth(n_images, seed)
    return gt, simulate_results(gt, seed + 1)
