"""``wholebody-eval``: COCO-WholeBody keypoint evaluation of a results file.

Kept light on purpose: only numpy, orjson and the evaluator are imported to evaluate; matplotlib
only with ``--plots``; never torch, Lightning or pycocotools.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from collections.abc import Mapping, Sequence

# The evaluation uses no BLAS: keep numpy's BLAS from starting a thread pool, so that the process
# stays single-threaded and can fork its helper process (see wholebody.evaluation.files).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

# after the settings above: these import numpy
from wholebody.evaluation.table import format_table, format_value  # noqa: E402
from wholebody.keypoints import EVAL_PARTS  # noqa: E402

DESCRIPTION = """\
Evaluate COCO-WholeBody keypoint results against ground truth with the official protocol
(OKS AP/AR per part, exactly as xtcocotools' COCOeval called by mmpose, 10x faster).

RESULTS is a JSON list of rows {"image_id", "category_id": 1, "keypoints": [17x3], "foot_kpts": [6x3],
"face_kpts": [68x3], "lefthand_kpts": [21x3], "righthand_kpts": [21x3], "score"}, optionally with
"foot_score", "face_score", "lefthand_score", "righthand_score", "wholebody_score" (else "score" ranks)
and part boxes "face_box"/"lefthand_box"/"righthand_box" (xywh) with "<box>_score" for part-box AP.
An empty list [] is a valid results file: it evaluates to zeros.

Prints a table (rows body, foot, face, lefthand, righthand, wholebody; columns AP, AP50, AP75, APm, APl,
AR, AR50, AR75, ARm, ARl); -1 in JSON (n/a in the table) means no ground truth in that size range.
Bad input exits with status 2 and a one-line message naming the file and record."""


def _parts(text: str) -> tuple[str, ...]:
    parts = tuple(p.strip() for p in text.split(",") if p.strip())
    bad = [p for p in parts if p not in EVAL_PARTS]
    if bad or not parts:
        raise argparse.ArgumentTypeError(
            f"unknown part(s) {bad or text!r}; choose from {','.join(EVAL_PARTS)}"
        )
    return parts


def _jobs(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return max(1, int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of processes or 'auto', got {text!r}") from None


def auto_jobs() -> int:
    """2 when this machine has a second core sitting idle, else 1."""
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:
        return 1
    return 2 if cores >= 2 and load <= cores - 1.5 else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="wholebody-eval", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("gt", metavar="GT.json", help="COCO-WholeBody annotation file")
    p.add_argument("results", metavar="RESULTS.json", help="results file (JSON list of rows; [] is valid)")
    p.add_argument("--out", metavar="STATS.json", help='write {"body": {"AP": ...}, ...} here (atomically)')
    p.add_argument(
        "--parts",
        type=_parts,
        default=EVAL_PARTS,
        metavar="P1,P2",
        help=f"parts to evaluate (default: {','.join(EVAL_PARTS)})",
    )
    p.add_argument(
        "--plots", metavar="DIR", help="write PNG charts (PR curves, error breakdown, AP by size) here"
    )
    p.add_argument(
        "--analyze",
        action="store_true",
        help="also print AP by person size and the keypoint error diagnosis (jitter/inversion/swap/miss)",
    )
    p.add_argument(
        "--details",
        metavar="DETAILS.json",
        help="write everything computed (stats, part-box AP, sizes, diagnosis) to this JSON file",
    )
    p.add_argument("--no-boxes", action="store_true", help="skip part-box AP even if the rows carry boxes")
    p.add_argument(
        "-j",
        "--jobs",
        type=_jobs,
        default="auto",
        metavar="N",
        help="processes: 2 reads the two files and evaluates the parts in parallel; auto (default) uses 2 "
        "when a second core is idle (1-minute load average), else 1. The results are identical.",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    return p


def _size_table(sizes: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    labels = list(next(iter(sizes.values())))
    lines = [f"{'AP by size':<10}" + "".join(f"{lbl:>8}" for lbl in labels)]
    for part, row in sizes.items():
        lines.append(f"{part:<10}" + "".join(f"  {format_value(row[lbl]['AP'])}" for lbl in labels))
    lines.append(f"{'persons':<10}" + "".join(f"{lbl:>8}" for lbl in labels))
    for part, row in sizes.items():
        lines.append(f"{part:<10}" + "".join(f"{int(row[lbl]['persons']):>8}" for lbl in labels))
    return "\n".join(lines)


def _diagnosis_table(diag: Mapping[str, Mapping]) -> str:
    classes = ("good", "jitter", "inversion", "swap", "miss")
    gains = ("jitter", "inversion", "swap", "miss")
    head = (
        f"{'errors':<10}"
        + "".join(f"{c:>10}" for c in classes)
        + "   |"
        + "".join(f"{'+' + g:>11}" for g in gains)
    )
    lines = [head]
    for part, d in diag.items():
        fr = d["fractions"]
        lines.append(
            f"{part:<10}"
            + "".join(f"{100 * fr[c]:9.1f}%" for c in classes)
            + "   |"
            + "".join(f"{d['AP_gain'][g]:11.3f}" for g in gains)
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from wholebody.evaluation.engine import BOX_STAT_NAMES, STAT_NAMES
    from wholebody.evaluation.files import load_and_evaluate
    from wholebody.evaluation.io import EvalInputError, write_json_atomic

    t0 = time.perf_counter()
    say = (lambda *a: None) if args.quiet else print
    try:
        jobs = auto_jobs() if args.jobs == "auto" else args.jobs
        gt, det, evals = load_and_evaluate(
            args.gt, args.results, args.parts, jobs=jobs, boxes=not args.no_boxes
        )
    except EvalInputError as e:
        print(f"wholebody-eval: error: {e}", file=sys.stderr)
        return 2
    stats = {p: e.stats for p, e in evals.items()}
    elapsed = time.perf_counter() - t0
    say(f"{len(det)} results, {len(gt.image_ids)} images, {gt.num_annotations} annotations ({elapsed:.2f} s)")
    say(format_table(stats, STAT_NAMES))

    from wholebody.evaluation.report import build_report

    analyze = bool(args.analyze or args.plots or args.details)
    report = build_report(gt, det, args.parts, evaluations=evals, boxes=not args.no_boxes, analyze=analyze)
    details = report.details()
    if report.boxes:
        say("\npart boxes (bbox AP, IoU)")
        say(format_table(report.boxes, BOX_STAT_NAMES, first="box"))
    if args.analyze:
        say(
            "\nsizes: medium/large = COCO [32², 96²] / [96², ∞); M/L/XL/XX = [32², 64²] / [64², 96²] / "
            "[96², 128²] / [128², ∞) px²"
        )
        say(_size_table(report.sizes))
        if report.diagnosis:
            say("\nkeypoint errors of matched detections, and AP gained when each type is corrected")
            say(_diagnosis_table(details["diagnosis"]))
    try:
        if args.out:
            write_json_atomic(args.out, stats)
        if args.details:
            write_json_atomic(args.details, details)
        if args.plots:
            for path in report.write_plots(args.plots):
                say(f"wrote {path}")
    except OSError as e:
        print(f"wholebody-eval: error: cannot write output: {e}", file=sys.stderr)
        return 1
    return 0


def _size(path: str) -> str:
    from wholebody.cocowb import size_text

    try:
        return size_text(os.path.getsize(path))
    except OSError:
        return "size unknown"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Millions of JSON objects and no reference cycles: cyclic garbage collection would only re-scan
    # them (the library pauses it while reading; for the whole command it stays off).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return run(args)
    except BrokenPipeError:  # e.g. piped into head: stop quietly
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (no flush error at exit)
        return 1
    except KeyboardInterrupt:  # Ctrl-C: nothing was written (outputs are atomic); say so, no traceback
        print("interrupted", file=sys.stderr)
        return 130
    except MemoryError:  # past reading (which names the file itself): the evaluation's arrays
        print(f"wholebody-eval: error: out of memory evaluating {args.results} ({_size(args.results)}) against "
              f"{args.gt} ({_size(args.gt)}); free memory, or evaluate fewer parts (--parts) or images",
              file=sys.stderr)
        return 1
    finally:
        if gc_was_enabled:
            gc.enable()


if __name__ == "__main__":
    sys.exit(main())
