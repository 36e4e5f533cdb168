"""Dataset statistics that read only the annotation file (vectorised numpy).

* :func:`count_annotations` - boxes and labelled keypoints per part (the paper's dataset counts);
* :func:`part_scales` - average keypoint distance per part and person (the scale difference
  between body, face and hands);
* :func:`hand_gestures` - hands normalised for position, rotation and scale, clustered by k-means.

Face blurriness reads images and lives in :mod:`wholebody.datatools.blur`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wholebody.datatools.annotations import WholeBodyTable
from wholebody.keypoints import BOX_PARTS, PARTS

HANDS: tuple[str, str] = ("lefthand", "righthand")
#: Hand-local indices (same for both hands in the 133 layout) of the points fixing a hand's frame.
WRIST, MIDDLE_MCP = 0, 9
FINGERTIPS = (4, 8, 12, 16, 20)


# ----------------------------------------------------------------------------- counts
def count_annotations(table: WholeBodyTable) -> dict:
    """Counts of the file: images, persons, boxes and labelled keypoints per part.

    Every annotation row counts (crowd persons and persons with no keypoints included): a box
    counts when its width and height are positive, a keypoint when its visibility is > 0, and
    ``valid`` is the file's ``*_valid`` flag. ``hand`` sums the two hands.
    """
    n_img_with = int(np.unique(table.image_id).size)
    bbox = table.bbox
    out: dict = {
        "file": str(table.path),
        "images": len(table.images),
        "images_with_persons": n_img_with,
        "persons": len(table),
        "crowd": int(table.iscrowd.sum()),
        "person_boxes": int(((bbox[:, 2] > 0) & (bbox[:, 3] > 0)).sum()),
        "parts": {},
    }
    for part in PARTS:
        lab = table.labelled(part)
        entry = {
            "keypoints": int(lab.sum()),
            "persons_labelled": int(lab.any(axis=1).sum()),
            "keypoints_per_person": table.spec.num_part(part),
        }
        if part in table.valid:
            entry["valid"] = int(table.valid[part].sum())
        if part in BOX_PARTS:
            entry["boxes"] = int(table.has_box(part).sum())
        out["parts"][part] = entry
    left, right = out["parts"]["lefthand"], out["parts"]["righthand"]
    out["parts"]["hand"] = {k: left[k] + right[k] for k in ("keypoints", "persons_labelled", "valid", "boxes")}
    out["total_boxes"] = out["person_boxes"] + sum(out["parts"][p]["boxes"] for p in BOX_PARTS)
    out["total_keypoints"] = sum(out["parts"][p]["keypoints"] for p in PARTS)
    return out


# ----------------------------------------------------------------------------- scale difference
def mean_pairwise_distance(points: np.ndarray, mask: np.ndarray, chunk_elems: int = 1 << 22) -> np.ndarray:
    """Mean Euclidean distance over all pairs of masked points.

    Args:
        points: (N, K, 2) px; mask: (N, K) bool (labelled points).
        chunk_elems: bound on the (n, K(K-1)/2) work arrays, to keep memory flat on 250k persons.
    Returns:
        (N,) float64 px; NaN where fewer than two points are masked.
    """
    points = np.asarray(points, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    n, k = mask.shape
    out = np.full(n, np.nan)
    rows = np.flatnonzero(mask.sum(axis=1) >= 2)
    ia, ib = np.triu_indices(k, 1)
    step = max(1, chunk_elems // max(1, ia.size))
    for a in range(0, rows.size, step):
        r = rows[a : a + step]
        p, m = points[r], mask[r]
        diff = p[:, ia] - p[:, ib]  # (n, P, 2)
        d = np.sqrt(np.einsum("npc,npc->np", diff, diff))
        pair = m[:, ia] & m[:, ib]
        out[r] = np.where(pair, d, 0.0).sum(axis=1) / pair.sum(axis=1)
    return out


def part_scales(table: WholeBodyTable, parts: tuple[str, ...] = PARTS) -> dict[str, np.ndarray]:
    """Average keypoint distance per person and part (image px): the part's scale.

    A person counts for a part when at least two of the part's keypoints are labelled (so invalid
    parts, crowd rows and unlabelled persons drop out on their own). Returns part -> (M,) values.
    """
    out = {}
    for part in parts:
        s = table.spec.slice(part)
        d = mean_pairwise_distance(table.keypoints[:, s, :2], table.keypoints[:, s, 2] > 0)
        out[part] = d[np.isfinite(d)]
    return out


def summarize(values: np.ndarray) -> dict:
    """count / mean / std / min / percentiles of a 1-D sample (NaNs for an empty one)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {"count": 0, "mean": None, "std": None, "min": None, "p10": None, "median": None, "p90": None, "max": None}
    p10, med, p90 = np.percentile(v, [10, 50, 90])
    return {"count": int(v.size), "mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()),
            "p10": float(p10), "median": float(med), "p90": float(p90), "max": float(v.max())}


def scale_summary(scales: dict[str, np.ndarray]) -> dict:
    """Per-part summaries plus each part's median relative to the body's (the scale ratio)."""
    out = {part: summarize(v) for part, v in scales.items()}
    body = out.get("body", {}).get("median")
    for s in out.values():
        s["median_over_body"] = (s["median"] / body) if (body and s["median"] is not None) else None
    return out


# ----------------------------------------------------------------------------- hand gestures
def normalize_hands(points: np.ndarray, is_left: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Put hands in a common frame: left hands mirrored onto right ones, centroid at the origin,
    wrist -> middle-finger knuckle pointing up (-y), unit RMS distance to the centroid.

    Args:
        points: (N, 21, 2) image px of fully labelled hands; is_left: (N,) bool.
    Returns:
        (N, 21, 2) normalised shapes (unitless) and ok (N,) bool (False for degenerate hands:
        coincident wrist and knuckle, or all points at one place).
    """
    p = np.array(points, dtype=np.float64, copy=True)
    p[np.asarray(is_left, bool), :, 0] *= -1.0
    p -= p.mean(axis=1, keepdims=True)
    v = p[:, MIDDLE_MCP] - p[:, WRIST]
    norm_v = np.hypot(v[:, 0], v[:, 1])
    rms = np.sqrt((p**2).sum(-1).mean(-1))
    ok = (norm_v > 1e-9) & (rms > 1e-9)
    phi = -np.pi / 2 - np.arctan2(v[:, 1], v[:, 0])  # turns v onto (0, -1)
    c, s = np.cos(phi), np.sin(phi)
    rot = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)  # (N, 2, 2)
    p = np.einsum("nij,nkj->nki", rot, p) / np.where(ok, rms, 1.0)[:, None, None]
    return p, ok


def kmeans(x: np.ndarray, k: int, seed: int = 0, n_init: int = 10, max_iter: int = 300, tol: float = 1e-10) -> tuple[np.ndarray, np.ndarray, float]:
    """Lloyd's k-means with k-means++ seeding; the best of ``n_init`` runs (lowest inertia).

    Args:
        x: (N, D) samples, N >= k.
    Returns:
        labels (N,) int64, centres (k, D), inertia (sum of squared distances to the centres).
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    if k < 1:
        raise ValueError(f"k-means needs k >= 1 clusters, got {k}")
    if n < k:
        raise ValueError(f"k-means needs at least k={k} samples, got {n}")
    rng = np.random.default_rng(seed)
    best: tuple[np.ndarray, np.ndarray, float] | None = None
    x2 = (x**2).sum(1)
    for _ in range(n_init):
        centres = np.empty((k, x.shape[1]))
        centres[0] = x[rng.integers(n)]
        d2 = ((x - centres[0]) ** 2).sum(1)
        for j in range(1, k):
            total = d2.sum()
            i = rng.choice(n, p=d2 / total) if total > 0 else rng.integers(n)
            centres[j] = x[i]
            d2 = np.minimum(d2, ((x - centres[j]) ** 2).sum(1))
        prev = np.inf
        for _ in range(max_iter):
            dist = x2[:, None] - 2.0 * x @ centres.T + (centres**2).sum(1)[None]
            labels = dist.argmin(1)
            inertia = float(np.maximum(dist[np.arange(n), labels], 0.0).sum())
            for j in range(k):
                members = labels == j
                if members.any():
                    centres[j] = x[members].mean(0)
                else:  # re-seed an empty cluster at the worst-fitted sample
                    centres[j] = x[dist[np.arange(n), labels].argmax()]
            if prev - inertia <= tol * max(prev, 1.0):
                break
            prev = inertia
        dist = x2[:, None] - 2.0 * x @ centres.T + (centres**2).sum(1)[None]
        labels = dist.argmin(1)
        inertia = float(np.maximum(dist[np.arange(n), labels], 0.0).sum())
        if best is None or inertia < best[2]:
            best = (labels.astype(np.int64), centres.copy(), inertia)
    assert best is not None
    return best


def openness(shapes: np.ndarray) -> np.ndarray:
    """(..., 21, 2) normalised hands -> (...,) mean fingertip distance from the wrist."""
    tips = shapes[..., list(FINGERTIPS), :] - shapes[..., WRIST : WRIST + 1, :]
    return np.hypot(tips[..., 0], tips[..., 1]).mean(-1)


@dataclass(frozen=True)
class GestureClusters:
    """Hands clustered by shape.

    Attributes:
        rows: (M,) index into the table of each clustered hand; side: (M,) "lefthand"/"righthand".
        shapes: (M, 21, 2) normalised hands (right-hand frame); labels: (M,) cluster, 0..k-1.
        centres: (k, 21, 2) mean shape per cluster, ordered from most closed (0) to most open.
        counts: (k,) hands per cluster; inertia: k-means objective.
        candidates: valid hands with a box; incomplete: of those, not fully labelled (left out);
        degenerate: fully labelled but with no usable frame (left out).
    """

    rows: np.ndarray
    side: np.ndarray
    shapes: np.ndarray
    labels: np.ndarray
    centres: np.ndarray
    counts: np.ndarray
    inertia: float
    candidates: int
    incomplete: int
    degenerate: int

    @property
    def fractions(self) -> np.ndarray:
        return self.counts / max(1, int(self.counts.sum()))

    def summary(self) -> dict:
        return {
            "clusters": int(self.centres.shape[0]),
            "hands_clustered": int(self.labels.size),
            "candidates": self.candidates,
            "left_out_incomplete": self.incomplete,
            "left_out_degenerate": self.degenerate,
            "counts": [int(c) for c in self.counts],
            "fractions": [float(f) for f in self.fractions],
            "openness": [float(o) for o in openness(self.centres)],
            "inertia": self.inertia,
        }


def hand_gestures(table: WholeBodyTable, k: int = 3, seed: int = 0, n_init: int = 10) -> GestureClusters:
    """Cluster every valid, fully labelled hand (both sides, crowd rows never have hands) by shape.

    Hands are normalised with :func:`normalize_hands` and clustered with :func:`kmeans` on the 42
    coordinates; clusters are renumbered by increasing :func:`openness` so that the numbering is
    stable across runs and files.
    """
    rows, sides, pts = [], [], []
    candidates = incomplete = 0
    for part in HANDS:
        valid = table.usable(part)
        full = table.labelled(part).all(axis=1)
        candidates += int(valid.sum())
        incomplete += int((valid & ~full).sum())
        r = np.flatnonzero(valid & full)
        rows.append(r)
        sides.append(np.full(r.size, part))
        pts.append(table.keypoints[r, table.spec.slice(part), :2])
    rows_a = np.concatenate(rows)
    side_a = np.concatenate(sides)
    shapes, ok = normalize_hands(np.concatenate(pts), side_a == "lefthand")
    degenerate = int((~ok).sum())
    rows_a, side_a, shapes = rows_a[ok], side_a[ok], shapes[ok]
    if shapes.shape[0] < k:
        raise ValueError(
            f"{table.path}: only {shapes.shape[0]} valid, fully labelled hands; clustering into {k} groups needs at least {k}"
        )
    labels, centres, inertia = kmeans(shapes.reshape(len(shapes), -1), k, seed=seed, n_init=n_init)
    centres = centres.reshape(k, -1, 2)
    order = np.argsort(openness(centres), kind="stable")
    remap = np.empty(k, dtype=np.int64)
    remap[order] = np.arange(k)
    labels = remap[labels]
    centres = centres[order]
    counts = np.bincount(labels, minlength=k)
    return GestureClusters(rows_a, side_a, shapes, labels, centres, counts, inertia, candidates, incomplete, degenerate)
