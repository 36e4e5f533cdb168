"""Using a trained network: the estimator (checkpoint or ONNX -> poses in image px), the person
detector, ONNX export and the ``wholebody-predict`` job. See ``docs/inference.md``.

Names are imported on first use, so ``import wholebody.inference`` stays light.
"""

from __future__ import annotations

import importlib

_HOME = {
    "checkpoint": ("CheckpointError", "CheckpointInfo", "InferenceError", "build_net", "load_checkpoint",
                   "load_model_config", "read_checkpoint", "write_checkpoint"),
    "estimator": ("PoseResult", "WholeBodyEstimator", "check_boxes", "person_crops"),
    "detector": ("DetectorError", "PersonDetector"),
    "export": ("CropModel", "OnnxRunner", "compare_with_pytorch", "export_onnx"),
    "io": ("InputError", "discover_inputs"),
    "boxes": ("read_box_file",),
    "pipeline": ("PredictReport", "predict"),
    "quick": ("MemorisedModel", "memorised_checkpoint"),
}
_WHERE = {name: module for module, names in _HOME.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"wholebody.inference.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'wholebody.inference' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
