"""Person detector glue: torchvision's Faster R-CNN (the detector the ZoomNet paper uses), weights
from a local file only. Nothing is ever downloaded: the network is built with ``weights=None,
weights_backbone=None`` and loaded from ``weights`` (a torchvision COCO checkpoint such as
``fasterrcnn_resnet50_fpn_coco-258fb6c6.pth``, fetched once by the user, or a torchvision
reference-training checkpoint holding ``{"model": state_dict}``).

    det = PersonDetector("fasterrcnn_resnet50_fpn_coco-258fb6c6.pth", score_thr=0.5)
    boxes, scores = det(image_rgb)          # (N, 4) xyxy image px, (N,) -- COCO label 1 (person) only
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from wholebody.inference.checkpoint import InferenceError
from wholebody.inference.estimator import resolve_device
from wholebody.models.checkpoint import state_dict_mismatch

ARCHS = (
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_resnet50_fpn_v2",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "fasterrcnn_mobilenet_v3_large_320_fpn",
)
PERSON_LABEL = 1  # COCO category id of "person" in torchvision's 91-class layout

NO_WEIGHTS_HELP = (
    "no person detector weights: set detector.weights=/path/to/fasterrcnn_resnet50_fpn_coco-258fb6c6.pth "
    "(torchvision's COCO Faster R-CNN; nothing is downloaded at run time), or give the person boxes: "
    "boxes=dets.json (COCO detection results), boxes=annotations.json (the ground-truth boxes of a "
    "COCO-WholeBody file) or boxes=full (each image is one person)"
)


class DetectorError(InferenceError):
    """Missing or unusable detector weights, or an unknown architecture."""


def _state_dict(obj: object, path: Path) -> Mapping[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors:
            return tensors
    raise DetectorError(f"detector weights {path}: holds no state dict (expected a torchvision detection checkpoint)")


class PersonDetector:
    """torchvision Faster R-CNN restricted to persons.

    Args:
        weights: local file with the detector's weights; required unless ``random_weights``.
        arch: one of :data:`ARCHS` (default: ResNet-50 FPN, the paper's).
        score_thr: keep persons scoring at least this.
        nms_thr: IoU of torchvision's per-class non-maximum suppression.
        min_size / max_size: torchvision's resizing of the image's shorter / longer side.
        max_persons: detections kept per image (before the person filter).
        device: ``cpu``, ``cuda`` or ``auto``.
        num_classes: classes of the weights (91: torchvision's COCO layout); ``person_label`` the person's.
        random_weights: build an untrained detector (tests, timing) instead of loading ``weights``.
    """

    def __init__(
        self,
        weights: str | Path | None = None,
        arch: str = "fasterrcnn_resnet50_fpn",
        score_thr: float = 0.5,
        nms_thr: float = 0.5,
        min_size: int = 800,
        max_size: int = 1333,
        max_persons: int = 100,
        device: str = "cpu",
        num_classes: int = 91,
        person_label: int = PERSON_LABEL,
        random_weights: bool = False,
    ) -> None:
        if arch not in ARCHS:
            raise DetectorError(f"detector.arch={arch!r} is not one of {list(ARCHS)}")
        if weights is None and not random_weights:
            raise DetectorError(NO_WEIGHTS_HELP)
        import torchvision.models.detection as tvd

        self.arch = arch
        self.score_thr = float(score_thr)
        self.person_label = int(person_label)
        self.device = resolve_device(device)
        self.model = getattr(tvd, arch)(
            weights=None, weights_backbone=None, num_classes=num_classes, min_size=min_size, max_size=max_size,
            box_score_thresh=min(self.score_thr, 0.05), box_nms_thresh=nms_thr, box_detections_per_img=max_persons,
        )
        self.weights = None if weights is None else Path(weights)
        if self.weights is not None:
            self._load(self.weights)
        self.model.eval().to(self.device)

    def _load(self, path: Path) -> None:
        if not path.is_file():
            raise DetectorError(f"detector weights {path} do not exist. {NO_WEIGHTS_HELP.split(': ', 1)[1]}")
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DetectorError(f"detector weights {path}: not a readable checkpoint ({first})") from None
        sd = _state_dict(obj, path)
        missing, unexpected, bad = state_dict_mismatch(self.model.state_dict(), sd)
        if missing or unexpected or bad:
            raise DetectorError(
                f"detector weights {path} do not fit {self.arch} ({len(missing)} missing, {len(unexpected)} "
                f"unexpected, {len(bad)} of another shape, e.g. {(missing + unexpected + bad)[:2]}): "
                "another architecture (detector.arch) or number of classes?"
            )
        self.model.load_state_dict(sd, strict=True)

    @torch.no_grad()
    def detect_many(self, images: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Persons in (H, W, 3) uint8 RGB images: per image (N, 4) xyxy image px and (N,) scores, best first."""
        if not images:
            return []
        tensors = [torch.from_numpy(np.ascontiguousarray(im)).permute(2, 0, 1).to(self.device, torch.float32) / 255.0
                   for im in images]
        out = []
        for det in self.model(tensors):
            keep = (det["labels"] == self.person_label) & (det["scores"] >= self.score_thr)
            scores = det["scores"][keep].double().cpu().numpy()
            boxes = det["boxes"][keep].double().cpu().numpy().reshape(-1, 4)
            order = np.argsort(-scores, kind="stable")
            out.append((boxes[order], scores[order]))
        return out

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Persons in one (H, W, 3) uint8 RGB image: (N, 4) xyxy image px, (N,) scores."""
        return self.detect_many([image])[0]
