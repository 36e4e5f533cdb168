"""PNG charts of an evaluation: PR curves per part, keypoint error breakdown, AP by person size,
part-box PR curves. matplotlib is imported here only (Agg backend), so importing the evaluator
never pays for it. Files are written atomically.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .io import write_bytes_atomic

PART_TITLES = {
    "body": "Body",
    "foot": "Foot",
    "face": "Face",
    "lefthand": "Left hand",
    "righthand": "Right hand",
    "wholebody": "Whole body",
}
#: colour per keypoint class (colour-blind safe, good = green ... miss = grey)
CLASS_COLOURS = {
    "good": "#2e8b57",
    "jitter": "#e6a532",
    "inversion": "#d1495b",
    "swap": "#7a4fa3",
    "miss": "#8c8c8c",
}
_THRESHOLD_STYLE = ((0.5, "#1f77b4", "-"), (0.75, "#ff7f0e", "-"), (0.95, "#2ca02c", "-"))


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "font.size": 10,
            "axes.titlesize": 11,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "figure.dpi": 110,
        }
    )
    return plt


def _save(fig: Any, path: str | os.PathLike) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", dpi=130)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return write_bytes_atomic(path, buf.getvalue())


def _grid(n: int) -> tuple[int, int]:
    cols = 3 if n > 4 else max(1, min(n, 2 if n == 4 else n))
    return (n + cols - 1) // cols, cols


def _curve(precision: np.ndarray, iou_thrs: np.ndarray, thr: float) -> np.ndarray | None:
    t = np.flatnonzero(np.isclose(iou_thrs, thr))
    if len(t) == 0:
        return None
    p = precision[t[0], :, 0, 0, -1]
    return None if (p < 0).all() else p


def plot_pr_curves(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray, Mapping[str, float]]],
    path: str | os.PathLike,
    title: str = "Precision-recall per part (OKS, all sizes)",
    metric: str = "OKS",
) -> Path:
    """One panel per part with the PR curves at thresholds .50/.75/.95 and the AP.

    Args:
        curves: part -> (precision (T, R, C, A, M), recall points (R,), thresholds (T,), stats).
    """
    plt = _pyplot()
    rows, cols = _grid(len(curves))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.7 * rows), squeeze=False)
    for ax, (part, (precision, rec, thrs, stats)) in zip(axes.flat, curves.items()):
        drew = []
        for thr, colour, style in _THRESHOLD_STYLE:
            p = _curve(precision, thrs, thr)
            if p is None:
                continue
            ax.plot(rec, p, style, color=colour, lw=1.8)
            ax.fill_between(rec, p, color=colour, alpha=0.07)
            drew.append(f"{float(p.mean()):.2f}")
        name = PART_TITLES.get(part, part)
        ap = stats.get("AP", -1)
        if drew:
            ax.set_title(f"{name}: AP {ap:.3f}\n(at .50 / .75 / .95: {' / '.join(drew)})", fontsize=10)
        else:
            ax.set_title(name)
            ax.text(
                0.5, 0.5, "no ground truth", ha="center", va="center", transform=ax.transAxes, color="#777"
            )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(curves) :]:
        ax.set_visible(False)
    handles = [plt.Line2D([], [], color=c, lw=2, ls=st) for _, c, st in _THRESHOLD_STYLE]
    fig.legend(
        handles,
        [f"{metric} threshold {t:.2f}" for t, _, _ in _THRESHOLD_STYLE],
        ncol=3,
        loc="upper center",
        bbox_to_anchor=(0.5, 1.0),
        frameon=False,
    )
    fig.suptitle(title, fontsize=13, y=1.045)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return _save(fig, path)


def plot_error_breakdown(diagnosis: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Left: share of each keypoint class per part. Right: AP gained by correcting each error type."""
    from .diagnosis import ERROR_TYPES, KEYPOINT_CLASSES

    plt = _pyplot()
    parts = list(diagnosis)
    fig, (ax1, ax2) = plt.subplots(
        1, 2, figsize=(13, 0.55 * len(parts) + 2.2), gridspec_kw={"width_ratios": [1.25, 1]}
    )
    y = np.arange(len(parts))[::-1]
    for i, part in enumerate(parts):
        counts = diagnosis[part].counts
        total = max(sum(counts.values()), 1)
        left = 0.0
        for c in KEYPOINT_CLASSES:
            frac = counts[c] / total
            ax1.barh(
                y[i],
                frac,
                left=left,
                color=CLASS_COLOURS[c],
                edgecolor="white",
                height=0.7,
                label=c if i == 0 else None,
            )
            if frac >= 0.06:
                ax1.text(
                    left + frac / 2,
                    y[i],
                    f"{100 * frac:.0f}%",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if c != "jitter" else "black",
                )
            left += frac
    ax1.set_yticks(y, [PART_TITLES.get(p, p) for p in parts])
    ax1.set_xlim(0, 1)
    ax1.set_xlabel("share of labelled keypoints of matched detections")
    ax1.set_title("Keypoint localisation errors")
    ax1.legend(ncol=5, loc="lower center", bbox_to_anchor=(0.5, 1.06), frameon=False, fontsize=9)

    width = 0.8 / len(ERROR_TYPES)
    for j, t in enumerate(ERROR_TYPES):
        gains = [diagnosis[p].ap_fixed[t] - diagnosis[p].ap for p in parts]
        pos = y + (len(ERROR_TYPES) / 2 - j - 0.5) * width
        ax2.barh(pos, gains, height=width, color=CLASS_COLOURS[t], label=t)
        for yy, g in zip(pos, gains):
            ax2.text(g, yy, f" +{g:.3f}" if g >= 0 else f" {g:.3f}", va="center", fontsize=7)
    ax2.set_yticks(y, [f"{PART_TITLES.get(p, p)}\nAP {diagnosis[p].ap:.3f}" for p in parts])
    ax2.set_xlabel("AP gained when the error type is corrected (OKS .50:.95)")
    ax2.set_title("What each error type costs")
    ax2.grid(axis="x", alpha=0.3)
    ax2.legend(ncol=4, loc="lower center", bbox_to_anchor=(0.5, 1.06), frameon=False, fontsize=9)
    xmax = max([diagnosis[p].ap_fixed[t] - diagnosis[p].ap for p in parts for t in ERROR_TYPES] + [0.01])
    ax2.set_xlim(min(0, ax2.get_xlim()[0]), xmax * 1.25)
    fig.tight_layout()
    return _save(fig, path)


def plot_error_pr(diagnosis: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Per part, PR curves at OKS .75 as is and after correcting error types one on top of the other."""
    plt = _pyplot()
    colours = {
        "original": "#1f3b73",
        "miss": CLASS_COLOURS["miss"],
        "swap": CLASS_COLOURS["swap"],
        "inversion": CLASS_COLOURS["inversion"],
        "jitter": CLASS_COLOURS["jitter"],
    }
    rows, cols = _grid(len(diagnosis))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.7 * rows), squeeze=False)
    labels = {}
    for ax, (part, d) in zip(axes.flat, diagnosis.items()):
        rec = d.recall_points
        for label, _, p in reversed(d.cumulative):  # best curve first so that the fills stack
            ax.fill_between(rec, np.clip(p, 0, None), color=colours[label], alpha=0.9, lw=0)
            labels[label] = "as is" if label == "original" else f"+ {label} fixed"
        steps = " > ".join(f"{ap:.2f}" for _, ap, _ in d.cumulative)
        ax.set_title(f"{PART_TITLES.get(part, part)}\nAP {steps}", fontsize=10)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision @ OKS .75")
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(diagnosis) :]:
        ax.set_visible(False)
    order = [k for k in colours if k in labels]
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[k]) for k in order]
    fig.legend(
        handles,
        [labels[k] for k in order],
        ncol=len(labels),
        loc="upper center",
        bbox_to_anchor=(0.5, 1.0),
        frameon=False,
    )
    fig.suptitle(
        "Where the AP goes: PR at OKS .75 as errors are corrected one type on top of the other\n"
        "(titles: AP over OKS .50:.95 after each step)",
        fontsize=12,
        y=1.07,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return _save(fig, path)


def plot_sizes(
    sizes: Mapping[str, Mapping[str, Mapping[str, float]]],
    path: str | os.PathLike,
    labels: Sequence[str] = ("M", "L", "XL", "XX"),
) -> Path:
    """AP per person size (by annotated area) for each part, with the number of persons."""
    from .diagnosis import SIZE_RANGES

    plt = _pyplot()
    parts = list(sizes)
    fig, ax = plt.subplots(figsize=(1.6 * len(parts) + 3, 4.2))
    x = np.arange(len(parts))
    width = 0.8 / len(labels)
    palette = ["#c6dbef", "#6baed6", "#2171b5", "#08306b"]
    for j, lbl in enumerate(labels):
        lo, hi = SIZE_RANGES[lbl]
        rng = f"{np.sqrt(lo):.0f}²-{np.sqrt(hi):.0f}²" if hi < 1e9 else f">{np.sqrt(lo):.0f}²"
        vals = [max(sizes[p][lbl]["AP"], 0.0) for p in parts]
        pos = x + (j - len(labels) / 2 + 0.5) * width
        ax.bar(pos, vals, width=width * 0.95, color=palette[j % len(palette)], label=f"{lbl} ({rng} px)")
        for xx, p in zip(pos, parts):
            n = sizes[p][lbl]["persons"]
            ax.text(
                xx,
                0.005,
                f"{n}" if n else "none",
                ha="center",
                va="bottom",
                fontsize=7,
                rotation=90,
                color="black" if j < 2 or not n else "white",
            )
    for i, p in enumerate(parts):
        ax.hlines(
            sizes[p]["all"]["AP"],
            i - 0.42,
            i + 0.42,
            colors="#d1495b",
            linestyles="--",
            lw=1.2,
            label="all sizes" if i == 0 else None,
        )
    ax.set_xticks(x, [PART_TITLES.get(p, p) for p in parts])
    ax.set_ylabel("AP (OKS .50:.95)")
    ax.set_ylim(0, min(1.05, max([sizes[p][lbl]["AP"] for p in parts for lbl in labels] + [0.1]) + 0.15))
    ax.set_title("AP by person size (annotated area); numbers at the bar base: persons evaluated")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(ncol=5, fontsize=8, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.08))
    fig.tight_layout()
    return _save(fig, path)


def write_plots(
    out_dir: str | os.PathLike,
    evaluations: Mapping[str, Any],
    diagnosis: Mapping[str, Any] | None = None,
    sizes: Mapping[str, Any] | None = None,
    box_curves: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray, Mapping[str, float]]] | None = None,
) -> list[Path]:
    """Write every chart that has data into ``out_dir``; returns the files written.

    Args:
        evaluations: part -> :class:`~wholebody.evaluation.part.PartEvaluation`.
        diagnosis: part -> :class:`~wholebody.evaluation.diagnosis.PartDiagnosis`.
        sizes: the output of :func:`~wholebody.evaluation.diagnosis.size_breakdown`.
        box_curves: box part -> (precision, recall points, IoU thresholds, stats).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    curves = {
        p: (e.precision, np.asarray(e.protocol.rec_thrs), np.asarray(e.protocol.iou_thrs), e.stats)
        for p, e in evaluations.items()
    }
    if curves:
        written.append(plot_pr_curves(curves, out / "pr_curves.png"))
    if diagnosis:
        written.append(plot_error_breakdown(diagnosis, out / "error_breakdown.png"))
        written.append(plot_error_pr(diagnosis, out / "error_pr_curves.png"))
    if sizes:
        written.append(plot_sizes(sizes, out / "ap_by_size.png"))
    if box_curves:
        written.append(
            plot_pr_curves(
                box_curves,
                out / "box_pr_curves.png",
                title="Part-box precision-recall (IoU, all sizes, 100 detections)",
                metric="IoU",
            )
        )
    return written
