"""The user-facing COCO-WholeBody keypoint evaluator: :class:`WholeBodyEvaluator` (accumulate result
rows, evaluate the six OKS evaluations, part boxes, sizes and the error diagnosis) and :func:`evaluate`
(a results file or list of rows against ground truth). The per-part protocol is in
:mod:`wholebody.evaluation.part`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ..cocowb import WholeBodyColumns
from ..keypoints import COCO_WHOLEBODY, EVAL_PARTS, KeypointSpec
from . import diagnosis
from .boxes import evaluate_part_boxes
from .groundtruth import GroundTruth, load_ground_truth
from .io import EvalInputError
from .nms import keypoint_extent_area, oks_nms_per_image
from .part import PartEvaluation, Stats, check_parts, evaluate_keypoints, evaluate_part
from .results import Detections, load_results, parse_results, restrict_images


class WholeBodyEvaluator:
    """Accumulates result rows and evaluates them against one ground-truth file.

    Usable from any loop (no Lightning needed)::

        ev = WholeBodyEvaluator("person_keypoints_val.json")
        for batch in loader:
            ev.process(rows_for(batch))  # COCO-WholeBody result dicts
        stats = ev.evaluate()            # {"body": {"AP": ..., ...}, ..., "wholebody": {...}}

    Rows are validated and converted to arrays in :meth:`process` (an error names the row's
    index across all calls and its image_id); the caller's objects are never modified or kept.
    In distributed runs gather and de-duplicate rows first (:mod:`wholebody.evaluation.distributed`).

    OKS-NMS (``nms_thr``; :mod:`wholebody.evaluation.nms`): before anything is evaluated, the rows of
    detected persons are suppressed per image as mmpose's COCO-WholeBody metric does (OKS over the 133
    keypoints, the row's ``crop_area`` as the area, else its keypoints' extent; greedy by
    ``wholebody_score``, else ``score``). A detected person is a row without an ``ann_id`` (>= 0): rows of
    ground-truth persons carry one and are never suppressed nor suppress anything, so with ground-truth
    boxes the option changes nothing. (mmpose applies its NMS to every row, ground-truth boxes included,
    where one pose per labelled person makes it remove two poses only when two labelled persons'
    poses have an OKS above 0.9; here a labelled person's pose always counts.) :class:`Detections`
    passed to :meth:`process` as arrays carry no person keys and are taken as they are.

    Args:
        gt: annotation file path, loaded dict, the reader's columns, or :class:`GroundTruth`.
        parts: parts to evaluate (default all six).
        spec: the keypoint layout.
        nms_thr: OKS-NMS threshold for detected persons (mmpose's 0.9); ``None`` or 0: no NMS.
    """

    def __init__(
        self,
        gt: str | os.PathLike | Mapping | GroundTruth | WholeBodyColumns,
        parts: Iterable[str] = EVAL_PARTS,
        spec: KeypointSpec = COCO_WHOLEBODY,
        nms_thr: float | None = None,
    ) -> None:
        self.spec = spec
        self.parts = check_parts(parts)
        self.gt = load_ground_truth(gt, spec)
        if nms_thr is not None and not 0 <= float(nms_thr) <= 1:
            raise ValueError(f"nms_thr must be in [0, 1] or None (no NMS), got {nms_thr}")
        self.nms_thr = float(nms_thr) if nms_thr else None
        self.reset()

    def reset(self) -> None:
        """Forget every processed row."""
        self._chunks: list[Detections] = []
        self._nms_rows: list[tuple[np.ndarray, np.ndarray]] = []  # per chunk: (candidate, crop area)
        self._kept: Detections | None = None
        self._kept_index = np.zeros(0, np.int64)
        self._count = 0
        self._bbox_area: bool | None = None
        #: rows the last OKS-NMS removed (0 without NMS)
        self.suppressed = 0

    def __len__(self) -> int:
        return self._count

    def process(
        self, predictions: Sequence[Mapping[str, Any]] | Detections, source: str = "<results>"
    ) -> None:
        """Add result rows (COCO-WholeBody result dicts) or already-parsed :class:`Detections`."""
        if isinstance(predictions, Detections):
            det = predictions
        else:
            rows = list(predictions)
            if not rows:
                return
            if self._bbox_area is None and isinstance(rows[0], Mapping):
                first = rows[0].get("bbox")
                self._bbox_area = isinstance(first, (list, tuple)) and len(first) > 0
            det = parse_results(
                rows,
                self.gt,
                source=source,
                offset=self._count,
                parts=self.parts,
                bbox_area=self._bbox_area,
                spec=self.spec,
            )
            if self.nms_thr is not None:
                self._nms_rows.append(_nms_inputs(rows, det, source, self._count))
        if self.nms_thr is not None and isinstance(predictions, Detections):
            self._nms_rows.append((np.zeros(len(det), bool), np.zeros(len(det))))
        self._chunks.append(det)
        self._count += len(det)
        self._kept = None

    @property
    def detections(self) -> Detections:
        """Every processed row as one :class:`Detections` (after OKS-NMS with ``nms_thr``)."""
        if self._kept is not None:
            return self._kept
        det = Detections.concat(self._chunks, self.spec)
        self._chunks = [det] if len(det) else []
        if self.nms_thr is not None and len(det):
            cand = np.concatenate([c for c, _ in self._nms_rows])
            area = np.concatenate([a for _, a in self._nms_rows])
            self._nms_rows = [(cand, area)]
            keep = oks_nms_per_image(det.image_index, det.keypoints, det.scores["wholebody"], area,
                                     self.spec.sigmas_array, self.nms_thr, candidates=cand)
            self.suppressed = int((~keep).sum())
            det = det.subset(np.flatnonzero(keep)) if self.suppressed else det
            self._kept_index = np.flatnonzero(keep)
        else:
            self._kept_index = np.arange(len(det))
        self._kept = det
        return det

    @property
    def kept_index(self) -> np.ndarray:
        """(M,) int64: the indices (in the order rows were processed) of the rows evaluated, i.e. those
        OKS-NMS kept (all of them without NMS); e.g. to write the results file the stats describe."""
        self.detections  # noqa: B018  (computes the NMS when due)
        return self._kept_index

    def _data(self, image_ids: Iterable[int] | None) -> tuple[GroundTruth, Detections]:
        if image_ids is None:
            return self.gt, self.detections
        return restrict_images(self.gt, self.detections, image_ids)

    def evaluate_parts(
        self, parts: Iterable[str] | None = None, image_ids: Iterable[int] | None = None
    ) -> dict[str, PartEvaluation]:
        """Full per-part evaluations (precision/recall arrays, matching) for plots and analyses."""
        gt, det = self._data(image_ids)
        return {p: evaluate_part(gt, det, p, self.spec) for p in check_parts(parts or self.parts)}

    def evaluate(self, image_ids: Iterable[int] | None = None) -> Stats:
        """``{part: {AP, AP50, AP75, APm, APl, AR, AR50, AR75, ARm, ARl}}``; -1 marks a stat with no
        ground truth to measure (e.g. APm when no person is medium-sized). No rows: zeros.

        Args:
            image_ids: evaluate these images only (e.g. those a shortened validation loop covered);
                default every image of the ground truth, so that images without any row count
                as missed persons.
        """
        return {p: e.stats for p, e in self.evaluate_parts(image_ids=image_ids).items()}

    def evaluate_boxes(self) -> Stats:
        """Face / hand box AP of the rows carrying part boxes: ``{part: {AP, AP50, ..., ARl}}``
        (see :mod:`wholebody.evaluation.boxes`); parts without predicted boxes are left out."""
        return evaluate_part_boxes(self.gt, self.detections)

    def size_breakdown(self) -> dict[str, dict[str, dict[str, float]]]:
        """AP/AR per person size (see :func:`wholebody.evaluation.diagnosis.size_breakdown`)."""
        return diagnosis.size_breakdown(self.gt, self.detections, self.parts, self.spec)

    def diagnose(self) -> dict[str, dict]:
        """Keypoint error diagnosis per part as plain dicts (see :mod:`wholebody.evaluation.diagnosis`)."""
        return {p: d.to_dict() for p, d in diagnosis.diagnose(self.gt, self.detections, self.parts, self.spec).items()}


def _nms_inputs(rows: Sequence[Mapping[str, Any]], det: Detections, source: str, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """(candidate (N,) bool: the row has no ``ann_id`` >= 0, crop area (N,) image px^2) of parsed rows."""
    cand = np.ones(len(rows), bool)
    area = np.full(len(rows), np.nan)
    for i, r in enumerate(rows):
        ann_id, crop_area = r.get("ann_id"), r.get("crop_area")
        try:
            cand[i] = ann_id is None or int(ann_id) < 0
            if crop_area is not None:
                area[i] = float(crop_area)
        except (TypeError, ValueError):
            raise EvalInputError(f"{source}: result #{i + offset} (image_id {r.get('image_id')}): 'ann_id' "
                                 f"must be an integer and 'crop_area' a number, got {ann_id!r}, {crop_area!r}") from None
    missing = ~np.isfinite(area)
    if missing.any():
        area[missing] = keypoint_extent_area(det.keypoints[missing])
    return cand, area


def evaluate(
    gt: str | os.PathLike | Mapping | GroundTruth,
    results: str | os.PathLike | list,
    parts: Iterable[str] = EVAL_PARTS,
    spec: KeypointSpec = COCO_WHOLEBODY,
) -> Stats:
    """Evaluate a results file (or list of rows) against ground truth: ``{part: {stat: value}}``."""
    parts = check_parts(parts)
    g = load_ground_truth(gt, spec)
    return evaluate_keypoints(g, load_results(results, g, parts=parts, spec=spec), parts, spec)


__all__ = ["WholeBodyEvaluator", "evaluate"]
