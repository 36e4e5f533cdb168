"""Using a trained network: the estimator (checkpoint or ONNX -> poses in image px), the person
detector, ONNX export and the ``wholebody-predict`` job. See ``docs/inference.md``.

Names are imported on first use, so ``import wholebody.inference`` stays light.
"""

from __future__ import annotations

from wholebody._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "checkpoint": ("CheckpointError", "CheckpointInfo", "InferenceError", "build_net", "load_checkpoint",
                   "load_model_config", "read_checkpoint", "write_checkpoint"),
    "estimator": ("PoseResult", "WholeBodyEstimator"),
    "crops": ("check_boxes", "person_crops"),
    "detector": ("DetectorError", "PersonDetector"),
    "export": ("CropModel", "compare_with_pytorch", "export_onnx"),
    "onnx_runner": ("OnnxRunner",),
    "io": ("InputError", "discover_inputs"),
    "boxes": ("read_box_file",),
    "pipeline": ("PredictReport", "predict"),
    "quick": ("MemorisedModel", "memorised_checkpoint"),
})
