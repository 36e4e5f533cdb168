"""Heatmap losses with target weights, reported per part.

Targets are encoded on the device of the outputs from the batch with :mod:`wholebody.codecs`:
BodyNet's 38 maps with ``encode_body_targets``, the part heads' maps with ``encode_roi_targets`` in
the frame of the RoIs the network actually used (``outputs["part_boxes"]``). A keypoint that is not
labelled (visibility 0: invisible, or its part invalid), an invalid part box, or a keypoint outside
its RoI has weight 0.

Per-map error ``e[b, k] = w[b, k] * mean_pixels (pred - target)^2`` (``kind="mse"``, HRNet's
convention) or the sum over pixels (``kind="sse"``). A part's loss is
``sum_{b, k in part} e[b, k] / (B * n)`` with ``n`` = the part's channels (mse; ZoomNet) or all
channels (mse; one-stage baselines, so their parts add up to their single loss), and ``/ B`` for sse.
``total = sum_part weight[part] * loss[part]`` (the paper weighs the parts equally).

Both losses return ``{"total", <part>: ...}`` with parts ``body`` (the 23 body+foot keypoints),
``face``, ``lefthand``, ``righthand``, and for ZoomNet ``boxes`` (BodyNet's 15 box-point maps).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from wholebody.codecs import NUM_BODY_KEYPOINTS, encode_body_targets, encode_roi_targets, gaussian_heatmaps
from wholebody.keypoints import BOX_PARTS, COCO_WHOLEBODY, PARTS
from wholebody.models.baselines import part_indices

KINDS = ("mse", "sse")


def map_errors(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, kind: str = "mse") -> torch.Tensor:
    """(B, K, h, w) predictions and targets, (B, K) weights -> (B, K) weighted per-map errors (float32)."""
    d = (pred.float() - target.float()) ** 2
    e = d.mean(dim=(-2, -1)) if kind == "mse" else d.sum(dim=(-2, -1))
    return e * weight.float()


def _stride(images: torch.Tensor, heatmaps: torch.Tensor) -> float:
    """Crop px per heatmap px, the same along both axes."""
    sx = images.shape[-1] / heatmaps.shape[-1]
    sy = images.shape[-2] / heatmaps.shape[-2]
    if abs(sx - sy) > 1e-6:
        raise ValueError(f"heatmaps {tuple(heatmaps.shape[-2:])} do not scale uniformly to images {tuple(images.shape[-2:])}")
    return sx


def _check_kind_weights(kind: str, weights: Mapping[str, float] | None, parts: Sequence[str]) -> dict[str, float]:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    w = {p: 1.0 for p in parts}
    for k, v in dict(weights or {}).items():
        if k not in w:
            raise ValueError(f"loss weight for unknown part {k!r}; parts are {list(parts)}")
        w[k] = float(v)
    return w


class ZoomNetLoss(nn.Module):
    """ZoomNet's loss: BodyNet maps (keypoints + box points) and the three part heads.

    Args:
        body_sigma: Gaussian sigma of BodyNet's targets, heatmap px (paper: 3 at 1/4 of 384x288).
        face_sigma / hand_sigma: sigmas of the part-head targets, RoI heatmap px (at S = 64).
        kind: ``"mse"`` | ``"sse"``.
        weights: part -> weight for ``body``, ``boxes``, ``face``, ``lefthand``, ``righthand`` (default 1).
    ``forward(outputs, batch)``: ZoomNet outputs and a batch with ``image`` (B, 3, H, W), ``keypoints``
    (B, 133, 3) crop px, ``part_boxes`` (B, 3, 4) crop px, ``part_valid`` (B, 3).
    """

    PARTS = ("body", "boxes", "face", "lefthand", "righthand")

    def __init__(
        self,
        body_sigma: float = 3.0,
        face_sigma: float = 2.0,
        hand_sigma: float = 2.0,
        kind: str = "mse",
        weights: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__()
        self.weights = _check_kind_weights(kind, weights, self.PARTS)
        self.kind = kind
        self.body_sigma = float(body_sigma)
        self.sigmas = {"face": float(face_sigma), "lefthand": float(hand_sigma), "righthand": float(hand_sigma)}

    def forward(self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        body = outputs["body_heatmaps"]
        dev = body.device
        b = body.shape[0]
        kpts = batch["keypoints"].to(dev, torch.float32)
        stride = _stride(batch["image"], body)
        target, weight = encode_body_targets(
            kpts[:, :NUM_BODY_KEYPOINTS], batch["part_boxes"].to(dev, torch.float32),
            batch["part_valid"].to(dev), tuple(body.shape[-2:]), stride, self.body_sigma,
        )
        e = map_errors(body, target, weight, self.kind)
        losses = {
            "body": self._reduce(e[:, :NUM_BODY_KEYPOINTS], b),
            "boxes": self._reduce(e[:, NUM_BODY_KEYPOINTS:], b),
        }
        rois = outputs["part_boxes"].detach().to(torch.float32)
        for i, part in enumerate(BOX_PARTS):
            hm = outputs[f"{part}_heatmaps"]
            t, w = encode_roi_targets(kpts[:, COCO_WHOLEBODY.slice(part)], rois[:, i], hm.shape[-1], self.sigmas[part])
            losses[part] = self._reduce(map_errors(hm, t, w, self.kind), b)
        losses["total"] = sum(self.weights[p] * losses[p] for p in self.PARTS)
        return losses

    def _reduce(self, e: torch.Tensor, b: int) -> torch.Tensor:
        return e.sum() / (b * e.shape[1]) if self.kind == "mse" else e.sum() / b


class HeatmapLoss(nn.Module):
    """The one-stage baselines' loss: one weighted heatmap loss over the predicted keypoints,
    reported as its per-part sums (``body`` = body+foot, ``face``, ``lefthand``, ``righthand``, the
    ones the model predicts).

    Args:
        parts: the parts the network predicts (its ``parts``), in any order.
        sigma: Gaussian sigma, heatmap px (2 at 1/4 of 256x192, 3 at 1/4 of 384x288).
        kind: ``"mse"`` | ``"sse"``; weights: part -> weight (default 1).
    """

    def __init__(
        self,
        parts: Sequence[str] = PARTS,
        sigma: float = 3.0,
        kind: str = "mse",
        weights: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__()
        idx = part_indices(parts)
        self.register_buffer("_indices", torch.as_tensor(idx), persistent=False)
        groups: dict[str, list[int]] = {}
        for c, k in enumerate(idx):
            part = COCO_WHOLEBODY.part_of(int(k))
            groups.setdefault("body" if part == "foot" else part, []).append(c)
        self.groups = groups
        self.weights = _check_kind_weights(kind, weights, tuple(groups))
        self.kind = kind
        self.sigma = float(sigma)

    def forward(self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        hm = outputs["heatmaps"]
        if hm.shape[1] != len(self._indices):
            raise ValueError(f"the loss expects {len(self._indices)} heatmaps (its parts), the network gave {hm.shape[1]}")
        kpts = batch["keypoints"].to(hm.device, torch.float32)[:, self._indices]
        stride = _stride(batch["image"], hm)
        target, weight = gaussian_heatmaps(kpts[..., :2] / stride, (kpts[..., 2] > 0).float(), tuple(hm.shape[-2:]), self.sigma)
        e = map_errors(hm, target, weight, self.kind)
        b, k = e.shape
        norm = b * k if self.kind == "mse" else b
        losses = {p: e[:, c].sum() / norm for p, c in self.groups.items()}
        losses["total"] = sum(self.weights[p] * losses[p] for p in self.groups)
        return losses
