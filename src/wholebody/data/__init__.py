"""COCO-WholeBody data: annotation loading and validation, top-down samples, augmentation, the
synthetic set, and the Lightning datamodule. See ``docs/data.md``.

Names are imported on first use, so ``import wholebody.data.coco`` stays light (no torch, no Lightning).
"""

from __future__ import annotations

from wholebody._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "coco": ("AnnotationError", "AnnotationSet", "ImageInfo", "LoadStats", "PersonRecord", "load_coco_wholebody",
             "load_detections"),
    "dataset": ("ImageReadError", "TopDownDataset", "crop_boxes_to_image", "crop_to_image",
                "read_image", "seed_worker"),
    "transforms": ("AugmentConfig", "CropParams", "as_photometric", "default_photometric", "sample_crop"),
    "synthetic": ("SynthConfig", "generate_synthetic", "render_image"),
    "datamodule": ("MissingImagesError", "WholeBodyDataModule", "check_image_files"),
})
