"""One call for the paper's dataset statistics: numbers to ``stats.json``, per-item tables to CSV,
charts to PNG, all in one output folder, written atomically and never over existing files unless
asked. A run that redoes only some statistics (``which``) with ``overwrite`` keeps the others that an
earlier run of the same annotation file left in ``stats.json``."""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wholebody.datatools.annotations import WholeBodyTable, load_wholebody
from wholebody.datatools.blur import BLUR_SIZE, FaceBlur, crop_resize, face_blurriness
from wholebody.datatools.images import SkippedImage, check_image_dir
from wholebody.datatools.stats import count_annotations, hand_gestures, part_scales, scale_summary, summarize
from wholebody.images import ImageReadError, read_image
from wholebody.io_utils import write_bytes_atomic, write_json_atomic

log = logging.getLogger(__name__)

STATISTICS = ("counts", "scales", "gestures", "blur")
#: files each statistic writes (besides its entry in stats.json).
OUTPUTS = {
    "counts": ("counts.png",),
    "scales": ("scales.png",),
    "gestures": ("gestures.png", "hand_gestures.csv"),
    "blur": ("blur.png", "face_blur.csv"),
}


@dataclass
class StatsReport:
    stats: dict
    written: list[Path] = field(default_factory=list)
    skipped: list[SkippedImage] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _csv_bytes(header: list[str], rows) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue().encode()


def blur_examples(table: WholeBodyTable, image_dir: Path, blur: FaceBlur, n: int = 6) -> list[tuple[np.ndarray, float]]:
    """Up to ``n`` scored faces spread from the blurriest to the sharpest, as (112x112 grey, log10 var)."""
    if blur.rows.size == 0:
        return []
    logv = blur.log10
    order = np.argsort(logv, kind="stable")
    picks = order[np.unique(np.round(np.linspace(0, order.size - 1, min(n, order.size))).astype(int))]
    out = []
    for i in picks:
        r = blur.rows[i]
        info = table.images[int(table.image_id[r])]
        try:
            grey = read_image(image_dir / info.file_name, (info.width, info.height), grey=True)
        except ImageReadError:  # pragma: no cover - it was readable a moment ago
            continue
        crop = crop_resize(grey, table.part_box_xyxy("face")[r])
        if crop is not None:
            out.append((crop, float(logv[i])))
    return out


def _previous_stats(path: Path, source: Path) -> dict:
    """Statistics an earlier run wrote for the same annotation file (kept when a run redoes only some)."""
    import orjson

    try:
        old = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    return old if isinstance(old, dict) and old.get("file") == str(source) else {}


def check_outputs(out_dir: Path, which: tuple[str, ...], overwrite: bool) -> None:
    names = ["stats.json"] + [f for s in which for f in OUTPUTS[s]]
    existing = [n for n in names if (out_dir / n).exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{out_dir} already holds {', '.join(existing)}; pass overwrite (--overwrite) to replace them")


def dataset_statistics(
    annotations: str | Path | WholeBodyTable,
    out_dir: str | Path,
    image_dir: str | Path | None = None,
    which: tuple[str, ...] = STATISTICS,
    clusters: int = 3,
    seed: int = 0,
    blur_size: int = BLUR_SIZE,
    workers: int = 0,
    plots: bool = True,
    overwrite: bool = False,
    progress: bool | None = None,
) -> StatsReport:
    """Compute the chosen statistics of one annotation file and write them to ``out_dir``.

    ``blur`` needs ``image_dir`` (the folder of the file's images); without it, it is left out with a
    note. Unreadable images are skipped and listed in the report (and in ``stats.json``).
    """
    unknown = set(which) - set(STATISTICS)
    if unknown:
        raise ValueError(f"unknown statistic(s) {sorted(unknown)}; choose from {list(STATISTICS)}")
    out_dir = Path(out_dir)
    table = annotations if isinstance(annotations, WholeBodyTable) else load_wholebody(annotations)
    report = StatsReport(stats={"file": str(table.path)})
    if "blur" in which and image_dir is None:
        report.notes.append("face blurriness needs the image folder (--images); left out")
        which = tuple(s for s in which if s != "blur")
    if "blur" in which:
        image_dir = check_image_dir(image_dir)  # before anything is written: a bad folder leaves nothing behind
    check_outputs(out_dir, which, overwrite)
    previous = _previous_stats(out_dir / "stats.json", table.path)
    report.stats.update({k: v for k, v in previous.items() if k in STATISTICS and k not in which})
    if plots:
        from wholebody.datatools import plots as P

    def put(name: str, data: bytes) -> None:
        report.written.append(write_bytes_atomic(out_dir / name, data))

    if "counts" in which:
        counts = count_annotations(table)
        report.stats["counts"] = counts
        if plots:
            report.written.append(P.plot_counts(counts, out_dir / "counts.png"))
    if "scales" in which:
        scales = part_scales(table)
        report.stats["scales"] = {
            "definition": "per person and part: mean distance (image px) over all pairs of labelled keypoints; "
                          "persons with >= 2 labelled keypoints in the part",
            "parts": scale_summary(scales),
        }
        if plots:
            report.written.append(P.plot_scales(scales, out_dir / "scales.png"))
    if "gestures" in which:
        try:
            g = hand_gestures(table, k=clusters, seed=seed)
        except ValueError as e:
            report.notes.append(f"hand gestures left out: {e}")
        else:
            report.stats["gestures"] = g.summary()
            rows = [(int(table.ann_id[r]), int(table.image_id[r]), s, int(c) + 1)
                    for r, s, c in zip(g.rows, g.side, g.labels)]
            put("hand_gestures.csv", _csv_bytes(["ann_id", "image_id", "side", "cluster"], rows))
            if plots:
                spec = table.spec
                s = spec.slice("righthand")
                edges = np.concatenate([spec.skeleton_index, spec.outline_index])
                edges = edges[((edges >= s.start) & (edges < s.stop)).all(1)] - s.start
                names = [n.removeprefix("right_") for n in spec.names[s]]
                report.written.append(P.plot_gestures(g.centres, g.counts, g.shapes, g.labels, names, edges,
                                                      out_dir / "gestures.png"))
    if "blur" in which:
        blur = face_blurriness(table, image_dir, size=blur_size, workers=workers, progress=progress)
        report.skipped.extend(blur.skipped)
        logv = blur.log10
        finite = np.isfinite(logv)
        report.stats["blur"] = {
            "definition": f"face box cropped, grey, resized to {blur_size}x{blur_size}; log10 of the variance "
                          "of its 3x3 Laplacian; faces with face_valid and a box",
            "log10_laplacian_variance": summarize(logv[finite]),
            "flat_faces": int((~finite).sum()),
            "faces_outside_image": blur.outside,
            "skipped_images": [s.__dict__ for s in blur.skipped],
        }
        rows = [(int(table.ann_id[r]), int(table.image_id[r]), f"{v:.6g}", f"{lv:.6g}")
                for r, v, lv in zip(blur.rows, blur.variance, logv)]
        put("face_blur.csv", _csv_bytes(["ann_id", "image_id", "laplacian_variance", "log10"], rows))
        if plots:
            ex = blur_examples(table, Path(image_dir), blur)
            report.written.append(P.plot_blur(logv, out_dir / "blur.png", ex, size=blur_size))
    report.stats["notes"] = report.notes
    report.written.insert(0, write_json_atomic(out_dir / "stats.json", report.stats))
    return report
