"""ZoomNet behaviour on the tiny config: box decoding, RoI selection and mapping, the shared hand head's
mirroring, flip test, batching of the zoom, gradient paths of the Table 7 variants."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.ops import roi_align

import wholebody.models.zoomnet as zoomnet_module
from model_utils import TINY_ZOOMNET
from wholebody.codecs import (
    BODY_CHANNELS,
    NUM_BODY_KEYPOINTS,
    box_points,
    encode_body_targets,
    encode_roi_targets,
    flip_heatmaps,
    gaussian_heatmaps,
    square_boxes,
)
from wholebody.geometry import affine_matrix, apply_affine
from wholebody.keypoints import BOX_PARTS, COCO_WHOLEBODY
from wholebody.models import ZoomNet
from wholebody.models.postprocess import to_image
from wholebody.models.zoomnet import decode_part_boxes, mirror_rois

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = TINY_ZOOMNET
W, H = TINY["input_size"]
FACE, LEFT, RIGHT = (BOX_PARTS.index(p) for p in ("face", "lefthand", "righthand"))


def tiny(**kw) -> ZoomNet:
    torch.manual_seed(0)
    return ZoomNet(**{**TINY, **kw})


def boxes_batch(b: int = 2) -> torch.Tensor:
    """(b, 3, 4) plausible face / left hand / right hand boxes, crop px."""
    base = torch.tensor([[38.0, 10.0, 58.0, 32.0], [12.0, 60.0, 26.0, 76.0], [66.0, 58.0, 82.0, 73.0]])
    return base[None].repeat(b, 1, 1) + torch.arange(b, dtype=torch.float32)[:, None, None]


# ----------------------------------------------------------------------------- box decoding
def _box_maps(boxes: torch.Tensor, stride: float, size: tuple[int, int], sigma: float = 2.0) -> torch.Tensor:
    pts = box_points(boxes / stride).reshape(boxes.shape[0], -1, 2)
    hm, _ = gaussian_heatmaps(pts, torch.ones(pts.shape[:2]), size, sigma)
    return hm


def test_box_decode_recovers_boxes_from_corner_maps():
    boxes = boxes_batch(3)
    hm = _box_maps(boxes, 2.0, (64, 48))
    dec, conf = decode_part_boxes(hm, 2.0, refine="dark")
    assert dec.shape == (3, 3, 4) and conf.shape == (3, 3)
    assert (dec - boxes).abs().max() < 0.25
    assert (conf > 0.9).all()


def test_box_decode_outvotes_a_wrong_corner_and_fills_a_missing_one():
    boxes = boxes_batch(1)
    stride = 2.0
    hm = _box_maps(boxes, stride, (64, 48))
    clean, clean_conf = decode_part_boxes(hm, stride, refine="dark")
    # left hand: its top-left corner peak jumps 20 crop px away (another hand, say)
    k = LEFT * 5 + 0
    wrong = boxes[0, LEFT, :2] + torch.tensor([20.0, 20.0])
    hm_bad = hm.clone()
    hm_bad[0, k] = gaussian_heatmaps((wrong / stride)[None, None], torch.ones(1, 1), (64, 48), 2.0)[0][0, 0]
    bad, bad_conf = decode_part_boxes(hm_bad, stride, refine="dark")
    naive, _ = decode_part_boxes(hm_bad, stride, refine="dark", iterations=0)
    err = (bad[0, LEFT] - boxes[0, LEFT]).abs().max()
    assert err < 0.5, err
    assert (naive[0, LEFT] - boxes[0, LEFT]).abs().max() > 5  # without the check the corner drags the box
    assert bad_conf[0, LEFT] < clean_conf[0, LEFT] - 0.1
    assert torch.allclose(bad[0, FACE], clean[0, FACE]) and torch.allclose(bad[0, RIGHT], clean[0, RIGHT])
    # face: bottom-right corner map empty -> reflected through the centre
    hm_miss = hm.clone()
    hm_miss[0, FACE * 5 + 2] = 0
    miss, miss_conf = decode_part_boxes(hm_miss, stride, refine="dark")
    assert (miss[0, FACE] - boxes[0, FACE]).abs().max() < 0.5
    assert miss_conf[0, FACE] < clean_conf[0, FACE]


# ----------------------------------------------------------------------------- RoIs
def test_rois_follow_the_train_switch():
    net = tiny()
    images = torch.randint(0, 256, (2, 3, H, W), dtype=torch.uint8)
    gt = boxes_batch(2)
    valid = torch.tensor([[True, True, False], [True, True, True]])
    expected_gt = square_boxes(gt, net.roi_margin, net.min_roi_size)
    net.train()
    out = net(images, part_boxes=gt, part_valid=valid)
    pred_rois = square_boxes(out["body_boxes"], net.roi_margin, net.min_roi_size)
    assert torch.allclose(out["part_boxes"][valid], expected_gt[valid])
    assert torch.allclose(out["part_boxes"][~valid], pred_rois[~valid])  # invalid part -> BodyNet's box
    zero = gt.clone()
    zero[1, FACE] = 0  # a zero box counts as invalid even when flagged valid
    out = net(images, part_boxes=zero, part_valid=torch.ones(2, 3, dtype=torch.bool))
    assert torch.allclose(out["part_boxes"][1, FACE], square_boxes(out["body_boxes"], 1.25, 6.0)[1, FACE])
    net.eval()
    with torch.no_grad():
        out = net(images, part_boxes=gt, part_valid=valid)
    assert torch.allclose(out["part_boxes"], square_boxes(out["body_boxes"], net.roi_margin, net.min_roi_size))
    pred_net = tiny(train_rois="pred").train()
    out = pred_net(images, part_boxes=gt, part_valid=valid)
    assert torch.allclose(out["part_boxes"], square_boxes(out["body_boxes"], 1.25, 6.0))
    assert all(not v.requires_grad for k, v in out.items() if k in ("part_boxes", "body_boxes"))


def test_gt_roi_jitter_is_bounded_and_random():
    net = tiny(roi_jitter_shift=0.1, roi_jitter_scale=0.2).train()
    gt = boxes_batch(2)
    images = torch.zeros(2, 3, H, W, dtype=torch.uint8)
    a = net(images, part_boxes=gt)["part_boxes"]
    b = net(images, part_boxes=gt)["part_boxes"]
    base = square_boxes(gt, net.roi_margin, net.min_roi_size)
    side = base[..., 2] - base[..., 0]
    assert not torch.allclose(a, b)
    centre_shift = ((a[..., :2] + a[..., 2:]) / 2 - (base[..., :2] + base[..., 2:]) / 2).abs().amax(-1)
    assert (centre_shift <= 0.1 * side + 1e-4).all()
    ratio = (a[..., 2] - a[..., 0]) / side
    assert ((ratio >= 0.8 - 1e-5) & (ratio <= 1.2 + 1e-5)).all()


def test_roi_round_trip_image_to_roi_and_back_within_half_a_pixel():
    """Keypoints placed in image px -> crop (rotated, flipped samples) -> Gaussian targets in the frame of
    the RoIs -> decode -> image px: back within 0.5 px."""
    net = tiny().eval()
    rng = np.random.default_rng(0)
    b = 4
    center = np.array([[300.0, 200.0], [120.0, 260.0], [410.0, 90.0], [250.0, 250.0]])
    size = np.array([[150.0, 200.0], [90.0, 120.0], [240.0, 320.0], [120.0, 160.0]])
    rotation = np.array([0.0, 20.0, -35.0, 0.0])
    flipped = np.array([False, True, False, True])
    m = affine_matrix(center, size, rotation, (W, H), flip=flipped)
    # a person inside each crop: keypoints drawn in crop px, mapped to the image (the ground truth)
    crop_pts = rng.uniform([20, 12], [W - 20, H - 12], size=(b, COCO_WHOLEBODY.num_keypoints, 2))
    for i, part in enumerate(BOX_PARTS):  # parts clustered so their boxes are small
        sl = COCO_WHOLEBODY.slice(part)
        c = np.array([[30.0 + 25 * i, 40.0 + 10 * i]])
        crop_pts[:, sl] = c + rng.uniform(-7, 7, size=(b, sl.stop - sl.start, 2))
    inv = np.linalg.inv(np.concatenate([m, np.tile([[[0, 0, 1.0]]], (b, 1, 1))], axis=1))[:, :2]
    img_pts = apply_affine(inv, crop_pts)
    # what the dataset does: image -> crop, then a flipped person's keypoints are relabelled
    kp_crop = np.concatenate([apply_affine(m, img_pts), np.ones((b, COCO_WHOLEBODY.num_keypoints, 1))], -1)
    kp_crop[flipped] = kp_crop[flipped][:, COCO_WHOLEBODY.flip_index]
    kp = torch.as_tensor(kp_crop, dtype=torch.float32)
    part_boxes = torch.stack(
        [torch.cat([kp[:, COCO_WHOLEBODY.slice(p), :2].amin(1), kp[:, COCO_WHOLEBODY.slice(p), :2].amax(1)], -1)
         for p in BOX_PARTS], 1,
    )
    rois = square_boxes(part_boxes, net.roi_margin, net.min_roi_size)
    hs = (H // 2, W // 2)  # tiny BodyNet maps are at stride 2
    body, _ = encode_body_targets(kp[:, :NUM_BODY_KEYPOINTS], part_boxes, torch.ones(b, 3, dtype=torch.bool), hs, 2.0, 2.0)
    outputs = {"body_heatmaps": body, "part_boxes": rois}
    for i, part in enumerate(BOX_PARTS):
        outputs[f"{part}_heatmaps"], _ = encode_roi_targets(kp[:, COCO_WHOLEBODY.slice(part)], rois[:, i], net.roi_size, 1.5)
    dec = net.decode(outputs, refine="dark")
    meta = {"center": center, "size": size, "rotation": rotation, "flipped": flipped, "image_id": np.arange(b)}
    res = to_image(dec, meta, (W, H))
    err = np.linalg.norm(res["keypoints"][..., :2] - img_pts, axis=-1)  # same identities as in the image
    zoom = (size[:, 0] / W)[:, None]  # image px per crop px
    assert (err / zoom).max() < 0.5, (err / zoom).max()
    # part boxes of unrotated crops come back in image px as their part's keypoint box (rotated crops
    # give the axis-aligned hull of the rotated box)
    upright = rotation == 0
    for j, part in enumerate(BOX_PARTS):
        pts = img_pts[upright][:, COCO_WHOLEBODY.slice(part)]
        got = res["part_boxes"][upright, j]
        assert np.abs(got - np.concatenate([pts.min(1), pts.max(1)], -1)).max() < 0.5 * zoom.max()


# ----------------------------------------------------------------------------- zoom
def test_zoom_batches_every_roi_in_one_call_per_map_and_one_call_per_head(monkeypatch):
    net = tiny().eval()
    calls = {"roi_align": 0, "face": 0, "hand": 0}
    real = zoomnet_module.roi_align

    def counting(*a, **k):
        calls["roi_align"] += 1
        return real(*a, **k)

    monkeypatch.setattr(zoomnet_module, "roi_align", counting)
    net.face_head.register_forward_hook(lambda *a: calls.__setitem__("face", calls["face"] + 1))
    net.hand_head.register_forward_hook(lambda *a: calls.__setitem__("hand", calls["hand"] + 1))
    with torch.no_grad():
        net(torch.zeros(5, 3, H, W, dtype=torch.uint8))
    assert calls == {"roi_align": 2, "face": 1, "hand": 1}


def test_roi_features_come_from_f1_and_f2_of_the_roi():
    """The heads see roi_align(aligned=True) of F1 at S x S and of F2 at S/2 x S/2 over the RoI."""
    net = tiny().eval()
    seen = {}
    net.face_head.register_forward_hook(lambda m, inp, out: seen.update(face=inp))
    f1, f2 = torch.randn(2, 16, H // 2, W // 2), torch.randn(2, 64, H // 4, W // 4)
    rois = boxes_batch(2)
    with torch.no_grad():
        net.zoom(f1, f2, rois)
    idx = torch.arange(2, dtype=torch.float32)[:, None]
    r = torch.cat([idx, rois[:, FACE]], 1)
    assert torch.allclose(seen["face"][0], roi_align(f1, r, (32, 32), 0.5, aligned=True), atol=1e-6)
    assert torch.allclose(seen["face"][1], roi_align(f2, r, (16, 16), 0.25, aligned=True), atol=1e-6)


def test_shared_hand_head_sees_left_hands_mirrored_as_right_hands():
    """Mirror-symmetric feature maps and mirrored hand RoIs: the hand head receives identical inputs for
    the two hands, and the left-hand maps come out as the mirror of the right-hand maps."""
    net = tiny().eval()
    g1, g2 = torch.randn(2, 16, H // 2, W // 2), torch.randn(2, 64, H // 4, W // 4)
    f1, f2 = g1 + g1.flip(-1), g2 + g2.flip(-1)
    right = torch.tensor([[60.0, 50.0, 84.0, 74.0], [58.0, 70.0, 90.0, 102.0]])
    left = torch.stack([W - right[:, 2], right[:, 1], W - right[:, 0], right[:, 3]], -1)
    rois = torch.stack([torch.tensor([[30.0, 8.0, 66.0, 44.0]] * 2), left, right], 1)
    seen = {}
    net.hand_head.register_forward_hook(lambda m, inp, out: seen.update(r1=inp[0], r2=inp[1]))
    with torch.no_grad():
        _, lh, rh = net.zoom(f1, f2, rois)
    assert seen["r1"].shape[0] == 4  # both hands of both persons in one call
    assert torch.allclose(seen["r1"][:2], seen["r1"][2:], atol=1e-5)
    assert torch.allclose(seen["r2"][:2], seen["r2"][2:], atol=1e-5)
    assert torch.allclose(lh, rh.flip(-1), atol=1e-5)
    assert not torch.allclose(lh, rh, atol=1e-3)  # the maps are not trivially symmetric


# ----------------------------------------------------------------------------- flip test
def test_mirror_rois_swaps_hands_and_is_an_involution():
    rois = boxes_batch(2)
    m = mirror_rois(rois, W)
    assert torch.allclose(m[:, LEFT], torch.stack([W - rois[:, RIGHT, 2], rois[:, RIGHT, 1], W - rois[:, RIGHT, 0], rois[:, RIGHT, 3]], -1))
    assert torch.allclose(mirror_rois(m, W), rois)


def test_flip_test_on_a_symmetric_image_gives_mirrored_keypoints():
    net = tiny().eval()
    torch.manual_seed(1)
    half = torch.randint(0, 256, (1, 3, H, W // 2), dtype=torch.uint8)
    image = torch.cat([half, half.flip(-1)], -1)
    assert torch.equal(image, image.flip(-1))
    face = torch.tensor([[30.0, 10.0, 66.0, 46.0]])
    right = torch.tensor([[64.0, 60.0, 88.0, 84.0]])
    left = torch.stack([W - right[:, 2], right[:, 1], W - right[:, 0], right[:, 3]], -1)
    rois = torch.stack([face, left, right], 1)  # a symmetric set of RoIs
    with torch.no_grad():
        first = net(image, rois=rois)
        dec = net.predict(image, flip_test=True, refine="quarter", outputs=first)
        single = net.decode(first, refine="quarter")
    kp = dec["keypoints"][0]
    fi = torch.as_tensor(COCO_WHOLEBODY.flip_index.copy())
    paired = fi != torch.arange(len(fi))
    assert torch.allclose(kp[paired, 0], W - kp[fi[paired], 0], atol=1e-4)
    assert torch.allclose(kp[paired, 1], kp[fi[paired], 1], atol=1e-4)
    assert torch.allclose(kp[paired, 2], kp[fi[paired], 2], atol=1e-5)
    # the single pass is not symmetric: the averaging does it
    assert not torch.allclose(single["keypoints"][0, paired, 0], W - single["keypoints"][0, fi[paired], 0], atol=1e-2)


def test_flip_test_merges_channels_by_the_spec():
    """For a symmetric input the flipped pass equals the first one; merging them must give maps that are
    fixed points of the channel flip, for body (incl. box corners), face and both hands."""
    net = tiny()
    torch.manual_seed(2)
    out = {
        "body_heatmaps": torch.rand(1, len(BODY_CHANNELS), 64, 48),
        "face_heatmaps": torch.rand(1, 68, 32, 32),
        "lefthand_heatmaps": torch.rand(1, 21, 32, 32),
        "righthand_heatmaps": torch.rand(1, 21, 32, 32),
    }
    merged = net.average_flipped(out, out)  # a symmetric input's flipped pass equals its first pass
    assert torch.allclose(flip_heatmaps(merged["body_heatmaps"], net._body_flip), merged["body_heatmaps"])
    assert torch.allclose(flip_heatmaps(merged["face_heatmaps"], net._face_flip), merged["face_heatmaps"])
    assert torch.allclose(merged["lefthand_heatmaps"], merged["righthand_heatmaps"].flip(-1))
    # the left-hand box corners of BodyNet swap with the right-hand ones, TL <-> TR
    tl_left = BODY_CHANNELS.index("lefthand_top_left")
    assert net._body_flip[tl_left] == BODY_CHANNELS.index("righthand_top_right")


# ----------------------------------------------------------------------------- variants, errors
def _head_loss(out: dict) -> torch.Tensor:
    return sum(out[f"{p}_heatmaps"].square().mean() for p in BOX_PARTS)


@pytest.mark.parametrize("variant", ["joint", "reuse", "independent"])
def test_gradients_of_the_part_heads_reach_featurenet_only_when_joint(variant):
    net = tiny(variant=variant).train()
    out = net(torch.randint(0, 256, (2, 3, H, W), dtype=torch.uint8), part_boxes=boxes_batch(2))
    _head_loss(out).backward()
    fn_grad = sum(p.grad.abs().sum() for p in net.feature_net.parameters() if p.grad is not None)
    head_grad = sum(p.grad.abs().sum() for p in net.hand_head.parameters() if p.grad is not None)
    assert head_grad > 0
    assert all(p.grad is None for p in net.body_net.parameters())
    if variant == "joint":
        assert fn_grad > 0
        assert net.feature_net.conv1[0].weight.grad.abs().sum() > 0  # through the F1 RoIs
    else:
        assert fn_grad == 0
    if variant == "independent":
        assert sum(p.grad.abs().sum() for p in net.part_feature_net.parameters() if p.grad is not None) > 0


def test_bad_input_sizes_and_settings_raise_clear_errors():
    net = tiny().eval()
    with pytest.raises(ValueError, match="multiples of 32"):
        net(torch.zeros(1, 3, 100, 96, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        net(torch.zeros(1, 1, 128, 96))
    with pytest.raises(ValueError, match="variant"):
        tiny(variant="frozen")
    with pytest.raises(ValueError, match="train_rois"):
        tiny(train_rois="oracle")
    with pytest.raises(ValueError, match="multiples of 32"):
        tiny(input_size=(100, 128))


def test_uint8_and_float_inputs_agree():
    net = tiny().eval()
    images = torch.randint(0, 256, (1, 3, H, W), dtype=torch.uint8)
    with torch.no_grad():
        a = net(images)["body_heatmaps"]
        b = net(images.float())["body_heatmaps"]
    assert torch.allclose(a, b, atol=1e-5)
