"""Evaluating a ground-truth file and a results file, optionally on two processes.

With ``jobs >= 2`` a second process reads the ground truth while this one reads the results; then
another evaluates the two heaviest parts (wholebody, face) while this one evaluates the others.
Reading JSON is what costs most (every number becomes a Python float before it becomes an array),
so on two free cores this takes a third off a val-sized evaluation. The numbers are the same as
with ``jobs=1``: each part's evaluation is independent and deterministic.

Processes are forked when this process has a single thread (Linux: nothing to copy, nothing
locked), spawned otherwise.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

from ..keypoints import COCO_WHOLEBODY, EVAL_PARTS, KeypointSpec
from .groundtruth import GroundTruth, load_ground_truth
from .part import PartEvaluation, Stats, check_parts, evaluate_part
from .results import Detections, bind_results, read_results_file

#: parts handed to the second process (about half of the work of the six)
_SECOND_PROCESS_PARTS = ("wholebody", "face")


def _single_threaded() -> bool:
    """Whether this process has one OS thread (then fork is safe); False when it cannot tell."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Threads:"):
                    return int(line.split()[1]) == 1
    except (OSError, ValueError):
        pass
    return False


def _context() -> Any:
    method = "fork" if sys.platform.startswith("linux") and _single_threaded() else "spawn"
    return multiprocessing.get_context(method)


def _child(conn: Any, fn: Callable, args: tuple) -> None:
    try:
        result = ("ok", fn(*args))
    except BaseException as e:  # sent back and raised in the parent
        result = ("error", e)
    conn.send(result)
    conn.close()


class _Job:
    """``fn(*args)`` in another process; :meth:`result` returns its value or raises its exception."""

    def __init__(self, ctx: Any, fn: Callable, *args: Any) -> None:
        self._conn, child_conn = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(target=_child, args=(child_conn, fn, args), daemon=True)
        self._proc.start()
        child_conn.close()

    def result(self) -> Any:
        try:
            status, value = self._conn.recv()
        except EOFError:
            raise RuntimeError("the evaluation's second process died") from None
        finally:
            self._conn.close()
            self._proc.join()
        if status == "error":
            raise value
        return value


def _evaluate_parts(gt: GroundTruth, det: Detections, parts: tuple[str, ...], spec: KeypointSpec) -> dict:
    return {p: evaluate_part(gt, det, p, spec) for p in parts}


def load_and_evaluate(
    gt_path: str | os.PathLike,
    results_path: str | os.PathLike,
    parts: Iterable[str] = EVAL_PARTS,
    jobs: int = 1,
    spec: KeypointSpec = COCO_WHOLEBODY,
    boxes: bool = True,
) -> tuple[GroundTruth, Detections, dict[str, PartEvaluation]]:
    """Read both files and evaluate ``parts``: ``(ground truth, detections, {part: evaluation})``.

    ``boxes=False`` skips reading the rows' part boxes (when no part-box AP is wanted).

    Raises:
        EvalInputError: for unreadable or invalid input (the ground truth is reported first).
    """
    parts = check_parts(parts)
    gt_path, results_path = str(gt_path), str(results_path)
    if jobs < 2:
        gt = load_ground_truth(gt_path, spec)
        raw = read_results_file(results_path, parts=parts, boxes=boxes, spec=spec)
        det = bind_results(raw, gt)
        return gt, det, _evaluate_parts(gt, det, parts, spec)

    ctx = _context()
    gt_job = _Job(ctx, load_ground_truth, gt_path, spec)
    raw = error = None
    try:
        raw = read_results_file(results_path, parts=parts, boxes=boxes, spec=spec)
    except Exception as e:  # report a ground-truth error first, as in one process
        error = e
    gt = gt_job.result()
    if error is not None:
        raise error
    det = bind_results(raw, gt)
    theirs = tuple(p for p in parts if p in _SECOND_PROCESS_PARTS)
    ours = tuple(p for p in parts if p not in theirs)
    if not ours:  # keep both processes busy
        ours, theirs = theirs[:1], theirs[1:]
    job = _Job(ctx, _evaluate_parts, gt, det, theirs, spec) if theirs else None
    evals = _evaluate_parts(gt, det, ours, spec)
    if job is not None:
        evals.update(job.result())
    return gt, det, {p: evals[p] for p in parts}


def evaluate_files(
    gt_path: str | os.PathLike,
    results_path: str | os.PathLike,
    parts: Iterable[str] = EVAL_PARTS,
    jobs: int = 1,
    spec: KeypointSpec = COCO_WHOLEBODY,
) -> Stats:
    """``{part: {AP, ..., ARl}}`` of a results file against an annotation file (see :func:`load_and_evaluate`)."""
    return {p: e.stats for p, e in load_and_evaluate(gt_path, results_path, parts, jobs, spec)[2].items()}
