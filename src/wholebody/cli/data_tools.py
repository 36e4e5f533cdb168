"""``wholebody-data``: the paper's dataset tools on COCO-WholeBody annotation files.

    wholebody-data stats  ANN.json OUT/ [--images DIR] [--only counts scales gestures blur] [--workers N]
    wholebody-data extract ANN.json IMAGES/ OUT/ [--sets face hand] [--size 256] [--padding 1.25] [--workers N]
    wholebody-data crop-metrics OUT/face PRED.json [--out metrics.json]

Expected problems (missing files, a malformed record, an output that exists) print one line
``error: ...`` and exit with status 2; set ``WHOLEBODY_DEBUG=1`` for a traceback.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from collections.abc import Sequence

STAT_CHOICES = ("counts", "scales", "gestures", "blur")


def _integer(lo: int, hi: int):
    """An argparse type: an integer in ``lo..hi`` (argparse's one-line usage error otherwise)."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{v} is out of range (from {lo} to {hi})")
        return v

    return parse


def _padding(text: str) -> float:
    """An argparse type: the crop padding, a finite number in (0, 100] (not nan, inf, 0 or negative)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(v) and 0 < v <= MAX_PADDING):
        raise argparse.ArgumentTypeError(f"{text} is not a crop padding (a number > 0 and <= {MAX_PADDING:g})")
    return v


#: Limits of the numeric options: beyond them a value is a typo (a 10^6-pixel crop side would allocate
#: terabytes, 10^6 workers would start as many processes).
MAX_SIDE = 4096
MAX_WORKERS = 1024
MAX_CLUSTERS = 1000
MAX_PADDING = 100.0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wholebody-data", description="COCO-WholeBody dataset statistics and crop-set extraction.")
    sub = p.add_subparsers(dest="command", required=True, metavar="{stats,extract,crop-metrics}")

    s = sub.add_parser("stats", help="counts, part scales, hand gestures, face blurriness (+ PNG charts)",
                       description="Statistics of one COCO-WholeBody annotation file, written to OUT as stats.json, "
                                   "CSV tables and PNG charts.")
    s.add_argument("annotations", help="COCO-WholeBody annotation file (e.g. coco_wholebody_val_v1.0.json)")
    s.add_argument("out", help="output folder")
    s.add_argument("--images", metavar="DIR", help="folder of the file's images (needed for face blurriness)")
    s.add_argument("--only", nargs="+", choices=STAT_CHOICES, default=list(STAT_CHOICES), metavar="STAT",
                   help=f"statistics to compute, of {', '.join(STAT_CHOICES)} (default: all)")
    s.add_argument("--clusters", type=_integer(1, MAX_CLUSTERS), default=3, help="k of the hand-gesture k-means (default 3)")
    s.add_argument("--seed", type=_integer(0, 2**63 - 1), default=0, help="k-means seed (default 0)")
    s.add_argument("--blur-size", type=_integer(8, MAX_SIDE), default=112,
                   help="side faces are resized to for blurriness (default 112)")
    s.add_argument("--no-plots", action="store_true", help="write numbers and tables only")

    e = sub.add_parser("extract", help="cut the WholeBody-Face / WholeBody-Hand crop sets",
                       description="Square crops of every valid face and hand, with COCO-style annotation files "
                                   "in crop pixels (OUT/face, OUT/hand).")
    e.add_argument("annotations", help="COCO-WholeBody annotation file")
    e.add_argument("images", help="folder of the file's images")
    e.add_argument("out", help="output folder")
    e.add_argument("--sets", nargs="+", choices=("face", "hand"), default=["face", "hand"], help="sets to extract (default both)")
    e.add_argument("--size", type=_integer(1, MAX_SIDE), default=256, help="crop side in pixels (default 256)")
    e.add_argument("--padding", type=_padding, default=1.25, help="crop side / longer side of the part box (default 1.25)")
    e.add_argument("--mirror-left-hands", action="store_true", help="mirror left-hand crops to look like right hands")
    e.add_argument("--jpeg-quality", type=_integer(0, 100), default=95, help="JPEG quality of the crops (default 95)")

    m = sub.add_parser("crop-metrics", help="EPE / NME of predictions on an extracted face or hand set",
                       description="Score COCO-style result rows ({image_id, keypoints}) in crop px against an "
                                   "extracted set (OUT/face or OUT/hand).")
    m.add_argument("set", help="extracted set folder (OUT/face, OUT/hand) or its annotations.json")
    m.add_argument("predictions", help="results json: a list of {image_id, keypoints} rows, one per crop")
    m.add_argument("--out", help="also write the metrics to this json file")
    m.add_argument("--overwrite", action="store_true", help="replace --out if it exists")

    for q in (s, e):
        q.add_argument("--workers", type=_integer(0, MAX_WORKERS), default=0,
                       help="processes reading images (default 0: this process)")
        q.add_argument("--overwrite", action="store_true", help="replace existing outputs")
        q.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _print_skipped(skipped) -> None:
    if skipped:
        print(f"\n{len(skipped)} image(s) skipped:", file=sys.stderr)
        for s in skipped:
            print(f"  {s.file}: {s.reason}", file=sys.stderr)


def _stats(a: argparse.Namespace) -> int:
    from wholebody.datatools.report import dataset_statistics

    rep = dataset_statistics(a.annotations, a.out, image_dir=a.images, which=tuple(a.only), clusters=a.clusters,
                             seed=a.seed, blur_size=a.blur_size, workers=a.workers, plots=not a.no_plots,
                             overwrite=a.overwrite, progress=False if a.quiet else None)
    st = rep.stats
    if "counts" in st and "counts" in a.only:
        c = st["counts"]
        print(f"{c['images']:,} images, {c['persons']:,} persons ({c['crowd']:,} crowd); boxes: "
              f"{c['person_boxes']:,} person, {c['parts']['face']['boxes']:,} face, {c['parts']['hand']['boxes']:,} hand; "
              f"{c['total_keypoints']:,} labelled keypoints")
    if "scales" in st and "scales" in a.only:
        meds = ", ".join(f"{p} {v['median']:.1f}" for p, v in st["scales"]["parts"].items() if v["median"] is not None)
        print(f"median average keypoint distance (px): {meds}")
    if "gestures" in st and "gestures" in a.only:
        g = st["gestures"]
        print(f"hand gestures: {g['hands_clustered']:,} hands -> " + ", ".join(f"{100 * f:.0f}%" for f in g["fractions"]))
    if "blur" in st and "blur" in a.only:
        b = st["blur"]["log10_laplacian_variance"]
        if b["count"]:
            print(f"face blurriness: {b['count']:,} faces, median log10 Laplacian variance {b['median']:.2f}")
    for n in rep.notes:
        print(f"note: {n}")
    print("wrote: " + ", ".join(str(p) for p in rep.written))
    _print_skipped(rep.skipped)
    return 0


def _extract(a: argparse.Namespace) -> int:
    from wholebody.datatools.annotations import load_wholebody
    from wholebody.datatools.extract import extract_sets

    table = load_wholebody(a.annotations)
    rep = extract_sets(table, a.images, a.out, sets=tuple(a.sets), size=a.size, padding=a.padding,
                       mirror_left_hands=a.mirror_left_hands, quality=a.jpeg_quality, workers=a.workers,
                       overwrite=a.overwrite, progress=False if a.quiet else None)
    for name, s in rep.sets.items():
        parts = ", ".join(f"{k} {v:,}" for k, v in s.by_part.items())
        extra = f"; {s.skipped_crops:,} left out with their images" if s.skipped_crops else ""
        print(f"{name}: {s.crops:,} crops ({parts}){extra} -> {s.annotation_file}")
    _print_skipped(rep.skipped)
    return 0


def _crop_metrics(a: argparse.Namespace) -> int:
    from wholebody.datatools.crop_eval import evaluate_crops
    from wholebody.io_utils import write_json_atomic

    if a.out and os.path.exists(a.out) and not a.overwrite:
        raise FileExistsError(f"{a.out} exists; pass --overwrite to replace it")
    res = evaluate_crops(a.set, a.predictions)
    print(f"{res['set']}: {res['crops']:,} crops, {res['keypoints']:,} keypoints: EPE {res['EPE']:.4f} px, "
          f"NME {res['NME']:.5f} ({res['NME_normaliser']})")
    if a.out:
        write_json_atomic(a.out, res)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from wholebody.datatools.annotations import AnnotationFormatError

    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return {"stats": _stats, "extract": _extract, "crop-metrics": _crop_metrics}[args.command](args)
    except (AnnotationFormatError, OSError, ValueError) as err:  # (OSError: an unwritable or odd output folder)
        if os.environ.get("WHOLEBODY_DEBUG"):
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
