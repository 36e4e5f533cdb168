"""Backbone pieces shared by ZoomNet and the one-stage baselines.

* :class:`ImageNormalizer` — uint8 / 0..255 RGB in, ImageNet-normalised float out (buffers, so
  exported graphs and the estimator need no separate preprocessing).
* :class:`FeatureNet` — the HRNet stem: two stride-2 3x3 convolutions and ``num_blocks`` bottleneck
  blocks. ZoomNet uses one block and taps F1 (1/2, after the first convolution) and F2 (1/4); the
  one-stage HRNet baselines use four blocks, which is exactly HRNet's stem + ``layer1``.
* :class:`HRNetStages` — the transition layers and multi-resolution stages 2..N of HRNet, built on
  timm's ``HighResolutionModule`` and residual blocks (pretrained=False everywhere: nothing is
  downloaded).

Shapes use (B, C, H, W); "1/s" means the input crop downsampled by ``s``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.models.hrnet import HighResolutionModule
from timm.models.resnet import BasicBlock, Bottleneck
from torch import nn

#: ImageNet statistics of RGB images in 0..255.
IMAGENET_MEAN_255: tuple[float, float, float] = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD_255: tuple[float, float, float] = (0.229 * 255, 0.224 * 255, 0.225 * 255)
BN_MOMENTUM = 0.1


def conv_bn_relu(cin: int, cout: int, kernel: int = 3, stride: int = 1, relu: bool = True) -> nn.Sequential:
    """``kernel x kernel`` convolution (no bias, 'same' padding) + BatchNorm (+ ReLU)."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(cout, momentum=BN_MOMENTUM),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def bottleneck_layer(cin: int, planes: int, num_blocks: int) -> nn.Sequential:
    """``num_blocks`` timm bottleneck blocks, ``cin -> 4 * planes`` channels, stride 1."""
    out = planes * Bottleneck.expansion
    down = None
    if cin != out:
        down = nn.Sequential(nn.Conv2d(cin, out, 1, bias=False), nn.BatchNorm2d(out, momentum=BN_MOMENTUM))
    blocks = [Bottleneck(cin, planes, 1, down)]
    blocks += [Bottleneck(out, planes) for _ in range(num_blocks - 1)]
    return nn.Sequential(*blocks)


def init_weights(module: nn.Module) -> None:
    """From-scratch initialisation: He-normal convolutions, BN (1, 0), and the last BN of every
    residual block zeroed so each block starts as the identity (stable training without ImageNet
    weights)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for m in module.modules():
        if isinstance(m, (BasicBlock, Bottleneck)):
            m.zero_init_last()


def init_heatmap_layer(conv: nn.Conv2d) -> None:
    """The final 1x1 heatmap convolution starts near zero (std 0.001), as HRNet's pose heads do."""
    nn.init.normal_(conv.weight, std=1e-3)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


class ImageNormalizer(nn.Module):
    """(B, 3, H, W) RGB uint8 or float in 0..255 -> float32 ImageNet-normalised, same layout."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN_255).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("inv_std", 1.0 / torch.tensor(IMAGENET_STD_255).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W) RGB, got shape {tuple(images.shape)}")
        x = images.to(self.mean.dtype) if not images.is_floating_point() else images
        return (x - self.mean.to(x.dtype)) * self.inv_std.to(x.dtype)


class FeatureNet(nn.Module):
    """The stem: conv3x3/2 -> F1 (1/2, ``width`` ch); conv3x3/2 + bottlenecks -> F2 (1/4, 4*``planes`` ch).

    Args:
        width: channels of both stride-2 convolutions (64 in HRNet and the paper).
        planes: bottleneck width; F2 has ``4 * planes`` channels (256 in the paper).
        num_blocks: bottleneck blocks (ZoomNet: 1; HRNet's stem + layer1: 4).
    Input (B, 3, H, W) normalised; outputs F1 (B, width, H/2, W/2) and F2 (B, 4*planes, H/4, W/4).
    """

    def __init__(self, width: int = 64, planes: int = 64, num_blocks: int = 1) -> None:
        super().__init__()
        if num_blocks < 1:
            raise ValueError(f"FeatureNet needs at least one bottleneck block, got num_blocks={num_blocks}")
        self.conv1 = conv_bn_relu(3, width, stride=2)
        self.conv2 = conv_bn_relu(width, width, stride=2)
        self.layer1 = bottleneck_layer(width, planes, num_blocks)
        self.f1_channels = width
        self.f2_channels = planes * Bottleneck.expansion
        init_weights(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f1 = self.conv1(x)
        f2 = self.layer1(self.conv2(f1))
        return f1, f2


def _as_tuple(v: int | Sequence[int], n: int, what: str) -> tuple[int, ...]:
    if isinstance(v, int):
        return (v,) * n
    t = tuple(int(x) for x in v)
    if len(t) != n:
        raise ValueError(f"{what}: expected {n} values, got {len(t)} ({list(t)})")
    return t


class HRNetStages(nn.Module):
    """Transitions + stages 2..N of HRNet on one input resolution (built on timm's HRNet blocks).

    Stage ``s`` (s = 2..N, N = ``len(widths)``) has ``s`` parallel branches at 1/1, 1/2, ... of the
    input resolution with ``widths[:s]`` channels and ``num_modules[s-2]`` multi-resolution modules of
    ``num_blocks`` basic blocks per branch, each ending in HRNet's exchange (sum) fusion.

    Args:
        in_channels: channels of the input map (256 after HRNet's layer1).
        widths: branch widths, e.g. (32, 64, 128, 256) for W32, (18, 36, 72, 144) for W18.
        num_modules: modules per stage, ``len(widths) - 1`` values (HRNet: (1, 4, 3)).
        num_blocks: basic blocks per branch in each module (HRNet: 4), int or one per stage.
        multi_scale_output: fuse into every branch in the last module (HRNetV2 heads) or only into
            the highest-resolution one (pose HRNet; saves the unused fusions).
    ``forward(x, inject=None)``: x (B, in_channels, h, w) -> list of (B, widths[i], h/2^i, w/2^i); with
    ``multi_scale_output=False`` only the first entry. ``inject`` {branch: tensor} is added to a
    branch right after the first transition (used by the part heads to feed the F2 RoI in).
    """

    def __init__(
        self,
        in_channels: int,
        widths: Sequence[int] = (32, 64, 128, 256),
        num_modules: int | Sequence[int] = (1, 4, 3),
        num_blocks: int | Sequence[int] = 4,
        multi_scale_output: bool = True,
    ) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if len(widths) < 2:
            raise ValueError(f"HRNetStages needs at least 2 branch widths, got {list(widths)}")
        n_stages = len(widths) - 1
        mods = _as_tuple(num_modules, n_stages, "num_modules")
        blocks = _as_tuple(num_blocks, n_stages, "num_blocks")
        self.widths = widths
        self.multi_scale_output = multi_scale_output
        self.transitions = nn.ModuleList()
        self.stages = nn.ModuleList()
        pre = [int(in_channels)]
        for s in range(n_stages):
            cur = list(widths[: s + 2])
            self.transitions.append(self._transition(pre, cur))
            modules = []
            for m in range(mods[s]):
                last = s == n_stages - 1 and m == mods[s] - 1
                module = HighResolutionModule(
                    len(cur), BasicBlock, (blocks[s],) * len(cur), list(cur), tuple(cur), "SUM",
                    multi_scale_output=multi_scale_output or not last,
                )
                modules.append(module)
            self.stages.append(nn.ModuleList(modules))
            pre = cur

    @staticmethod
    def _transition(pre: list[int], cur: list[int]) -> nn.ModuleList:
        """Adapt existing branches (3x3 conv where widths differ) and derive a new lower branch from
        the lowest one with a stride-2 3x3 conv."""
        layers = nn.ModuleList()
        for i, c in enumerate(cur):
            if i < len(pre):
                layers.append(conv_bn_relu(pre[i], c) if pre[i] != c else nn.Identity())
            else:
                layers.append(conv_bn_relu(pre[-1], c, stride=2))
        return layers

    def forward(self, x: torch.Tensor, inject: dict[int, torch.Tensor] | None = None) -> list[torch.Tensor]:
        branches = [x]
        for s, (transition, modules) in enumerate(zip(self.transitions, self.stages)):
            new = []
            for i, t in enumerate(transition):
                src = branches[i] if i < len(branches) else branches[-1]
                new.append(t(src))
            if s == 0 and inject:
                for i, extra in inject.items():
                    new[i] = new[i] + extra
            branches = new
            for module in modules:
                branches = module(branches)
        return branches
