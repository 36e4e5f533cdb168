"""ZoomNet's prediction networks: BodyNet and the HRNetV2-style part heads.

* :class:`BodyNet` — HRNet stages on F2 (1/4) and a 1x1 heatmap layer on the highest-resolution
  branch: 38 maps at 1/4 (23 body+foot keypoints, 5 box points for each of face / left hand / right
  hand, ``wholebody.codecs.BODY_CHANNELS``). ``upsample=2`` adds one bilinear x2 + 3x3 conv before
  the heatmap layer (maps at 1/2): an option for small inputs, not the paper's design.
* :class:`PartHead` — the FaceHead / HandHead: an HRNetV2-W18-style network on the two RoI features
  of one part: the F1 RoI (S x S, S = 64) enters the high-resolution branch (through HRNet's
  ``layer1`` bottlenecks, standing where an HRNet's stem output would be), the F2 RoI (S/2 x S/2)
  is projected by a 3x3 conv and added to the second branch right after the first transition. After
  the last stage every branch is bilinearly upsampled to S x S and concatenated (HRNetV2), then
  1x1 conv + BN + ReLU and a 1x1 heatmap layer give K maps at S x S.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from wholebody.models.backbone import (
    BN_MOMENTUM,
    HRNetStages,
    bottleneck_layer,
    conv_bn_relu,
    init_heatmap_layer,
    init_weights,
)


class HeatmapLayer(nn.Module):
    """(B, C, h, w) -> (B, K, u*h, u*w): optional x``upsample`` (bilinear + 3x3 conv-BN-ReLU) then a 1x1 conv."""

    def __init__(self, in_channels: int, num_outputs: int, upsample: int = 1) -> None:
        super().__init__()
        if upsample not in (1, 2):
            raise ValueError(f"upsample must be 1 or 2, got {upsample}")
        self.upsample = upsample
        self.refine = conv_bn_relu(in_channels, in_channels) if upsample > 1 else nn.Identity()
        self.out = nn.Conv2d(in_channels, num_outputs, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample > 1:
            x = F.interpolate(x, scale_factor=float(self.upsample), mode="bilinear", align_corners=False)
            x = self.refine(x)
        return self.out(x)


class BodyNet(nn.Module):
    """HRNet stages 2..4 on F2 -> (B, num_outputs, H/4 * upsample, W/4 * upsample) heatmaps.

    Args:
        in_channels: channels of F2 (256).
        widths / num_modules / num_blocks: the HRNet stage configuration (W32: (32, 64, 128, 256),
            (1, 4, 3), 4).
        num_outputs: 38 for ZoomNet (``BODY_CHANNELS``); 133 or 17 for the one-stage baselines.
        upsample: 1 (paper, maps at 1/4) or 2 (maps at 1/2).
    """

    def __init__(
        self,
        in_channels: int = 256,
        widths: Sequence[int] = (32, 64, 128, 256),
        num_modules: int | Sequence[int] = (1, 4, 3),
        num_blocks: int | Sequence[int] = 4,
        num_outputs: int = 38,
        upsample: int = 1,
    ) -> None:
        super().__init__()
        self.stages = HRNetStages(in_channels, widths, num_modules, num_blocks, multi_scale_output=False)
        self.final = HeatmapLayer(int(widths[0]), num_outputs, upsample)
        self.upsample = upsample
        init_weights(self)
        init_heatmap_layer(self.final.out)

    def forward(self, f2: torch.Tensor) -> torch.Tensor:
        return self.final(self.stages(f2)[0])


class PartHead(nn.Module):
    """HRNetV2-style part head on the two RoI features of a part (FaceHead: K=68, HandHead: K=21).

    Args:
        f1_channels: channels of the F1 RoI (64).
        f2_channels: channels of the F2 RoI (256).
        num_outputs: heatmaps K.
        widths / num_modules / num_blocks: HRNet stages (W18: (18, 36, 72, 144), (1, 4, 3), 4).
        layer1_blocks: bottleneck blocks on the F1 RoI before the stages (HRNet's layer1: 4).
        layer1_planes: their width (output ``4 * layer1_planes`` channels; 64 in HRNet).
    ``forward(r1, r2)``: r1 (N, f1_channels, S, S), r2 (N, f2_channels, S/2, S/2) -> (N, K, S, S).
    """

    def __init__(
        self,
        f1_channels: int = 64,
        f2_channels: int = 256,
        num_outputs: int = 21,
        widths: Sequence[int] = (18, 36, 72, 144),
        num_modules: int | Sequence[int] = (1, 4, 3),
        num_blocks: int | Sequence[int] = 4,
        layer1_blocks: int = 4,
        layer1_planes: int = 64,
    ) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        self.layer1 = bottleneck_layer(f1_channels, layer1_planes, layer1_blocks)
        self.f2_proj = conv_bn_relu(f2_channels, widths[1], relu=False)
        self.stages = HRNetStages(4 * layer1_planes, widths, num_modules, num_blocks, multi_scale_output=True)
        total = sum(widths)
        self.last = nn.Sequential(
            nn.Conv2d(total, total, 1, bias=False),
            nn.BatchNorm2d(total, momentum=BN_MOMENTUM),
            nn.ReLU(inplace=True),
        )
        self.out = nn.Conv2d(total, num_outputs, 1)
        init_weights(self)
        init_heatmap_layer(self.out)

    def forward(self, r1: torch.Tensor, r2: torch.Tensor) -> torch.Tensor:
        if r1.device.type == "cpu":
            # On the CPU the head runs channels-last whatever the caller's layout: oneDNN's NCHW
            # kernels handle its thin (18/36-channel) maps poorly, NHWC ones 1.6x faster (forward
            # and backward, measured: docs/model.md). On GPUs the trainer's ``channels_last``
            # switch decides, as for the rest of the network. Heatmaps come back contiguous.
            r1 = r1.contiguous(memory_format=torch.channels_last)
            r2 = r2.contiguous(memory_format=torch.channels_last)
        branches = self.stages(self.layer1(r1), inject={1: self.f2_proj(r2)})
        size = branches[0].shape[-2:]
        up = [branches[0]] + [F.interpolate(b, size=size, mode="bilinear", align_corners=False) for b in branches[1:]]
        return self.out(self.last(torch.cat(up, dim=1))).contiguous()
