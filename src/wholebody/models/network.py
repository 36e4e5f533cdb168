"""What every network of the package shares: ``pretrained`` and ``init_from`` loading, and ``predict`` with the flip test.

A network subclasses :class:`PoseNetwork` and defines ``forward(images, part_boxes=None,
part_valid=None)`` (ZoomNet adds keyword-only ``rois`` and ``use_given_boxes``), ``decode(outputs,
refine)`` and :meth:`~PoseNetwork.flip_plan`; it may override :meth:`~PoseNetwork.flipped_pass`.
``predict(images, flip_test, refine, outputs)`` is then, for every network::

    outputs = self(images)                              # unless given (validation reuses its pass)
    flipped = self.flipped_pass(images, outputs)        # the mirrored batch
    outputs = self.average_flipped(outputs, flipped)    # each map and its mirror flipped back, halved
    return self.decode(outputs, refine)
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from wholebody.codecs import flip_heatmaps


class PoseNetwork(nn.Module, metaclass=ABCMeta):
    """Base of the package's networks (holds no parameters): ``init_from`` and ``predict``. A subclass
    that lacks :meth:`decode` or :meth:`flip_plan` cannot be instantiated."""

    def pretrained_plan(self) -> dict[str, list[tuple[str, str]]]:
        """Role of the ``pretrained`` setting (``body``, ``heads``) -> [(sub-module, kind)] it initialises
        (:mod:`wholebody.models.pretrained`); a network without HRNet modules has none."""
        return {}

    def load_pretrained(self, pretrained: Any, rows: torch.Tensor | None = None) -> None:
        """Map the ``pretrained`` setting's HRNet weights into the modules of :meth:`pretrained_plan`
        (:func:`wholebody.models.pretrained.load_pretrained`); called in the subclass's constructor
        before ``init_from``, which overrides it."""
        if pretrained:
            from wholebody.models.pretrained import load_pretrained

            load_pretrained(self, self.pretrained_plan(), pretrained, rows)

    def load_init_from(self, init_from: Sequence[Any] | None) -> None:
        """Load the ``init_from`` checkpoints, if any (:func:`wholebody.models.checkpoint.load_stage_checkpoints`);
        called at the end of the subclass's constructor."""
        if init_from:
            from wholebody.models.checkpoint import load_stage_checkpoints

            load_stage_checkpoints(self, init_from)

    @abstractmethod
    def decode(self, outputs: dict[str, torch.Tensor], refine: str = "quarter") -> dict[str, torch.Tensor]:
        """Heatmaps -> ``keypoints`` (B, 133, 3) crop px + score, ``part_boxes`` (B, 3, 4), ``part_box_scores`` (B, 3)."""

    @abstractmethod
    def flip_plan(self) -> dict[str, tuple[str, torch.Tensor]]:
        """The heatmap outputs the flip test averages: output name -> (the flipped pass's output that
        mirrors it, the channel flip index that maps that output's channels onto this one's)."""

    def flipped_pass(self, images: torch.Tensor, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The forward pass on the mirrored batch (``outputs``: the first pass's)."""
        return self(images.flip(-1))

    def average_flipped(self, outputs: dict[str, torch.Tensor], flipped: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``outputs`` with each map of :meth:`flip_plan` averaged with its mirror from the flipped pass,
        flipped back (``codecs.flip_heatmaps``); other outputs are the first pass's."""
        merged = dict(outputs)
        for name, (source, index) in self.flip_plan().items():
            merged[name] = 0.5 * (outputs[name] + flip_heatmaps(flipped[source], index))
        return merged

    @torch.no_grad()
    def predict(
        self,
        images: torch.Tensor,
        flip_test: bool = False,
        refine: str = "quarter",
        outputs: dict[str, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Decoded predictions (``decode``), optionally averaged with the mirrored pass.

        ``outputs``: the first pass when already computed (validation), else it is run here. Call in
        eval mode.
        """
        if outputs is None:
            outputs = self(images)
        if flip_test:
            outputs = self.average_flipped(outputs, self.flipped_pass(images, outputs))
        return self.decode(outputs, refine=refine)
