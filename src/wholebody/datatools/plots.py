"""PNG charts of the dataset statistics (matplotlib, imported lazily, drawn off-screen on Agg
figures so no global backend is touched). Every chart is written atomically."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from wholebody.io_utils import write_bytes_atomic

#: Okabe-Ito colours (colour-blind safe), one per part.
COLORS = {
    "person": "#7f7f7f",
    "body": "#E69F00",
    "foot": "#CC79A7",
    "face": "#56B4E9",
    "lefthand": "#009E73",
    "righthand": "#0072B2",
    "hand": "#009E73",
}
LABELS = {"person": "person", "body": "body", "foot": "foot", "face": "face", "lefthand": "left hand",
          "righthand": "right hand", "hand": "hand"}
FINGER_COLORS = {"thumb": "#D55E00", "forefinger": "#E69F00", "middle": "#009E73", "ring": "#0072B2", "pinky": "#CC79A7"}


def _figure(w: float, h: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, facecolor="white")
    return write_bytes_atomic(path, buf.getvalue())


def _style(ax) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", color="#dddddd", linewidth=0.8)
    ax.set_axisbelow(True)


def _bars(ax, names: Sequence[str], values: Sequence[int], title: str) -> None:
    vals = np.asarray(values, dtype=float)
    x = np.arange(len(names))
    ax.bar(x, vals, color=[COLORS[n] for n in names], width=0.65)
    ax.set_xticks(x, [LABELS[n] for n in names])
    ax.set_title(title, fontsize=11, loc="left")
    _style(ax)
    positive = vals[vals > 0]
    if positive.size and positive.max() / positive.min() > 100:
        ax.set_yscale("log")
        ax.set_ylim(bottom=max(0.5, positive.min() / 3), top=positive.max() * 4)
    else:
        ax.set_ylim(0, max(1.0, vals.max()) * 1.15)
    for xi, v in zip(x, vals):
        ax.annotate(f"{int(v):,}", (xi, max(v, ax.get_ylim()[0])), xytext=(0, 3), textcoords="offset points",
                    ha="center", va="bottom", fontsize=9)


def plot_counts(counts: Mapping, path: str | Path) -> Path:
    """Two bar charts: annotated boxes (person, face, hands) and labelled keypoints per part."""
    fig = _figure(10, 4)
    a, b = fig.subplots(1, 2)
    parts = counts["parts"]
    _bars(a, ["person", "face", "lefthand", "righthand"],
          [counts["person_boxes"], parts["face"]["boxes"], parts["lefthand"]["boxes"], parts["righthand"]["boxes"]],
          "Annotated boxes")
    names = ["body", "foot", "face", "lefthand", "righthand"]
    _bars(b, names, [parts[n]["keypoints"] for n in names], "Labelled keypoints (v > 0)")
    fig.suptitle(f"{Path(counts['file']).name}: {counts['images']:,} images, {counts['persons']:,} persons "
                 f"({counts['crowd']:,} crowd)", fontsize=12)
    return _save(fig, path)


def plot_scales(scales: Mapping[str, np.ndarray], path: str | Path) -> Path:
    """Per-part distribution (box plot, log scale) of the average keypoint distance per person."""
    parts = [p for p in scales if len(scales[p])]
    fig = _figure(9, 0.9 * max(3, len(parts)) + 1.2)
    ax = fig.subplots()
    if not parts:
        ax.text(0.5, 0.5, "no person with two labelled keypoints in any part", ha="center", va="center")
        ax.set_axis_off()
        return _save(fig, path)
    data = [np.asarray(scales[p]) for p in parts]
    pos = np.arange(len(parts))[::-1]
    bp = ax.boxplot(data, positions=pos, orientation="horizontal", widths=0.55, whis=(5, 95), showfliers=False,
                    patch_artist=True, medianprops={"color": "black", "linewidth": 1.5})
    for patch, p in zip(bp["boxes"], parts):
        patch.set_facecolor(COLORS[p])
        patch.set_alpha(0.55)
    rng = np.random.default_rng(0)
    for y, d, p in zip(pos, data, parts):
        show = d if d.size <= 400 else rng.choice(d, 400, replace=False)
        ax.scatter(show, y + rng.uniform(-0.18, 0.18, show.size), s=9, color=COLORS[p], edgecolor="none", alpha=0.8)
    ax.set_xscale("log")
    ax.set_yticks(pos, [LABELS[p] for p in parts])
    body = float(np.median(scales["body"])) if "body" in parts else None
    for y, d in zip(pos, data):
        med = float(np.median(d))
        ratio = f", {med / body:.2f}x body" if body else ""
        ax.annotate(f"median {med:.1f} px{ratio}  (n={d.size:,})", (1.0, y), xycoords=("axes fraction", "data"),
                    xytext=(6, 0), textcoords="offset points", va="center", fontsize=9)
    ax.set_xlabel("average distance between labelled keypoints of the part (image px, log scale)")
    ax.set_title("Scale difference between parts (box: quartiles, whiskers: 5th-95th percentile)", fontsize=11, loc="left")
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="x", which="both", color="#eeeeee", linewidth=0.8)
    ax.set_axisbelow(True)
    return _save(fig, path)


def plot_blur(log10_var: np.ndarray, path: str | Path, examples: Sequence[tuple[np.ndarray, float]] = (),
              size: int = 112) -> Path:
    """Histogram of face sharpness (log10 Laplacian variance), with example faces from blurry to sharp."""
    v = np.asarray(log10_var, dtype=float)
    v = v[np.isfinite(v)]
    n_ex = len(examples)
    fig = _figure(9, 4.2 + (1.6 if n_ex else 0))
    if n_ex:
        gs = fig.add_gridspec(2, n_ex, height_ratios=[3.2, 1.3])
        ax = fig.add_subplot(gs[0, :])
    else:
        ax = fig.subplots()
    if v.size:
        bins = np.histogram_bin_edges(v, bins="auto") if v.size > 1 else np.array([v[0] - 0.5, v[0] + 0.5])
        bins = bins if len(bins) <= 60 else np.linspace(v.min(), v.max(), 61)
        ax.hist(v, bins=bins, color=COLORS["face"], edgecolor="white", linewidth=0.6)
        med = float(np.median(v))
        ax.axvline(med, color="black", linestyle="--", linewidth=1.2)
        ax.annotate(f"median {med:.2f}", (med, 1.0), xycoords=("data", "axes fraction"), xytext=(4, -12),
                    textcoords="offset points", fontsize=9)
        ax.set_title(f"Face blurriness: {v.size:,} valid faces (grey, {size}x{size}; lower = blurrier)",
                     fontsize=11, loc="left")
    else:
        ax.text(0.5, 0.5, "no face could be scored", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("log10 variance of the Laplacian")
    ax.set_ylabel("faces")
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    _style(ax)
    for i, (img, val) in enumerate(examples):
        e = fig.add_subplot(gs[1, i])
        e.imshow(img, cmap="gray", vmin=0, vmax=255)
        tag = " blurriest" if i == 0 and n_ex > 1 else " sharpest" if i == n_ex - 1 and n_ex > 1 else ""
        e.set_title(f"{val:.2f}{tag}", fontsize=9)
        e.set_axis_off()
    return _save(fig, path)


def hand_edges_and_colors(names: Sequence[str], edges: np.ndarray) -> list[tuple[int, int, str]]:
    """Hand-local edges with the colour of the finger they belong to."""
    out = []
    for a, b in edges:
        n = names[b] if "root" in names[a] else names[a]
        finger = next((f for f in FINGER_COLORS if f in n), "middle")
        out.append((int(a), int(b), FINGER_COLORS[finger]))
    return out


def plot_gestures(centres: np.ndarray, counts: np.ndarray, shapes: np.ndarray, labels: np.ndarray,
                  names: Sequence[str], edges: np.ndarray, path: str | Path, max_members: int = 60) -> Path:
    """Share of each gesture cluster, and each cluster's mean hand over a sample of its members."""
    k = len(centres)
    fig = _figure(3.0 * k + 3.6, 3.9)
    gs = fig.add_gridspec(1, k + 1, width_ratios=[1.25] + [1.0] * k)
    bar = fig.add_subplot(gs[0, 0])
    total = max(1, int(counts.sum()))
    x = np.arange(k)
    bar.bar(x, 100.0 * counts / total, color="#999999", width=0.6)
    for xi, c in zip(x, counts):
        bar.annotate(f"{100.0 * c / total:.0f}%\n({int(c):,})", (xi, 100.0 * c / total), xytext=(0, 3),
                     textcoords="offset points", ha="center", va="bottom", fontsize=9)
    bar.set_xticks(x, [f"{i + 1}" for i in x])
    bar.set_xlabel("cluster (closed -> open)")
    bar.set_ylabel("% of hands")
    bar.set_ylim(0, 115)
    bar.set_title(f"{total:,} hands, k-means k={k}", fontsize=11, loc="left")
    _style(bar)
    colored = hand_edges_and_colors(names, edges)
    rng = np.random.default_rng(0)
    lim = max(1.0, float(np.abs(centres).max()) * 1.25)
    for j in range(k):
        ax = fig.add_subplot(gs[0, j + 1])
        members = np.flatnonzero(labels == j)
        for m in rng.permutation(members)[:max_members]:
            for a, b, _ in colored:
                ax.plot(shapes[m, [a, b], 0], shapes[m, [a, b], 1], color="#bbbbbb", linewidth=0.6, alpha=0.5)
        for a, b, col in colored:
            ax.plot(centres[j, [a, b], 0], centres[j, [a, b], 1], color=col, linewidth=2.6, solid_capstyle="round")
        ax.scatter(centres[j, :, 0], centres[j, :, 1], s=12, color="black", zorder=3)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(lim, -lim)  # image convention: y down, fingers up
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"cluster {j + 1}: mean hand", fontsize=10)
        if j == 0:
            from matplotlib.lines import Line2D

            handles = [Line2D([], [], color=c, linewidth=2.6, label=f) for f, c in FINGER_COLORS.items()]
            ax.legend(handles=handles, fontsize=7, loc="lower left", frameon=False, handlelength=1.2)
        for s in ax.spines.values():
            s.set_color("#cccccc")
    fig.suptitle("Hand gestures (normalised for position, rotation and scale; left hands mirrored)", fontsize=12)
    return _save(fig, path)
