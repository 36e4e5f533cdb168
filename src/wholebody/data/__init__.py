"""COCO-WholeBody data: annotation loading and validation, top-down samples, augmentation, the
synthetic set, and the Lightning datamodule. See ``docs/data.md``.

The datamodule (the only part that needs Lightning) is imported on first use.
"""

from wholebody.data.coco import (
    AnnotationError,
    AnnotationSet,
    ImageInfo,
    LoadStats,
    PersonRecord,
    load_coco_wholebody,
    load_detections,
)
from wholebody.data.dataset import (
    BodyTargetConfig,
    ImageReadError,
    TopDownDataset,
    crop_boxes_to_image,
    crop_to_image,
    read_image,
    seed_worker,
)
from wholebody.data.synthetic import SynthConfig, generate_synthetic, render_image
from wholebody.data.transforms import (
    AugmentConfig,
    CropParams,
    as_photometric,
    default_photometric,
    sample_crop,
)

__all__ = [
    "AnnotationError",
    "AnnotationSet",
    "AugmentConfig",
    "BodyTargetConfig",
    "CropParams",
    "ImageInfo",
    "ImageReadError",
    "LoadStats",
    "MissingImagesError",
    "PersonRecord",
    "SynthConfig",
    "TopDownDataset",
    "WholeBodyDataModule",
    "as_photometric",
    "check_image_files",
    "crop_boxes_to_image",
    "crop_to_image",
    "default_photometric",
    "generate_synthetic",
    "load_coco_wholebody",
    "load_detections",
    "read_image",
    "render_image",
    "sample_crop",
    "seed_worker",
]


_LAZY = {"WholeBodyDataModule", "MissingImagesError", "check_image_files"}


def __getattr__(name: str):
    if name in _LAZY:
        from wholebody.data import datamodule

        return getattr(datamodule, name)
    raise AttributeError(f"module 'wholebody.data' has no attribute {name!r}")
