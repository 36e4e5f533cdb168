import numpy as np
import pytest
import torch

from wholebody import codecs as C
from wholebody.keypoints import BODY_FOOT

g = torch.Generator().manual_seed(0)


def rand(*shape, lo=0.0, hi=1.0):
    return lo + (hi - lo) * torch.rand(*shape, generator=g)


@pytest.mark.parametrize("refine,tol", [("quarter", 0.5), ("dark", 0.05)])
def test_encode_decode_round_trip(refine, tol):
    h, w = 96, 72
    pts = torch.stack([rand(4, 23, lo=6, hi=w - 6), rand(4, 23, lo=6, hi=h - 6)], -1)
    hm, wt = C.gaussian_heatmaps(pts, torch.ones(4, 23), (h, w), sigma=3.0)
    assert hm.shape == (4, 23, h, w) and (wt == 1).all()
    dec, scores = C.decode_heatmaps(hm, refine=refine)
    err = (dec - pts).abs().max().item()
    assert err < tol, err
    assert (scores > 0.9).all()


def test_quarter_refine_beats_plain_argmax():
    pts = torch.stack([rand(2, 50, lo=5, hi=43), rand(2, 50, lo=5, hi=43)], -1)
    hm, _ = C.gaussian_heatmaps(pts, torch.ones(2, 50), (48, 48), sigma=2.0)
    e_none = (C.decode_heatmaps(hm, "none")[0] - pts).norm(dim=-1).mean()
    e_q = (C.decode_heatmaps(hm, "quarter")[0] - pts).norm(dim=-1).mean()
    e_d = (C.decode_heatmaps(hm, "dark")[0] - pts).norm(dim=-1).mean()
    assert e_d < e_q < e_none


def test_gaussian_peak_at_pixel_centre_and_weights():
    hm, wt = C.gaussian_heatmaps(torch.tensor([[[3.5, 2.5], [-50.0, 2.0], [1.0, float("nan")]]]),
                                 torch.tensor([[1.0, 1.0, 1.0]]), (6, 8), sigma=1.0)
    assert hm[0, 0, 2, 3] == 1.0
    assert wt.tolist() == [[1.0, 0.0, 0.0]]  # far outside, and NaN, get no target
    assert hm[0, 1].abs().sum() == 0 and hm[0, 2].abs().sum() == 0
    hm, wt = C.gaussian_heatmaps(torch.tensor([[[3.0, 3.0]]]), torch.tensor([[0.0]]), (6, 8), 1.0)
    assert wt.item() == 0 and hm.abs().sum() == 0


def test_box_points_round_trip():
    lo = rand(5, 3, 2, lo=0, hi=40)
    boxes = torch.cat([lo, lo + rand(5, 3, 2, lo=2, hi=30)], -1)
    pts = C.box_points(boxes)
    back, conf = C.boxes_from_points(pts, torch.ones(5, 3, 5))
    torch.testing.assert_close(back, boxes, atol=1e-4, rtol=0)
    assert torch.allclose(conf, torch.ones(5, 3))


def test_box_from_points_uses_centre_when_a_corner_is_missing():
    box = torch.tensor([10.0, 20.0, 50.0, 40.0])
    pts = C.box_points(box).clone()
    pts[1] = torch.tensor([300.0, -100.0])  # top-right corner decoded as garbage ...
    pts[2] = torch.tensor([300.0, 300.0])  # ... and so is bottom-right
    scores = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0])  # ... with zero confidence
    back, conf = C.boxes_from_points(pts, scores)
    torch.testing.assert_close(back, box, atol=1e-3, rtol=0)
    assert conf.item() == pytest.approx(0.6)


@pytest.mark.parametrize("refine", ["quarter", "dark"])
def test_body_targets_encode_decode(refine):
    b, stride, size = 3, 4.0, (96, 72)
    kp = torch.cat([torch.stack([rand(b, 23, lo=20, hi=268), rand(b, 23, lo=20, hi=364)], -1), torch.ones(b, 23, 1)], -1)
    kp[0, 5, 2] = 0  # one invisible keypoint
    lo = torch.stack([rand(b, 3, lo=20, hi=150), rand(b, 3, lo=20, hi=250)], -1)
    boxes = torch.cat([lo, lo + rand(b, 3, 2, lo=24, hi=80)], -1)
    valid = torch.tensor([[True, True, False]] * b)
    hm, wt = C.encode_body_targets(kp, boxes, valid, size, stride, sigma=3.0)
    assert hm.shape == (b, 38, 96, 72) and len(C.BODY_CHANNELS) == 38
    assert wt[0, 5] == 0 and wt[1, 5] == 1
    assert (wt[:, 23 + 10 :] == 0).all() and (wt[:, 23 : 23 + 10] == 1).all()
    out = C.decode_body_heatmaps(hm, stride, refine=refine)
    vis = kp[..., 2] > 0
    err = (out["keypoints"] - kp[..., :2]).abs()[vis].max().item() / stride
    assert err < 0.5  # heatmap px
    assert (out["boxes"][:, :2] - boxes[:, :2]).abs().max() < 1.0 * stride  # boxes within 1 hm px
    assert (out["box_scores"][:, :2] > 0.9).all()


def test_roi_frame_round_trip_and_targets():
    boxes = torch.tensor([[10.0, 20.0, 42.0, 52.0], [0.0, 0.0, 128.0, 128.0]])
    pts = torch.stack([rand(2, 21, lo=12, hi=40), rand(2, 21, lo=22, hi=50)], -1)
    roi = C.to_roi(pts, boxes, 64)
    torch.testing.assert_close(C.from_roi(roi, boxes, 64), pts, atol=1e-4, rtol=0)
    # box corners map to the RoI frame's edges
    torch.testing.assert_close(C.to_roi(torch.tensor([[[10.0, 20.0], [42.0, 52.0]]]), boxes[:1], 64),
                               torch.tensor([[[0.0, 0.0], [64.0, 64.0]]]))
    kp = torch.cat([pts, torch.ones(2, 21, 1)], -1)
    hm, wt = C.encode_roi_targets(kp, boxes, 64, sigma=2.0)
    dec, _ = C.decode_heatmaps(hm, "dark")
    back = C.from_roi(dec, boxes, 64)
    # within half a RoI heatmap pixel, in crop px
    assert ((back - pts).abs() / ((boxes[:, None, 2:] - boxes[:, None, :2]) / 64)).max() < 0.5


def test_square_boxes():
    sq = C.square_boxes(torch.tensor([[10.0, 10.0, 30.0, 50.0]]), scale=1.5)
    torch.testing.assert_close(sq, torch.tensor([[-10.0, 0.0, 50.0, 60.0]]))


def test_flip_heatmaps_matches_flipped_encoding():
    w = 72
    kp = torch.cat([torch.stack([rand(2, 23, lo=5, hi=67), rand(2, 23, lo=5, hi=90)], -1), torch.ones(2, 23, 1)], -1)
    lo = torch.stack([rand(2, 3, lo=5, hi=30), rand(2, 3, lo=5, hi=60)], -1)
    boxes = torch.cat([lo, lo + 10], -1)
    valid = torch.ones(2, 3, dtype=torch.bool)
    hm, _ = C.encode_body_targets(kp, boxes, valid, (96, w), 1.0, 2.0)
    # mirror the inputs: x' = w - x, left/right keypoints and hand boxes swapped
    fk = kp[:, torch.as_tensor(BODY_FOOT.flip_index.copy())].clone()
    fk[..., 0] = w - fk[..., 0]
    fb = torch.stack([w - boxes[..., 2], boxes[..., 1], w - boxes[..., 0], boxes[..., 3]], -1)[:, [0, 2, 1]]
    hm_f, _ = C.encode_body_targets(fk, fb, valid, (96, w), 1.0, 2.0)
    torch.testing.assert_close(C.flip_heatmaps(hm, C.body_flip_index()), hm_f, atol=1e-5, rtol=0)
    idx = np.array(C.body_flip_index())
    assert (idx[idx] == np.arange(38)).all()


def test_decode_rejects_unknown_refine():
    with pytest.raises(ValueError, match="refine"):
        C.decode_heatmaps(torch.zeros(1, 1, 4, 4), refine="bogus")
