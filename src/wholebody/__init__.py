"""wholebody: whole-body (133-keypoint) human pose estimation with ZoomNet on COCO-WholeBody."""

__version__ = "0.1.0"
