"""The paper's dataset tools: statistics of COCO-WholeBody (counts, part scales, face blurriness,
hand gestures, with PNG charts) and the WholeBody-Face / WholeBody-Hand crop sets.

Command line: ``wholebody-data stats``, ``extract`` and ``crop-metrics`` (see docs/datatools.md).
"""

from wholebody.datatools.annotations import (
    AnnotationFormatError,
    ImageInfo,
    WholeBodyTable,
    load_wholebody,
    parse_wholebody,
)
from wholebody.datatools.blur import FaceBlur, face_blurriness, face_sharpness, laplacian_variance
from wholebody.datatools.crop_eval import evaluate_crops
from wholebody.datatools.extract import (
    CropSet,
    ExtractReport,
    OutputExistsError,
    crop_matrices,
    extract_sets,
    load_crop_set,
    select_parts,
)
from wholebody.datatools.images import SkippedImage
from wholebody.datatools.report import STATISTICS, StatsReport, dataset_statistics
from wholebody.datatools.stats import (
    GestureClusters,
    count_annotations,
    hand_gestures,
    kmeans,
    mean_pairwise_distance,
    normalize_hands,
    part_scales,
)

__all__ = [
    "STATISTICS",
    "AnnotationFormatError",
    "CropSet",
    "ExtractReport",
    "FaceBlur",
    "GestureClusters",
    "ImageInfo",
    "OutputExistsError",
    "SkippedImage",
    "StatsReport",
    "WholeBodyTable",
    "count_annotations",
    "crop_matrices",
    "dataset_statistics",
    "evaluate_crops",
    "extract_sets",
    "face_blurriness",
    "face_sharpness",
    "hand_gestures",
    "kmeans",
    "laplacian_variance",
    "load_crop_set",
    "load_wholebody",
    "mean_pairwise_distance",
    "normalize_hands",
    "parse_wholebody",
    "part_scales",
    "select_parts",
]
