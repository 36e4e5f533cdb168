"""Exact, fast COCO-WholeBody evaluation.

The six OKS evaluations of the official protocol (body, foot, face, lefthand, righthand,
wholebody; xtcocotools' COCOeval as mmpose calls it), reproduced exactly and vectorised with
numpy, plus part-box AP, AP by person size, a keypoint error diagnosis, crop metrics (NME/EPE)
and charts. Importing this package loads numpy only (no torch, matplotlib or pycocotools).

Typical use::

    from wholebody.evaluation import WholeBodyEvaluator
    ev = WholeBodyEvaluator("coco_wholebody_val_v1.0.json")
    ev.process(rows)        # COCO-WholeBody result dicts, any number of calls
    stats = ev.evaluate()   # {"body": {"AP": ..., "AP50": ..., ...}, ..., "wholebody": {...}}

or ``evaluate_files(gt_path, results_path)``; from the shell, ``wholebody-eval GT RESULTS``.
"""

from .boxes import evaluate_part_boxes
from .crops import epe, face_nme, hand_nme, nme
from .diagnosis import SIZE_RANGES, diagnose, size_breakdown
from .distributed import dedupe_results, gather_results, result_key
from .engine import BOX_STAT_NAMES, STAT_NAMES
from .files import evaluate_files, load_and_evaluate
from .groundtruth import GroundTruth, load_ground_truth
from .io import EvalInputError, write_json_atomic
from .metric_names import metric_dict, metric_name
from .part import PartEvaluation, evaluate_part
from .results import Detections, load_results, parse_results, restrict_images
from .table import format_table
from .wholebody import WholeBodyEvaluator, evaluate

__all__ = [
    "BOX_STAT_NAMES",
    "SIZE_RANGES",
    "STAT_NAMES",
    "Detections",
    "EvalInputError",
    "GroundTruth",
    "PartEvaluation",
    "WholeBodyEvaluator",
    "dedupe_results",
    "diagnose",
    "epe",
    "evaluate",
    "evaluate_files",
    "evaluate_part",
    "evaluate_part_boxes",
    "face_nme",
    "format_table",
    "gather_results",
    "hand_nme",
    "load_and_evaluate",
    "load_ground_truth",
    "load_results",
    "metric_dict",
    "metric_name",
    "nme",
    "parse_results",
    "restrict_images",
    "result_key",
    "size_breakdown",
    "write_json_atomic",
]
