"""Shared pieces of the model and inference tests."""

from __future__ import annotations

#: ZoomNet at zoomnet_tiny's widths (no RoI jitter): small enough to run many times per test.
TINY_ZOOMNET = dict(
    input_size=(96, 128), stem_width=16, stem_planes=16, body_widths=(16, 32, 64, 128), body_modules=(1, 1, 1),
    body_blocks=1, body_upsample=2, head_widths=(8, 16, 32), head_modules=(1, 1), head_blocks=1,
    head_layer1_blocks=1, head_layer1_planes=8, roi_size=32, min_roi_size=6.0,
)
