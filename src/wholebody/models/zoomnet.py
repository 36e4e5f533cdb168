"""ZoomNet (Jin et al., ECCV 2020): body -> part boxes -> zoom (RoIAlign) -> part heads.

Data flow at an input of W x H crop px (paper: 288 x 384)::

    images (B,3,H,W) uint8/0..255 --normalise--> FeatureNet --> F1 (B,64,H/2,W/2), F2 (B,256,H/4,W/4)
    F2 --> BodyNet --> body_heatmaps (B,38,H/4,W/4)   [23 body+foot, 3 x (TL, TR, BR, BL, centre)]
    box maps --> decode_part_boxes --> tight part boxes (B,3,4) crop px + confidence (B,3)
    RoIs (B,3,4) square crop px: GT boxes (training, optional jitter) or BodyNet's own boxes
    roi_align(F1) -> (3B,64,S,S); roi_align(F2) -> (3B,256,S/2,S/2)        (S = 64; one call each)
    FaceHead (B RoIs) -> face_heatmaps (B,68,S,S)
    HandHead (2B RoIs, left ones mirrored) -> lefthand/righthand_heatmaps (B,21,S,S)

One HandHead serves both hands: the left-hand RoI features are mirrored (read right-to-left) so
every hand reaches the head as a right hand, and the head's maps for it are mirrored back. The two
hands have the same keypoint order, so nothing else changes. Compared with two heads this halves
the hand parameters, gives the head twice the training samples of one shape class, and costs the
same FLOPs; the same one-call batching holds.

Variants (Table 7 of the paper): ``joint`` (heads on FeatureNet's maps, trained together),
``reuse`` (heads on FeatureNet's maps detached: FeatureNet learns from BodyNet only) and
``independent`` (the heads have their own FeatureNet).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchvision.ops import roi_align

from wholebody.codecs import (
    NUM_BODY_KEYPOINTS,
    NUM_BOX_POINTS,
    body_flip_index,
    box_points,
    boxes_from_points,
    decode_heatmaps,
    from_roi,
    square_boxes,
)
from wholebody.keypoints import BOX_FLIP_INDEX, BOX_PARTS, COCO_WHOLEBODY
from wholebody.models.backbone import FeatureNet, ImageNormalizer
from wholebody.models.heads import BodyNet, PartHead
from wholebody.models.network import PoseNetwork

VARIANTS = ("joint", "reuse", "independent")
TRAIN_ROIS = ("gt", "pred")
_FACE, _LEFT, _RIGHT = (BOX_PARTS.index(p) for p in ("face", "lefthand", "righthand"))
_BOX_FLIP = [int(i) for i in BOX_FLIP_INDEX]


# ----------------------------------------------------------------------------- pure helpers
def decode_part_boxes(
    heatmaps: torch.Tensor,
    stride: float,
    refine: str = "quarter",
    center_weight: float = 1.0,
    iterations: int = 3,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Part boxes from BodyNet's box-point maps.

    The box is the axis-aligned box closest (weighted least squares, ``codecs.boxes_from_points``) to
    the 4 decoded corners and the centre, weighted by their peak values. The centre is the check: a
    few reweighting rounds down-weight points that disagree with the current fit by more than a
    quarter of the box side (weight ``1 / (1 + (r / (side / 4))^2)``), so one corner that jumped
    elsewhere (another person's hand, a blurry peak) is outvoted by the other corners and the centre,
    and a missing corner is replaced by the reflection of its opposite one through the centre.

    Args:
        heatmaps: (B, 3 * 5, h, w) box-point maps in ``BOX_PARTS`` x ``BOX_POINTS`` order.
        stride: crop px per heatmap px.
    Returns:
        boxes (B, 3, 4) xyxy crop px and confidence (B, 3) in [0, ~1]: the mean over the 5 points of
        peak value x agreement weight (a box whose points are weak or disagree scores low).
    """
    b = heatmaps.shape[0]
    pts, sc = decode_heatmaps(heatmaps, refine=refine)
    pts = (pts * stride).reshape(b, len(BOX_PARTS), NUM_BOX_POINTS, 2)
    sc = sc.reshape(b, len(BOX_PARTS), NUM_BOX_POINTS).clamp_min(0)
    agree = torch.ones_like(sc)
    boxes, _ = boxes_from_points(pts, sc, center_weight=center_weight)
    for _ in range(iterations):
        side = (boxes[..., 2:] - boxes[..., :2]).amax(dim=-1).clamp_min(stride)
        resid = (pts - box_points(boxes)).norm(dim=-1)
        agree = 1.0 / (1.0 + (resid / (0.25 * side[..., None])) ** 2)
        boxes, _ = boxes_from_points(pts, sc * agree, center_weight=center_weight)
    return boxes, (sc * agree).mean(dim=-1)


def mirror_rois(rois: torch.Tensor, width: float) -> torch.Tensor:
    """RoIs of the horizontally flipped crop: (B, 3, 4) xyxy -> (B, 3, 4), boxes mirrored
    (``x1' = W - x2``) and the two hands swapped (the flipped person's left hand is the mirror of the
    original right hand)."""
    x1, y1, x2, y2 = rois.unbind(-1)
    m = torch.stack([width - x2, y1, width - x1, y2], dim=-1)
    return m[:, _BOX_FLIP]


def jitter_boxes(boxes: torch.Tensor, shift: float, scale: float) -> torch.Tensor:
    """Random square-box jitter: centre moved by up to ``shift`` x side, side scaled by up to
    ``1 +- scale`` (uniform, independent per box). (..., 4) xyxy -> (..., 4)."""
    if shift <= 0 and scale <= 0:
        return boxes
    c = (boxes[..., :2] + boxes[..., 2:]) / 2
    wh = boxes[..., 2:] - boxes[..., :2]
    side = wh.amax(dim=-1, keepdim=True)
    c = c + (torch.rand_like(c) * 2 - 1) * shift * side
    wh = wh * (1 + (torch.rand_like(side) * 2 - 1) * scale)
    return torch.cat([c - wh / 2, c + wh / 2], dim=-1)


# ----------------------------------------------------------------------------- the network
class ZoomNet(PoseNetwork):
    """ZoomNet: one network for 133 whole-body keypoints.

    Args:
        input_size: (W, H) of the input crops (a multiple of 32 on each side).
        stem_width / stem_planes / stem_blocks: FeatureNet (64, 64, 1: F1 64 ch, F2 256 ch).
        body_widths / body_modules / body_blocks: BodyNet's HRNet stages (W32: (32, 64, 128, 256),
            (1, 4, 3), 4); body_upsample: 1 (maps at 1/4, paper) or 2 (1/2).
        head_widths / head_modules / head_blocks / head_layer1_blocks / head_layer1_planes: the
            HRNetV2 part heads (W18: (18, 36, 72, 144), (1, 4, 3), 4, 4, 64).
        roi_size: S, side of the F1 RoI and of the part heatmaps (64); the F2 RoI is S/2.
        roi_margin: the RoI is the part box made square (side = max(w, h)) and enlarged by this.
        min_roi_size: smallest RoI side, crop px.
        train_rois: ``"gt"``: in training the RoIs come from the given part boxes (invalid ones
            from BodyNet); ``"pred"``: always from BodyNet's own (detached) boxes.
        roi_jitter_shift / roi_jitter_scale: training-time jitter of GT RoIs (fractions of the side).
        variant: ``"joint"`` | ``"reuse"`` | ``"independent"`` (see the module docstring).
        box_refine / box_center_weight: decoding of the box points inside the forward pass.
        pretrained: ImageNet HRNet weights (:mod:`wholebody.models.pretrained`): ``{body: <timm name or
            file>, heads: <timm name or file>, download: false}``; ``body`` (HRNet-W32: ``hrnet_w32``)
            initialises FeatureNet's stem and BodyNet's stages, ``heads`` (HRNetV2-W18: ``hrnet_w18``)
            the Face/HandHead's layer1 and stages (and, for ``variant="independent"``, the heads' own
            FeatureNet). Applied before ``init_from``.
        init_from: checkpoints of previous stages loaded after construction
            (:func:`wholebody.models.checkpoint.load_stage_checkpoints`).
    """

    def __init__(
        self,
        input_size: Sequence[int] = (288, 384),
        stem_width: int = 64,
        stem_planes: int = 64,
        stem_blocks: int = 1,
        body_widths: Sequence[int] = (32, 64, 128, 256),
        body_modules: int | Sequence[int] = (1, 4, 3),
        body_blocks: int | Sequence[int] = 4,
        body_upsample: int = 1,
        head_widths: Sequence[int] = (18, 36, 72, 144),
        head_modules: int | Sequence[int] = (1, 4, 3),
        head_blocks: int | Sequence[int] = 4,
        head_layer1_blocks: int = 4,
        head_layer1_planes: int = 64,
        roi_size: int = 64,
        roi_margin: float = 1.25,
        min_roi_size: float = 16.0,
        train_rois: str = "gt",
        roi_jitter_shift: float = 0.0,
        roi_jitter_scale: float = 0.0,
        variant: str = "joint",
        box_refine: str = "quarter",
        box_center_weight: float = 1.0,
        pretrained: Any = None,
        init_from: Sequence[Any] | None = None,
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if train_rois not in TRAIN_ROIS:
            raise ValueError(f"train_rois must be one of {TRAIN_ROIS}, got {train_rois!r}")
        if roi_size % 2:
            raise ValueError(f"roi_size must be even (the F2 RoI is roi_size / 2), got {roi_size}")
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.size_multiple = 4 * 2 ** (len(body_widths) - 1)
        check_input_size(self.input_size, self.size_multiple)
        self.variant = variant
        self.train_rois = train_rois
        self.roi_size = int(roi_size)
        self.roi_margin = float(roi_margin)
        self.min_roi_size = float(min_roi_size)
        self.roi_jitter = (float(roi_jitter_shift), float(roi_jitter_scale))
        self.box_refine = box_refine
        self.box_center_weight = float(box_center_weight)
        #: crop px per BodyNet heatmap px (4 in the paper; 2 with body_upsample=2)
        self.body_stride = 4.0 / int(body_upsample)

        self.normalize = ImageNormalizer()
        self.feature_net = FeatureNet(stem_width, stem_planes, stem_blocks)
        self.body_net = BodyNet(
            self.feature_net.f2_channels, body_widths, body_modules, body_blocks,
            NUM_BODY_KEYPOINTS + len(BOX_PARTS) * NUM_BOX_POINTS, body_upsample,
        )
        self.part_feature_net = FeatureNet(stem_width, stem_planes, stem_blocks) if variant == "independent" else None
        head_args = dict(
            f1_channels=self.feature_net.f1_channels, f2_channels=self.feature_net.f2_channels,
            widths=head_widths, num_modules=head_modules, num_blocks=head_blocks,
            layer1_blocks=head_layer1_blocks, layer1_planes=head_layer1_planes,
        )
        self.face_head = PartHead(num_outputs=COCO_WHOLEBODY.num_part("face"), **head_args)
        self.hand_head = PartHead(num_outputs=COCO_WHOLEBODY.num_part("righthand"), **head_args)
        self.register_buffer("_body_flip", torch.tensor(body_flip_index()), persistent=False)
        # per part: its mirror part and that part's channels in this one's order (the face's own
        # mirrored order; the other hand's joints)
        self._mirror_part = {part: COCO_WHOLEBODY.mirror_part(part) for part in BOX_PARTS}
        for part in BOX_PARTS:
            self.register_buffer(f"_{part}_flip", torch.as_tensor(COCO_WHOLEBODY.mirror_index(part).copy()),
                                 persistent=False)
        self.load_pretrained(pretrained)
        self.load_init_from(init_from)

    def pretrained_plan(self) -> dict[str, list[tuple[str, str]]]:
        """``body`` -> FeatureNet (stem) + BodyNet (stages; its heatmap layer keeps its own initialisation,
        since no file has ZoomNet's 38 channels); ``heads`` -> both part heads (and the
        heads' own FeatureNet of the independent variant)."""
        heads = [("face_head", "head"), ("hand_head", "head")]
        if self.part_feature_net is not None:
            heads.append(("part_feature_net", "stem"))
        return {"body": [("feature_net", "stem"), ("body_net", "stages")], "heads": heads}

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        images: torch.Tensor,
        part_boxes: torch.Tensor | None = None,
        part_valid: torch.Tensor | None = None,
        *,
        rois: torch.Tensor | None = None,
        use_given_boxes: bool | None = None,
    ) -> dict[str, torch.Tensor]:
        """Run the network.

        Args:
            images: (B, 3, H, W) RGB, uint8 or float in 0..255.
            part_boxes: (B, 3, 4) xyxy crop px GT face/left-hand/right-hand boxes; used for the RoIs
                only in training with ``train_rois="gt"`` (zero-area or ``part_valid=False`` boxes
                fall back to BodyNet's own).
            part_valid: (B, 3) bool, optional.
            rois: (B, 3, 4) xyxy crop px RoIs to use as they are, in any mode (the flip-test pass).
            use_given_boxes: zoom into the valid ``part_boxes`` (squared and enlarged like BodyNet's,
                jittered only in training) instead of BodyNet's own boxes. Default: in training with
                ``train_rois="gt"``; ``True`` at evaluation gives the oracle-box analysis (paper Table 4a).
        Returns:
            ``body_heatmaps`` (B, 38, H/4, W/4) (x2 with ``body_upsample=2``), ``face_heatmaps``
            (B, 68, S, S), ``lefthand_heatmaps`` / ``righthand_heatmaps`` (B, 21, S, S) in the frame of
            their RoI, ``part_boxes`` (B, 3, 4) the RoIs used (crop px), ``body_boxes`` (B, 3, 4) BodyNet's
            decoded tight part boxes (crop px) and ``body_box_scores`` (B, 3).
        """
        check_input_size((images.shape[-1], images.shape[-2]), self.size_multiple)
        x = self.normalize(images)
        f1, f2 = self.feature_net(x)
        body = self.body_net(f2)
        boxes, box_scores = decode_part_boxes(
            body[:, NUM_BODY_KEYPOINTS:], self.body_stride, self.box_refine, self.box_center_weight
        )
        if rois is None:
            if use_given_boxes is None:
                use_given_boxes = self.training and self.train_rois == "gt"
            rois = self.select_rois(boxes, part_boxes if use_given_boxes else None, part_valid)
        else:
            rois = rois.to(device=body.device, dtype=torch.float32)
        if self.variant == "independent":
            h1, h2 = self.part_feature_net(x)
        elif self.variant == "reuse":
            h1, h2 = f1.detach(), f2.detach()
        else:
            h1, h2 = f1, f2
        face, left, right = self.zoom(h1, h2, rois)
        return {
            "body_heatmaps": body,
            "face_heatmaps": face,
            "lefthand_heatmaps": left,
            "righthand_heatmaps": right,
            "part_boxes": rois,
            "body_boxes": boxes,
            "body_box_scores": box_scores,
        }

    def select_rois(
        self, pred_boxes: torch.Tensor, part_boxes: torch.Tensor | None, part_valid: torch.Tensor | None
    ) -> torch.Tensor:
        """(B, 3, 4) RoIs (square, enlarged by ``roi_margin``, crop px) from BodyNet's boxes, or from the
        valid given ``part_boxes`` when those are passed (jittered in training)."""
        pred = square_boxes(pred_boxes.detach(), self.roi_margin, self.min_roi_size)
        if part_boxes is None:
            return pred
        gt = part_boxes.to(device=pred.device, dtype=torch.float32)
        valid = (gt[..., 2] > gt[..., 0]) & (gt[..., 3] > gt[..., 1]) & torch.isfinite(gt).all(dim=-1)
        if part_valid is not None:
            valid = valid & part_valid.to(device=pred.device, dtype=torch.bool)
        gt_rois = square_boxes(torch.where(valid[..., None], gt, pred_boxes), self.roi_margin, self.min_roi_size)
        if self.training:
            gt_rois = jitter_boxes(gt_rois, *self.roi_jitter)
        return torch.where(valid[..., None], gt_rois, pred)

    def zoom(
        self, f1: torch.Tensor, f2: torch.Tensor, rois: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """RoIAlign every part RoI of the batch from F1 (S x S) and F2 (S/2 x S/2) in one call each,
        then one FaceHead call and one HandHead call (left hands mirrored in and back out).

        Args:
            f1: (B, C1, H/2, W/2); f2: (B, C2, H/4, W/4); rois: (B, 3, 4) xyxy crop px.
        Returns:
            face (B, 68, S, S), left hand (B, 21, S, S), right hand (B, 21, S, S) heatmaps, RoI frames.
        """
        b = rois.shape[0]
        s = self.roi_size
        # part-major rows: all faces, all left hands, all right hands. Box coordinates stay float32
        # (bf16 would round a coordinate of 300 px to 2 px), so the sampling runs in float32.
        boxes = rois.to(torch.float32).transpose(0, 1).reshape(-1, 4)
        index = torch.arange(b, device=rois.device, dtype=boxes.dtype).repeat(len(BOX_PARTS))[:, None]
        r = torch.cat([index, boxes], dim=1)
        r1 = roi_align(f1.float(), r, (s, s), spatial_scale=0.5, sampling_ratio=-1, aligned=True).to(f1.dtype)
        r2 = roi_align(f2.float(), r, (s // 2, s // 2), spatial_scale=0.25, sampling_ratio=-1, aligned=True).to(f2.dtype)
        r1 = r1.reshape(len(BOX_PARTS), b, *r1.shape[1:])
        r2 = r2.reshape(len(BOX_PARTS), b, *r2.shape[1:])
        face = self.face_head(r1[_FACE], r2[_FACE])
        hands_in1 = torch.cat([r1[_RIGHT], r1[_LEFT].flip(-1)], dim=0)
        hands_in2 = torch.cat([r2[_RIGHT], r2[_LEFT].flip(-1)], dim=0)
        hands = self.hand_head(hands_in1, hands_in2)
        return face, hands[b:].flip(-1), hands[:b]

    # ------------------------------------------------------------------ decoding
    @torch.no_grad()
    def decode(self, outputs: dict[str, torch.Tensor], refine: str = "quarter") -> dict[str, torch.Tensor]:
        """Heatmaps -> keypoints in crop px.

        Returns:
            ``keypoints`` (B, 133, 3) crop px with the heatmap peak as score in channel 2 (BodyNet's 23,
            and the part heads' 110 mapped RoI -> crop), ``part_boxes`` (B, 3, 4) BodyNet's decoded tight
            face/hand boxes (crop px), ``part_box_scores`` (B, 3), ``rois`` (B, 3, 4) the RoIs used.
        """
        body = outputs["body_heatmaps"]
        b = body.shape[0]
        stride = self.body_stride
        pts, sc = decode_heatmaps(body[:, :NUM_BODY_KEYPOINTS], refine=refine)
        boxes, box_scores = decode_part_boxes(body[:, NUM_BODY_KEYPOINTS:], stride, refine, self.box_center_weight)
        kpts = body.new_zeros((b, COCO_WHOLEBODY.num_keypoints, 3), dtype=torch.float32)
        kpts[:, :NUM_BODY_KEYPOINTS, :2] = pts * stride
        kpts[:, :NUM_BODY_KEYPOINTS, 2] = sc
        rois = outputs["part_boxes"].to(torch.float32)
        for i, part in enumerate(BOX_PARTS):
            hm = outputs[f"{part}_heatmaps"]
            p, s = decode_heatmaps(hm, refine=refine)
            sl = COCO_WHOLEBODY.slice(part)
            kpts[:, sl, :2] = from_roi(p, rois[:, i], hm.shape[-1])
            kpts[:, sl, 2] = s
        return {"keypoints": kpts, "part_boxes": boxes, "part_box_scores": box_scores, "rois": rois}

    # ------------------------------------------------------------------ flip test (predict: PoseNetwork)
    def flipped_pass(self, images: torch.Tensor, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The pass on ``images.flip(-1)`` with the mirrored RoIs of the first pass (hands swapped,
        :func:`mirror_rois`), so its part heatmaps live in the mirrored frames of the same RoIs and the
        average is decoded in the first pass's RoIs."""
        return self(images.flip(-1), rois=mirror_rois(outputs["part_boxes"], images.shape[-1]))

    def flip_plan(self) -> dict[str, tuple[str, torch.Tensor]]:
        """Body maps flipped back by ``codecs.body_flip_index``; each part's maps from its mirror part's
        (the face from the face, each hand from the other hand: ``KeypointSpec.mirror_part``)."""
        plan = {"body_heatmaps": ("body_heatmaps", self._body_flip)}
        for part in BOX_PARTS:
            plan[f"{part}_heatmaps"] = (f"{self._mirror_part[part]}_heatmaps", getattr(self, f"_{part}_flip"))
        return plan


def check_input_size(size: Sequence[int], multiple: int) -> None:
    """Raise a clear error unless both sides of ``size`` (W, H) are positive multiples of ``multiple``."""
    w, h = int(size[0]), int(size[1])
    if w <= 0 or h <= 0 or w % multiple or h % multiple:
        raise ValueError(
            f"input size {w}x{h} (W x H): both sides must be positive multiples of {multiple} "
            f"(the HRNet branches halve the resolution down to 1/{multiple})"
        )
