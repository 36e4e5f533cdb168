"""Crop -> image mapping and COCO-WholeBody results rows, on synthetic persons and on the real sample."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from wholebody.codecs import NUM_BODY_KEYPOINTS, encode_body_targets, encode_roi_targets, square_boxes
from wholebody.geometry import (
    affine_matrix,
    apply_affine,
    box_to_center_size,
    keypoints_from_file,
    transform_boxes,
    xywh_to_xyxy,
)
from wholebody.keypoints import BOX_PARTS, COCO_WHOLEBODY, EVAL_PARTS, PARTS
from wholebody.models import HRNetPose, ZoomNet, result_rows, to_image
from wholebody.models.postprocess import part_scores, rows_to_arrays

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = COCO_WHOLEBODY


def _meta(b: int, flipped=None, rotation=None) -> dict:
    rng = np.random.default_rng(3)
    return {
        "image_id": torch.arange(10, 10 + b),
        "ann_id": torch.arange(100, 100 + b),
        "center": torch.as_tensor(rng.uniform(100, 400, (b, 2))),
        "size": torch.as_tensor(rng.uniform(90, 300, (b, 1)) * np.array([[0.75, 1.0]])),
        "rotation": torch.as_tensor(np.zeros(b) if rotation is None else rotation, dtype=torch.float64),
        "flipped": torch.as_tensor(np.zeros(b, bool) if flipped is None else flipped),
        "score": torch.full((b,), 0.9, dtype=torch.float32),
    }


def test_to_image_inverts_the_crop_affine_and_undoes_flips():
    b = 4
    meta = _meta(b, flipped=[False, True, False, True], rotation=[0.0, 0.0, 30.0, -15.0])
    rng = np.random.default_rng(0)
    crop = rng.uniform(0, [96, 128], size=(b, 133, 2))
    boxes = np.sort(rng.uniform(0, 96, size=(b, 3, 2, 2)), axis=2).transpose(0, 1, 3, 2).reshape(b, 3, 4)
    decoded = {
        "keypoints": torch.as_tensor(np.concatenate([crop, rng.uniform(0, 1, (b, 133, 1))], -1), dtype=torch.float32),
        "part_boxes": torch.as_tensor(boxes, dtype=torch.float32),
        "part_box_scores": torch.tensor([[0.9, 0.8, 0.7]] * b),
    }
    res = to_image(decoded, meta, (96, 128))
    m = affine_matrix(meta["center"].numpy(), meta["size"].numpy(), meta["rotation"].numpy(), (96, 128), meta["flipped"].numpy())
    # mapping the result back into the crop gives the crop points (with the flipped relabelling)
    back = apply_affine(m, res["keypoints"][..., :2])
    for i in range(b):
        expect = crop[i][SPEC.flip_index] if meta["flipped"][i] else crop[i]
        assert np.abs(back[i] - expect).max() < 1e-3
    assert np.allclose(res["keypoints"][1, :, 2], decoded["keypoints"][1, SPEC.flip_index.copy(), 2].numpy())
    assert np.allclose(res["part_box_scores"][1], [0.9, 0.7, 0.8])  # hands swap on flipped samples
    assert np.allclose(res["part_box_scores"][0], [0.9, 0.8, 0.7])
    assert np.allclose(res["part_boxes"][0], transform_boxes(np.linalg.inv(np.vstack([m[0], [0, 0, 1]]))[:2], boxes[0]))
    assert res["image_id"].tolist() == [10, 11, 12, 13] and res["ann_id"].tolist() == [100, 101, 102, 103]
    with pytest.raises(KeyError, match="center"):
        to_image(decoded, {"image_id": meta["image_id"]}, (96, 128))


def test_part_scores_follow_the_documented_rescoring():
    s = np.zeros((2, 133))
    s[0, SPEC.slice("body")] = 0.1
    s[0, :4] = [0.9, 0.5, 0.3, 0.19]  # above 0.2: 0.9, 0.5, 0.3
    s[1, SPEC.slice("face")] = 0.6
    box = np.array([0.8, 1.0])
    sc = part_scores(s, box, threshold=0.2)
    assert set(sc) == set(EVAL_PARTS)
    assert np.isclose(sc["body"][0], 0.8 * np.mean([0.9, 0.5, 0.3]))
    assert sc["body"][1] == 0 and sc["face"][0] == 0 and np.isclose(sc["face"][1], 0.6)
    assert np.isclose(sc["wholebody"][1], 0.6)


def test_result_rows_use_the_spec_fields_and_plain_numbers():
    b = 2
    meta = _meta(b)
    kp = torch.rand(b, 133, 3) * torch.tensor([96.0, 128.0, 1.0])
    decoded = {"keypoints": kp, "part_boxes": torch.tensor([[[1.0, 2.0, 11.0, 22.0]] * 3] * b),
               "part_box_scores": torch.tensor([[0.5, 0.4, 0.0]] * b)}
    decoded["part_boxes"][1, 2] = 0  # a box the model does not give
    rows = result_rows(to_image(decoded, meta, (96, 128)))
    assert len(rows) == b
    row = rows[0]
    json.dumps(rows)  # plain Python numbers throughout
    assert row["image_id"] == 10 and row["ann_id"] == 100 and row["category_id"] == 1
    for part in PARTS:
        assert len(row[SPEC.annotation_keys[part]]) == 3 * SPEC.num_part(part)
        assert all(type(v) is float for v in row[SPEC.annotation_keys[part]])
    for part in EVAL_PARTS:
        assert type(row[SPEC.score_keys[part]]) is float
    for part in BOX_PARTS:
        assert len(row[SPEC.box_keys[part]]) == 4
    assert np.isclose(rows[0]["face_box_score"], 0.9 * 0.5, atol=1e-6)
    w = rows[0]["face_box"][2]
    assert np.isclose(w, 10.0 * meta["size"][0, 0].item() / 96, rtol=1e-5)  # xywh in image px
    assert "righthand_box" in rows[0] and "righthand_box" not in rows[1]
    assert all("bbox_id" not in r for r in rows)  # ground-truth persons are keyed by ann_id only
    # detected persons: keyed by their box's index in the detection file, never by a -1 ann_id
    det_meta = {**meta, "ann_id": torch.full((b,), -1), "bbox_id": torch.arange(7, 7 + b)}
    det_rows = result_rows(to_image(decoded, det_meta, (96, 128)))
    assert [r["bbox_id"] for r in det_rows] == list(range(7, 7 + b)) and all("ann_id" not in r for r in det_rows)


def test_rows_to_arrays_reads_the_rows_back():
    b = 3
    rng = np.random.default_rng(5)
    kp = rng.uniform(0, 1, (b, 133, 3)) * [400.0, 300.0, 1.0]
    boxes = np.sort(rng.uniform(0, 300, (b, 3, 2, 2)), axis=2).transpose(0, 1, 3, 2).reshape(b, 3, 4)
    boxes[2, 1] = 0  # a box the model does not give: not in the row
    box_scores = rng.uniform(0.1, 1, (b, 3))
    box_scores[2, 1] = 0
    res = {"keypoints": kp, "part_boxes": boxes, "part_box_scores": box_scores, "image_id": np.arange(b),
           "box_score": np.full(b, 0.5)}
    rows = result_rows(res)
    assert "lefthand_box" not in rows[2]
    k, bx = rows_to_arrays(rows)
    assert k.shape == (b, 133, 3) and bx.shape == (b, 3, 5)
    np.testing.assert_allclose(k, kp)
    np.testing.assert_allclose(bx[..., :4], boxes, atol=1e-9)
    np.testing.assert_allclose(bx[..., 4], box_scores * 0.5)  # the rows' box scores: person x box
    assert not bx[2, 1].any()
    _, no_score = rows_to_arrays([{k: v for k, v in rows[0].items() if k != "face_box_score"}])
    assert no_score[0, 0, 4] == 1.0
    assert rows_to_arrays([])[0].shape == (0, 133, 3)


def test_baseline_without_parts_writes_score_zero_and_no_boxes():
    net = HRNetPose(input_size=(64, 96), parts=["body"], stem_width=8, stem_planes=8, stem_blocks=1,
                    widths=(8, 16, 32, 64), num_modules=1, num_blocks=1).eval()
    with torch.no_grad():
        dec = net.predict(torch.zeros(1, 3, 96, 64, dtype=torch.uint8), flip_test=True)
    row = result_rows(to_image(dec, _meta(1), (64, 96)))[0]
    assert all(v == 0.0 for v in row["face_kpts"][2::3]) and row["face_score"] == 0.0
    assert not any(k in row for k in SPEC.box_keys.values())
    # exactly the shared interface: a keyword meant for ZoomNet is an error, not silently ignored
    net(torch.zeros(1, 3, 96, 64, dtype=torch.uint8), part_boxes=torch.zeros(1, 3, 4), part_valid=torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match="rois"):
        net(torch.zeros(1, 3, 96, 64, dtype=torch.uint8), rois=torch.zeros(1, 3, 4))


def test_baseline_flip_test_on_a_symmetric_image_gives_mirrored_keypoints():
    torch.manual_seed(0)
    net = HRNetPose(input_size=(64, 96), parts=["body", "foot"], stem_width=8, stem_planes=8, stem_blocks=1,
                    widths=(8, 16, 32, 64), num_modules=1, num_blocks=1, upsample=2).eval()
    half = torch.randint(0, 256, (1, 3, 96, 32), dtype=torch.uint8)
    image = torch.cat([half, half.flip(-1)], -1)
    with torch.no_grad():
        first = net(image)
        dec = net.predict(image, flip_test=True, refine="quarter", outputs=first)
        single = net.decode(first, refine="quarter")
    n = SPEC.num_part("body") + SPEC.num_part("foot")
    kp, fi = dec["keypoints"][0, :n], torch.as_tensor(SPEC.flip_index[:n].copy())
    paired = fi != torch.arange(n)
    assert torch.allclose(kp[paired, 0], 64 - kp[fi[paired], 0], atol=1e-4)
    assert torch.allclose(kp[paired, 1:], kp[fi[paired], 1:], atol=1e-5)
    one = single["keypoints"][0, :n]
    assert not torch.allclose(one[paired, 0], 64 - one[fi[paired], 0], atol=1e-2)  # the averaging does it


def test_real_sample_ground_truth_through_the_zoomnet_decoder_scores_ap_1(real_sample_json):
    """The real COCO-WholeBody sample: each person's keypoints -> crop -> BodyNet and part-head Gaussian
    targets (RoIs from the GT boxes) -> ZoomNet.decode -> image -> rows -> the evaluator: AP 1 on all
    six parts and part boxes recovered."""
    from wholebody.evaluation import WholeBodyEvaluator, load_ground_truth

    gt = load_ground_truth(real_sample_json)
    keep = ~gt.iscrowd & (gt.keypoints[..., 2] > 0).any(-1)
    w, h = 192, 256
    net = ZoomNet(input_size=(w, h), stem_width=8, stem_planes=8, body_widths=(8, 16, 32, 64), body_modules=1,
                  body_blocks=1, body_upsample=2, head_widths=(8, 16), head_modules=1, head_blocks=1,
                  head_layer1_blocks=1, head_layer1_planes=8, roi_size=64)
    center, size = box_to_center_size(xywh_to_xyxy(gt.bbox[keep]), w / h, 1.25)
    n = int(keep.sum())
    m = affine_matrix(center, size, np.zeros(n), (w, h))
    kp = keypoints_from_file(gt.keypoints[keep])  # the evaluator's ground truth is as the file holds it
    kp[..., :2] = apply_affine(m, kp[..., :2])
    kp[kp[..., 2] <= 0] = 0
    pb = transform_boxes(m, xywh_to_xyxy(gt.part_boxes[keep]))
    valid = gt.part_box_valid[keep]
    kpt = torch.as_tensor(kp, dtype=torch.float32)
    pbt = torch.as_tensor(pb, dtype=torch.float32)
    body, _ = encode_body_targets(kpt[:, :NUM_BODY_KEYPOINTS], pbt, torch.as_tensor(valid), (h // 2, w // 2), 2.0, 2.0)
    rois = square_boxes(pbt, 1.25, 6.0)
    outputs = {"body_heatmaps": body, "part_boxes": rois}
    for i, part in enumerate(BOX_PARTS):
        outputs[f"{part}_heatmaps"], _ = encode_roi_targets(kpt[:, SPEC.slice(part)], rois[:, i], 64, 2.0)
    dec = net.decode(outputs, refine="dark")
    meta = {"image_id": gt.image_ids[gt.image_index[keep]], "ann_id": gt.ann_ids[keep], "center": center, "size": size}
    rows = result_rows(to_image(dec, meta, (w, h)))
    ev = WholeBodyEvaluator(real_sample_json)
    ev.process(rows)
    stats = ev.evaluate()
    for part in EVAL_PARTS:
        assert stats[part]["AP"] > 0.99, (part, stats[part])
    got = np.array([[r.get(SPEC.box_keys[p], [0, 0, 0, 0]) for p in BOX_PARTS] for r in rows])
    ok = valid & (dec["part_box_scores"].numpy() > 0.5)
    assert ok.sum() >= 3
    assert np.abs(got[ok] - gt.part_boxes[keep][ok]).max() < 1.0  # xywh image px
