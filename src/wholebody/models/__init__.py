"""Networks, losses and output decoding.

Every network takes ``images`` (B, 3, H, W) RGB uint8 or float in 0..255 and normalises internally;
all share one interface: ``net(images, part_boxes=None, part_valid=None) -> outputs``,
``net.decode(outputs, refine) -> {keypoints (B,133,3), part_boxes (B,3,4), part_box_scores (B,3)}`` in
crop px, ``net.predict(images, flip_test, refine, outputs=None)``; losses are
``loss(outputs, batch) -> {"total", <part>: ...}``.
"""

from wholebody.models.baselines import HRNetPose
from wholebody.models.checkpoint import LoadReport, load_stage_checkpoints
from wholebody.models.cost import count_macs, count_params
from wholebody.models.losses import HeatmapLoss, ZoomNetLoss
from wholebody.models.postprocess import result_rows, to_image
from wholebody.models.zoomnet import ZoomNet

__all__ = [
    "HRNetPose",
    "HeatmapLoss",
    "LoadReport",
    "ZoomNet",
    "ZoomNetLoss",
    "count_macs",
    "count_params",
    "load_stage_checkpoints",
    "result_rows",
    "to_image",
]
