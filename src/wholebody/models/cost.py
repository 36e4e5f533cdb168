"""Model cost: parameters and multiply-accumulates (MACs) of one forward pass.

Counted with ``torch.utils.flop_counter.FlopCounterMode``, which reports FLOPs = 2 x MACs for
convolutions and matrix products (elementwise ops, BatchNorm, RoIAlign and interpolation are not
counted; they are a fraction of a percent here). The pose literature's "GFLOPs" (HRNet-W32: 16.0 at
384x288, ZoomNet: 27.36) are MACs, so :func:`count_macs` returns FLOPs / 2.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(net: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (buffers excluded)."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad or not trainable_only)


@torch.no_grad()
def count_macs(net: nn.Module, input_size: Sequence[int], batch: int = 1) -> float:
    """MACs of one eval-mode forward pass per image at ``input_size`` = (W, H).

    The network runs on a zero image batch of ``batch`` crops on its own device; the result is divided
    by ``batch``. The training mode of ``net`` is restored afterwards.
    """
    w, h = int(input_size[0]), int(input_size[1])
    p = next(net.parameters())
    images = torch.zeros(batch, 3, h, w, device=p.device, dtype=torch.float32)
    was_training = net.training
    net.eval()
    try:
        with FlopCounterMode(display=False) as counter:
            net(images)
    finally:
        net.train(was_training)
    return counter.get_total_flops() / 2.0 / batch
