"""Heatmap losses: zero at the targets, blind to what is not labelled, encoded for the RoIs used, per-part
reporting, and a tiny ZoomNet that learns from them."""

from __future__ import annotations

import pytest
import torch

from model_utils import TINY_ZOOMNET
from wholebody.codecs import NUM_BODY_KEYPOINTS, encode_body_targets, encode_roi_targets, gaussian_heatmaps
from wholebody.keypoints import BOX_PARTS, COCO_WHOLEBODY, PARTS
from wholebody.models import HeatmapLoss, HRNetPose, ZoomNet, ZoomNetLoss

pytestmark = pytest.mark.usefixtures("one_thread")

W, H = 96, 128
TINY = TINY_ZOOMNET


def make_batch(b: int = 2, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    kp = torch.rand(b, COCO_WHOLEBODY.num_keypoints, 3, generator=g) * torch.tensor([W - 20, H - 20, 1.0]) + torch.tensor([10, 10, 0.0])
    kp[..., 2] = 2.0
    boxes = []
    for i, part in enumerate(BOX_PARTS):
        sl = COCO_WHOLEBODY.slice(part)
        c = torch.tensor([25.0 + 22 * i, 30.0 + 25 * i])
        kp[:, sl, :2] = c + (torch.rand(b, sl.stop - sl.start, 2, generator=g) - 0.5) * 14
        boxes.append(torch.cat([kp[:, sl, :2].amin(1), kp[:, sl, :2].amax(1)], -1))
    return {
        "image": torch.randint(0, 256, (b, 3, H, W), dtype=torch.uint8, generator=g),
        "keypoints": kp,
        "part_boxes": torch.stack(boxes, 1),
        "part_valid": torch.ones(b, 3, dtype=torch.bool),
    }


def perfect_outputs(batch: dict, rois: torch.Tensor, loss: ZoomNetLoss) -> dict:
    kp = batch["keypoints"]
    body, _ = encode_body_targets(kp[:, :NUM_BODY_KEYPOINTS], batch["part_boxes"], batch["part_valid"], (H // 2, W // 2), 2.0, loss.body_sigma)
    out = {"body_heatmaps": body, "part_boxes": rois}
    for i, part in enumerate(BOX_PARTS):
        out[f"{part}_heatmaps"], _ = encode_roi_targets(kp[:, COCO_WHOLEBODY.slice(part)], rois[:, i], 32, loss.sigmas[part])
    return out


def rois_of(batch: dict) -> torch.Tensor:
    from wholebody.codecs import square_boxes

    return square_boxes(batch["part_boxes"], 1.25, 6.0)


def test_zoomnet_loss_is_zero_at_the_targets_and_reports_every_part():
    batch = make_batch()
    loss = ZoomNetLoss(body_sigma=2.0, face_sigma=1.5, hand_sigma=1.5)
    out = perfect_outputs(batch, rois_of(batch), loss)
    res = loss(out, batch)
    assert set(res) == {"total", "body", "boxes", "face", "lefthand", "righthand"}
    assert all(float(v) < 1e-10 for v in res.values())
    out["face_heatmaps"] = out["face_heatmaps"] + 0.1
    res = loss(out, batch)
    assert res["face"] > 0 and res["body"] < 1e-10 and torch.isclose(res["total"], res["face"])


def test_unlabelled_keypoints_and_invalid_parts_weigh_nothing():
    batch = make_batch()
    loss = ZoomNetLoss(body_sigma=2.0, face_sigma=1.5, hand_sigma=1.5)
    out = perfect_outputs(batch, rois_of(batch), loss)
    # keypoint 0 (nose) of person 0 unlabelled: anything predicted for it is free
    batch["keypoints"][0, 0, 2] = 0
    out["body_heatmaps"][0, 0] = 5.0
    # person 1's left hand invalid: box not labelled, its keypoints all zero (as the dataset ships them)
    batch["part_valid"][1, 1] = False
    batch["keypoints"][1, COCO_WHOLEBODY.slice("lefthand")] = 0
    out["lefthand_heatmaps"][1] = 3.0
    out["body_heatmaps"][1, NUM_BODY_KEYPOINTS + 5 : NUM_BODY_KEYPOINTS + 10] = 3.0
    res = loss(out, batch)
    assert all(float(v) < 1e-10 for v in res.values()), res
    out["body_heatmaps"][0, 1] = 5.0  # a labelled keypoint does count
    assert loss(out, batch)["body"] > 0


def test_part_targets_follow_the_rois_actually_used():
    batch = make_batch()
    loss = ZoomNetLoss(body_sigma=2.0, face_sigma=1.5, hand_sigma=1.5)
    rois = rois_of(batch)
    out = perfect_outputs(batch, rois, loss)
    moved = dict(out, part_boxes=rois + torch.tensor([3.0, 0.0, 3.0, 0.0]))
    res = loss(moved, batch)
    assert all(res[p] > 1e-4 for p in BOX_PARTS) and res["body"] < 1e-10


def test_part_weights_and_kinds():
    batch = make_batch()
    base = ZoomNetLoss(body_sigma=2.0)
    out = perfect_outputs(batch, rois_of(batch), base)
    out = {k: v + 0.05 * torch.randn_like(v) if k.endswith("heatmaps") else v for k, v in out.items()}
    a = base(out, batch)
    b = ZoomNetLoss(body_sigma=2.0, weights={"face": 3.0, "boxes": 0.0})(out, batch)
    assert torch.isclose(b["total"], a["total"] + 2 * a["face"] - a["boxes"])
    sse = ZoomNetLoss(body_sigma=2.0, kind="sse")(out, batch)
    assert torch.isclose(sse["face"], a["face"] * 68 * 32 * 32, rtol=1e-4)
    with pytest.raises(ValueError, match="unknown part"):
        ZoomNetLoss(weights={"feet": 1.0})
    with pytest.raises(ValueError, match="kind"):
        ZoomNetLoss(kind="l1")


def test_baseline_loss_parts_add_up_to_its_single_loss():
    batch = make_batch()
    net_parts = PARTS
    loss = HeatmapLoss(parts=net_parts, sigma=2.0)
    kp = batch["keypoints"]
    target, _ = gaussian_heatmaps(kp[..., :2] / 4, (kp[..., 2] > 0).float(), (H // 4, W // 4), 2.0)
    pred = target + 0.05 * torch.randn_like(target)
    res = loss({"heatmaps": pred}, batch)
    assert set(res) == {"total", "body", "face", "lefthand", "righthand"}
    one = ((pred - target) ** 2).mean()
    assert torch.isclose(res["total"], one, rtol=1e-5)
    assert torch.isclose(sum(res[p] for p in ("body", "face", "lefthand", "righthand")), one, rtol=1e-5)
    body_only = HeatmapLoss(parts=["body"], sigma=2.0)
    assert set(body_only({"heatmaps": pred[:, :17]}, batch)) == {"total", "body"}
    with pytest.raises(ValueError, match="expects 17 heatmaps"):
        body_only({"heatmaps": pred}, batch)


def test_tiny_zoomnet_learns_a_fixed_batch():
    torch.manual_seed(0)
    net = ZoomNet(**TINY).train()
    loss = ZoomNetLoss(body_sigma=2.0, face_sigma=1.5, hand_sigma=1.5)
    batch = make_batch(2)
    opt = torch.optim.Adam(net.parameters(), 5e-3)
    first = None
    for _ in range(20):
        res = loss(net(batch["image"], batch["part_boxes"], batch["part_valid"]), batch)
        opt.zero_grad()
        res["total"].backward()
        opt.step()
        first = first if first is not None else {k: float(v.detach()) for k, v in res.items()}
    last = {k: float(v.detach()) for k, v in res.items()}
    assert all(torch.isfinite(torch.tensor(list(last.values()))))
    for part in ("body", "boxes", "face", "lefthand", "righthand"):
        assert last[part] < 0.85 * first[part], (part, first[part], last[part])


def test_baseline_learns_and_accepts_the_training_call():
    torch.manual_seed(0)
    net = HRNetPose(input_size=(W, H), parts=PARTS, stem_width=16, stem_planes=16, stem_blocks=1,
                    widths=(16, 32, 64, 128), num_modules=1, num_blocks=1).train()
    loss = HeatmapLoss(sigma=2.0)
    batch = make_batch(4)
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    totals = []
    for _ in range(15):
        res = loss(net(batch["image"], part_boxes=batch["part_boxes"], part_valid=batch["part_valid"]), batch)
        opt.zero_grad()
        res["total"].backward()
        opt.step()
        totals.append(float(res["total"].detach()))
    assert totals[-1] < 0.7 * totals[0]
