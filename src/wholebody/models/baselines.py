"""One-stage HRNet baselines of the paper's Table 2: HRNet-W32 predicting all 133 keypoints
(``hrnet_wholebody``) or the 17 body keypoints (``hrnet_body``) as heatmaps at 1/4.

The network is HRNet for pose (stem + layer1 = :class:`FeatureNet` with 4 bottlenecks, stages 2..4,
a 1x1 heatmap layer on the highest-resolution branch). It speaks the same interface as
:class:`~wholebody.models.zoomnet.ZoomNet`: ``net(images, part_boxes=None, part_valid=None)``,
``net.decode(outputs, refine)``, ``net.predict(images, flip_test, refine, outputs)``; keypoints it does
not predict come out with score 0. Its face/hand boxes are the boxes of the part's confident
keypoints (score > ``box_keypoint_threshold``), scored by their mean score; a model without a part has
zero boxes with score 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from wholebody.codecs import decode_heatmaps, flip_heatmaps
from wholebody.keypoints import BOX_PARTS, COCO_WHOLEBODY, PARTS
from wholebody.models.backbone import FeatureNet, ImageNormalizer
from wholebody.models.heads import BodyNet
from wholebody.models.network import PoseNetwork
from wholebody.models.zoomnet import check_input_size

#: Heatmap grids of :class:`HRNetPose` (``heatmap_grid``).
HEATMAP_GRIDS = ("package", "mmpose")


def part_indices(parts: Sequence[str]) -> np.ndarray:
    """(K,) int64 indices into the 133 layout of the keypoints of ``parts`` (in the spec's order)."""
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise ValueError(f"parts must be a non-empty subset of {PARTS}, got {list(parts)}")
    keep = [p for p in PARTS if p in parts]
    return np.concatenate([np.arange(COCO_WHOLEBODY.slice(p).start, COCO_WHOLEBODY.slice(p).stop) for p in keep])


def channel_flip_index(indices: np.ndarray) -> list[int]:
    """Flip index of heatmap channels holding the 133-layout keypoints ``indices``.

    Raises if a keypoint's mirror is not among the channels (e.g. only one hand)."""
    pos = {int(k): c for c, k in enumerate(indices)}
    try:
        return [pos[int(COCO_WHOLEBODY.flip_index[k])] for k in indices]
    except KeyError as e:
        raise ValueError(f"keypoint {COCO_WHOLEBODY.names[int(e.args[0])]!r} is predicted without its mirror") from None


class HRNetPose(PoseNetwork):
    """One-stage top-down HRNet predicting the keypoints of ``parts``.

    Args:
        input_size: (W, H) crops (multiples of 32).
        parts: predicted parts, e.g. all five (133 maps) or ``["body"]`` (17).
        stem_width / stem_planes / stem_blocks: HRNet stem + layer1 (64, 64, 4).
        widths / num_modules / num_blocks / upsample: HRNet stages (W32) and heatmap upsampling.
        box_keypoint_threshold: keypoint score above which a keypoint counts for its part box.
        heatmap_grid: where heatmap pixel ``j`` sits in the crop. ``"package"``: it covers crop px
            ``[s*j, s*(j+1))`` (centre ``s*(j + 0.5)``, stride ``s``), the package's targets;
            ``"mmpose"``: its centre is the centre of crop pixel ``s*j`` (``s*j + 0.5``), the grid
            mmpose's (non-UDP) heatmap models were trained on: decoding and the flip test follow it,
            so mmpose's published weights (:mod:`wholebody.models.pretrained_mmpose`) predict where they were
            trained to. The package's losses render ``"package"`` targets: fine-tune with that.
        pretrained: HRNet weights (:mod:`wholebody.models.pretrained`): a timm name or file, or
            ``{body: ..., download: false}``: the stem, layer1 and stages (and the heatmap layer from an
            mmpose top-down checkpoint). ``heads`` must be null (no part heads).
        init_from: checkpoints loaded after construction (see :mod:`wholebody.models.checkpoint`).
    Output: ``{"heatmaps": (B, K, H/4, W/4)}``.
    """

    def __init__(
        self,
        input_size: Sequence[int] = (288, 384),
        parts: Sequence[str] = PARTS,
        stem_width: int = 64,
        stem_planes: int = 64,
        stem_blocks: int = 4,
        widths: Sequence[int] = (32, 64, 128, 256),
        num_modules: int | Sequence[int] = (1, 4, 3),
        num_blocks: int | Sequence[int] = 4,
        upsample: int = 1,
        box_keypoint_threshold: float = 0.2,
        heatmap_grid: str = "package",
        pretrained: Any = None,
        init_from: Sequence[Any] | None = None,
    ) -> None:
        super().__init__()
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.size_multiple = 4 * 2 ** (len(widths) - 1)
        check_input_size(self.input_size, self.size_multiple)
        self.parts = tuple(p for p in PARTS if p in parts)
        idx = part_indices(self.parts)
        self.num_outputs = len(idx)
        self.heatmap_stride = 4.0 / int(upsample)
        self.box_keypoint_threshold = float(box_keypoint_threshold)
        if heatmap_grid not in HEATMAP_GRIDS:
            raise ValueError(f"heatmap_grid must be one of {HEATMAP_GRIDS}, got {heatmap_grid!r}")
        self.heatmap_grid = heatmap_grid
        self.normalize = ImageNormalizer()
        self.feature_net = FeatureNet(stem_width, stem_planes, stem_blocks)
        self.body_net = BodyNet(self.feature_net.f2_channels, widths, num_modules, num_blocks, len(idx), upsample)
        self.register_buffer("_indices", torch.as_tensor(idx), persistent=False)
        self.register_buffer("_flip", torch.tensor(channel_flip_index(idx)), persistent=False)
        self.load_pretrained(pretrained, rows=self._indices)
        self.load_init_from(init_from)

    def pretrained_plan(self) -> dict[str, list[tuple[str, str]]]:
        """``body`` -> the stem + layer1 (FeatureNet) and the stages + heatmap layer (BodyNet); no heads."""
        return {"body": [("feature_net", "stem"), ("body_net", "body")], "heads": []}

    def forward(
        self,
        images: torch.Tensor,
        part_boxes: torch.Tensor | None = None,
        part_valid: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """images (B, 3, H, W) uint8/0..255 RGB -> ``{"heatmaps": (B, K, H/4, W/4)}``; the part boxes
        are the shared interface's (training passes them to every network) and unused. It has no RoIs:
        ZoomNet's ``rois`` / ``use_given_boxes`` are a ``TypeError`` here."""
        check_input_size((images.shape[-1], images.shape[-2]), self.size_multiple)
        if self.training and self.heatmap_grid != "package":
            raise RuntimeError(f"heatmap_grid={self.heatmap_grid!r} is for inference with that grid's weights; the "
                               "package's losses render 'package' targets: fine-tune with heatmap_grid=package")
        _, f2 = self.feature_net(self.normalize(images))
        return {"heatmaps": self.body_net(f2)}

    @torch.no_grad()
    def decode(self, outputs: dict[str, torch.Tensor], refine: str = "quarter") -> dict[str, torch.Tensor]:
        """``keypoints`` (B, 133, 3) crop px + score (0 for keypoints not predicted), ``part_boxes``
        (B, 3, 4) crop px xyxy from the confident keypoints of each part, ``part_box_scores`` (B, 3)."""
        hm = outputs["heatmaps"]
        b = hm.shape[0]
        pts, sc = decode_heatmaps(hm, refine=refine)
        kpts = hm.new_zeros((b, COCO_WHOLEBODY.num_keypoints, 3), dtype=torch.float32)
        if self.heatmap_grid == "mmpose":  # heatmap px j <-> centre of crop px s*j
            kpts[:, self._indices, :2] = (pts - 0.5) * self.heatmap_stride + 0.5
        else:
            kpts[:, self._indices, :2] = pts * self.heatmap_stride
        kpts[:, self._indices, 2] = sc
        boxes = kpts.new_zeros((b, len(BOX_PARTS), 4))
        scores = kpts.new_zeros((b, len(BOX_PARTS)))
        for i, part in enumerate(BOX_PARTS):
            if part not in self.parts:
                continue
            k = kpts[:, COCO_WHOLEBODY.slice(part)]
            ok = k[..., 2] > self.box_keypoint_threshold
            lo = torch.where(ok[..., None], k[..., :2], torch.full_like(k[..., :2], float("inf"))).amin(dim=1)
            hi = torch.where(ok[..., None], k[..., :2], torch.full_like(k[..., :2], float("-inf"))).amax(dim=1)
            any_ok = ok.any(dim=1)
            boxes[:, i] = torch.where(any_ok[:, None], torch.cat([lo, hi], dim=-1), torch.zeros_like(boxes[:, i]))
            n = ok.sum(dim=1).clamp_min(1)
            scores[:, i] = (k[..., 2] * ok).sum(dim=1) / n
        return {"keypoints": kpts, "part_boxes": boxes, "part_box_scores": scores}

    def flip_plan(self) -> dict[str, tuple[str, torch.Tensor]]:
        """The flip test (``predict``, :class:`~wholebody.models.network.PoseNetwork`): the mirrored
        pass's maps flipped back with the channels swapped left/right (:func:`channel_flip_index`)."""
        return {"heatmaps": ("heatmaps", self._flip)}

    def average_flipped(self, outputs: dict[str, torch.Tensor], flipped: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """As :class:`~wholebody.models.network.PoseNetwork`'s; on the ``"mmpose"`` grid the flipped-back
        maps are first moved ``(s - 1) / s`` heatmap px right (:func:`shift_right`): there crop x = u
        mirrors to W - u, so heatmap px j mirrors to ``(W - 1) / s - j``, not ``W / s - 1 - j``.
        (mmpose shifts by one whole pixel, ``shift_heatmap``; this is the exact offset.)"""
        if self.heatmap_grid == "package":
            return super().average_flipped(outputs, flipped)
        back = flip_heatmaps(flipped["heatmaps"], self._flip)
        shift = (self.heatmap_stride - 1.0) / self.heatmap_stride
        return {**outputs, "heatmaps": 0.5 * (outputs["heatmaps"] + shift_right(back, shift))}


def shift_right(heatmaps: torch.Tensor, shift: float) -> torch.Tensor:
    """(..., w) maps moved ``shift`` px (0 <= shift <= 1) toward +x by linear interpolation,
    ``out[j] = (1 - shift) * m[j] + shift * m[j - 1]`` (column 0 repeated at the left border)."""
    left = torch.cat([heatmaps[..., :1], heatmaps[..., :-1]], dim=-1)
    return (1.0 - shift) * heatmaps + shift * left
