"""COCO-WholeBody data: annotation loading and validation, top-down samples, augmentation, the
synthetic set, and the Lightning datamodule. See ``docs/data.md``.

Names are imported on first use, so ``import wholebody.data.coco`` stays light (no torch, no Lightning).
"""

from __future__ import annotations

import importlib

_HOME = {
    "coco": ("AnnotationError", "AnnotationSet", "ImageInfo", "LoadStats", "PersonRecord", "load_coco_wholebody",
             "load_detections"),
    "dataset": ("BodyTargetConfig", "ImageReadError", "TopDownDataset", "crop_boxes_to_image", "crop_to_image",
                "read_image", "seed_worker"),
    "transforms": ("AugmentConfig", "CropParams", "as_photometric", "default_photometric", "sample_crop"),
    "synthetic": ("SynthConfig", "generate_synthetic", "render_image"),
    "datamodule": ("MissingImagesError", "WholeBodyDataModule", "check_image_files"),
}
_WHERE = {name: module for module, names in _HOME.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"wholebody.data.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'wholebody.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
