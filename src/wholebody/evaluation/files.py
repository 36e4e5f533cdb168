"""Evaluating a ground-truth file and a results file, optionally on two processes.

With ``jobs >= 2`` a second process (started with ``spawn``: no fork of a threaded parent) reads
the ground truth while this one reads the results, then evaluates the two heaviest parts
(wholebody, face) while this one evaluates the others. Reading JSON is what costs most (every
number becomes a Python float before it becomes an array), so this nearly halves the time of a
val-sized evaluation on two cores. The numbers are the same as with ``jobs=1``: each part's
evaluation is independent and deterministic.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor

from ..keypoints import COCO_WHOLEBODY, EVAL_PARTS, KeypointSpec
from .io import Detections, EvalInputError, GroundTruth, bind_results, load_ground_truth, read_json, read_rows
from .wholebody import PartEvaluation, Stats, _check_parts, evaluate_part

#: parts handed to the second process (about half of the work of the six)
_SECOND_PROCESS_PARTS = ("wholebody", "face")
_WORKER_GT: dict[str, GroundTruth] = {}


def _worker_load(path: str, spec: KeypointSpec) -> GroundTruth:
    gt = load_ground_truth(path, spec)
    _WORKER_GT[path] = gt
    return gt


def _worker_evaluate(path: str, det: Detections, parts: tuple[str, ...], spec: KeypointSpec) -> dict:
    gt = _WORKER_GT[path]
    return {p: evaluate_part(gt, det, p, spec) for p in parts}


def load_and_evaluate(
    gt_path: str | os.PathLike,
    results_path: str | os.PathLike,
    parts: Iterable[str] = EVAL_PARTS,
    jobs: int = 1,
    spec: KeypointSpec = COCO_WHOLEBODY,
) -> tuple[GroundTruth, Detections, dict[str, PartEvaluation]]:
    """Read both files and evaluate ``parts``: ``(ground truth, detections, {part: evaluation})``.

    Raises:
        EvalInputError: for unreadable or invalid input (the ground truth is reported first).
    """
    parts = _check_parts(parts)
    gt_path, results_path = str(gt_path), str(results_path)
    if jobs >= 2:
        try:
            pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        except (OSError, ValueError, NotImplementedError):
            pool = None
        if pool is not None:
            with pool:
                return _two_processes(pool, gt_path, results_path, parts, spec)
    gt = load_ground_truth(gt_path, spec)
    det = bind_results(read_rows(read_json(results_path), source=results_path, parts=parts, spec=spec), gt)
    return gt, det, {p: evaluate_part(gt, det, p, spec) for p in parts}


def _two_processes(
    pool: ProcessPoolExecutor, gt_path: str, results_path: str, parts: tuple[str, ...], spec: KeypointSpec
) -> tuple[GroundTruth, Detections, dict[str, PartEvaluation]]:
    gt_future = pool.submit(_worker_load, gt_path, spec)
    raw = error = None
    try:
        raw = read_rows(read_json(results_path), source=results_path, parts=parts, spec=spec)
    except EvalInputError as e:
        error = e
    gt = gt_future.result()  # a ground-truth error is raised first, as in one process
    if error is not None:
        raise error
    det = bind_results(raw, gt)
    theirs = tuple(p for p in parts if p in _SECOND_PROCESS_PARTS)
    ours = tuple(p for p in parts if p not in theirs)
    if not ours:  # keep both processes busy
        ours, theirs = theirs[:1], theirs[1:]
    future = pool.submit(_worker_evaluate, gt_path, det, theirs, spec) if theirs else None
    evals = {p: evaluate_part(gt, det, p, spec) for p in ours}
    if future is not None:
        evals.update(future.result())
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
