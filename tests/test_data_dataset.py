"""Top-down samples: the contract, pixels and targets moving together, flips, bad images."""

from __future__ import annotations

import logging

import albumentations as A
import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from wholebody.data.coco import PersonRecord, load_coco_wholebody
from wholebody.data.datamodule import MissingImagesError, check_image_files
from wholebody.data.dataset import (
    ImageReadError,
    TopDownDataset,
    crop_boxes_to_image,
    crop_to_image,
    read_image,
)
from wholebody.data.transforms import NO_AUGMENT, AugmentConfig, as_photometric, default_photometric
from wholebody.keypoints import COCO_WHOLEBODY as S

W, H = 96, 128
HEAVY = AugmentConfig(scale_factor=0.35, rotation_factor=45, rotation_prob=1.0, flip_prob=0.5, shift_factor=0.1,
                      half_body_prob=0.0)
# blobs drawn at these keypoints, one colour each (BGR); left and right wrists differ
BLOBS = {"left_wrist": (0, 0, 255), "right_wrist": (0, 255, 0), "nose": (255, 0, 0)}


def _record(path, kps: dict, image_size=(200, 160), bbox=(40.0, 20.0, 160.0, 150.0), boxes=None, ann_id=1, image_id=1):
    k = np.zeros((133, 3))
    for name, xy in kps.items():
        k[S.index(name)] = [*xy, 2]
    pb, pv = np.zeros((3, 4)), np.zeros(3, bool)
    for j, b in (boxes or {}).items():
        pb[j], pv[j] = b, True
    return PersonRecord(image_id=image_id, ann_id=ann_id, image_path=str(path), image_size=image_size,
                        bbox=np.array(bbox, float), keypoints=k, part_boxes=pb, part_valid=pv, area=1000.0)


def _blob_image(path, points: dict, size=(200, 160), sigma=2.5) -> None:
    """Gaussian blobs (sub-pixel centres, package convention) of distinct colours on black; PNG = lossless."""
    w, h = size
    xs, ys = np.arange(w) + 0.5, np.arange(h) + 0.5
    img = np.zeros((h, w, 3))
    for name, (x, y) in points.items():
        g = np.exp(-((xs[None] - x) ** 2 + (ys[:, None] - y) ** 2) / (2 * sigma**2))
        img += g[..., None] * np.array(BLOBS[name])
    cv2.imwrite(str(path), np.clip(img, 0, 255).astype(np.uint8))


def _centroid(crop_rgb: np.ndarray, bgr: tuple) -> np.ndarray | None:
    """Sub-pixel centre (package convention) of the blob of one colour in an RGB crop."""
    ch = int(np.argmax(bgr[::-1]))  # the blob's channel in RGB
    others = [c for c in range(3) if c != ch]
    m = crop_rgb[..., ch].astype(float) - crop_rgb[..., others].max(-1)
    m = np.where(m > 0.25 * m.max(), m, 0) if m.max() > 30 else None
    if m is None:
        return None
    ys, xs = np.mgrid[: m.shape[0], : m.shape[1]] + 0.5
    return np.array([(m * xs).sum(), (m * ys).sum()]) / m.sum()


@pytest.fixture()
def blob_record(tmp_path):
    pts = {"left_wrist": (150.3, 60.7), "right_wrist": (70.6, 90.2), "nose": (110.25, 40.8)}
    _blob_image(tmp_path / "blobs.png", pts)
    return _record(tmp_path / "blobs.png", pts), pts


def test_sample_contract(blob_record):
    rec, _ = blob_record
    ds = TopDownDataset([rec], (W, H), train=True, augment=HEAVY, photometric=default_photometric())
    s = ds[0]
    assert set(s) == {"image", "keypoints", "part_boxes", "part_valid", "meta"}  # no heatmaps: the loss encodes
    assert s["image"].dtype == torch.uint8 and s["image"].shape == (3, H, W)
    assert s["keypoints"].dtype == torch.float32 and s["keypoints"].shape == (133, 3)
    assert s["part_boxes"].dtype == torch.float32 and s["part_boxes"].shape == (3, 4)
    assert s["part_valid"].dtype == torch.bool and s["part_valid"].shape == (3,)
    m = s["meta"]
    expect = {"image_id": (torch.int64, ()), "ann_id": (torch.int64, ()), "bbox_id": (torch.int64, ()),
              "center": (torch.float64, (2,)),
              "size": (torch.float64, (2,)), "rotation": (torch.float64, ()), "flipped": (torch.bool, ()),
              "score": (torch.float32, ()), "area": (torch.float32, ()), "image_size": (torch.int64, (2,)),
              "replaced": (torch.int64, ())}
    assert set(m) == set(expect)
    for k, (dtype, shape) in expect.items():
        assert m[k].dtype == dtype and tuple(m[k].shape) == shape, k
    assert m["image_size"].tolist() == [200, 160] and float(m["score"]) == 1.0
    assert int(m["bbox_id"]) == -1  # a ground-truth person; detections carry their index in the file
    b = default_collate([ds[0], ds[0], ds[0]])
    assert b["image"].shape == (3, 3, H, W) and b["meta"]["center"].shape == (3, 2)
    assert b["meta"]["center"].dtype == torch.float64 and b["meta"]["flipped"].shape == (3,)


def test_drawn_keypoints_land_on_sample_keypoints_through_every_augmentation(blob_record):
    rec, _ = blob_record
    ds = TopDownDataset([rec], (W, H), train=True, augment=HEAVY, photometric=None)
    flips = checked = 0
    for seed in range(12):
        ds.reseed(seed)
        s = ds[0]
        crop = s["image"].permute(1, 2, 0).numpy()
        flipped = bool(s["meta"]["flipped"])
        flips += flipped
        for name in BLOBS:
            # after a flip the keypoint called left_wrist is the person's mirrored right wrist: green
            drawn = {"left_wrist": "right_wrist", "right_wrist": "left_wrist"}.get(name, name) if flipped else name
            c = _centroid(crop, BLOBS[drawn])
            kp = s["keypoints"][S.index(name)]
            inside = 4 < kp[0] < W - 4 and 4 < kp[1] < H - 4
            if not inside:
                continue
            assert c is not None, (seed, name)
            np.testing.assert_allclose(c, kp[:2].numpy(), atol=0.25, err_msg=f"seed {seed} {name} flip {flipped}")
            assert kp[2] == 2
            checked += 1
    assert 0 < flips < 12 and checked >= 24


def test_real_image_keypoint_lands_after_flip_and_rotation(real_sample_json, tmp_path):
    s = load_coco_wholebody(real_sample_json)
    rec = next(r for r in s.records if (r.keypoints[:, 2] > 0).sum() > 60)
    img = cv2.imread(rec.image_path)
    i = S.index("left_wrist") if rec.keypoints[S.index("left_wrist"), 2] > 0 else S.index("nose")
    x, y = rec.keypoints[i, :2]
    xs, ys = np.arange(img.shape[1]) + 0.5, np.arange(img.shape[0]) + 0.5
    g = np.exp(-((xs[None] - x) ** 2 + (ys[:, None] - y) ** 2) / (2 * 3.0**2))
    img = (img * (1 - g[..., None]) + g[..., None] * np.array([255, 0, 255])).astype(np.uint8)  # magenta blob
    cv2.imwrite(str(tmp_path / "real.png"), img)
    rec = PersonRecord(**{**rec.__dict__, "image_path": str(tmp_path / "real.png")})
    aug = AugmentConfig(scale_factor=0.2, rotation_factor=30, rotation_prob=1.0, flip_prob=1.0, half_body_prob=0.0)
    ds = TopDownDataset([rec], (192, 256), train=True, augment=aug)
    smp = ds[0]
    assert bool(smp["meta"]["flipped"]) and float(smp["meta"]["rotation"]) != 0
    j = int(S.flip_index[i])  # the flipped sample names the point by its mirrored side
    crop = smp["image"].permute(1, 2, 0).numpy().astype(float)
    magenta = np.minimum(crop[..., 0], crop[..., 2]) - crop[..., 1]
    kx, ky = smp["keypoints"][j, :2].numpy()
    win = magenta[int(ky) - 6:int(ky) + 7, int(kx) - 6:int(kx) + 7]
    win = np.where(win > 0.5 * win.max(), win, 0)
    yy, xx = np.mgrid[int(ky) - 6:int(ky) + 7, int(kx) - 6:int(kx) + 7] + 0.5
    np.testing.assert_allclose([(win * xx).sum() / win.sum(), (win * yy).sum() / win.sum()], [kx, ky], atol=0.5)


def test_inverse_mapping_returns_every_keypoint_and_box(blob_record):
    rec, pts = blob_record
    rec = PersonRecord(**{**rec.__dict__, "part_boxes": np.array([[100, 30, 120, 52], [140, 50, 160, 70], [0, 0, 0, 0]],
                                                                   float), "part_valid": np.array([True, True, False])})
    ds = TopDownDataset([rec], (W, H), train=True, augment=HEAVY)
    samples = [ds[0] for _ in range(16)]
    b = default_collate(samples)
    back = crop_to_image(b["keypoints"], b["meta"], (W, H))
    lab = rec.keypoints[:, 2] > 0
    assert np.abs(back[:, lab, :2] - rec.keypoints[lab, :2]).max() < 1e-4
    np.testing.assert_array_equal(back[:, :, 2], np.broadcast_to(rec.keypoints[:, 2], (16, 133)))
    # without rotation the boxes come back exactly, hands swapped back after a flip
    flip_only = AugmentConfig(scale_factor=0.0, rotation_prob=0.0, flip_prob=0.5, half_body_prob=0)
    ds = TopDownDataset([rec], (W, H), train=True, augment=flip_only)
    b = default_collate([ds[0] for _ in range(8)])
    assert b["meta"]["flipped"].any() and not b["meta"]["flipped"].all()
    boxes = crop_boxes_to_image(b["part_boxes"], b["meta"], (W, H))
    valid = b["part_valid"].numpy()
    flipped = b["meta"]["flipped"].numpy()
    np.testing.assert_array_equal(valid[~flipped], [[True, True, False]] * int((~flipped).sum()))
    np.testing.assert_array_equal(valid[flipped], [[True, False, True]] * int(flipped.sum()))  # left hand -> right slot
    np.testing.assert_allclose(boxes[:, :2], np.broadcast_to(rec.part_boxes[:2], (8, 2, 4)), atol=1e-4)


def test_flip_twice_is_identity_and_mirrors_hands():
    rec = _record("unused.jpg", {"left_wrist": (150.0, 60.0), "right_wrist": (70.0, 90.0)},
                  boxes={1: [140.0, 50.0, 160.0, 70.0]})
    img = np.zeros((160, 200, 3), np.uint8)
    ds = TopDownDataset([rec], (W, H), train=True, augment=NO_AUGMENT)
    plain = ds.build_sample(0, img)
    p = ds.crop_params(0)
    flipped = ds.build_sample(0, img, type(p)(center=p.center, size=p.size, flip=True))
    k0, k1 = plain["keypoints"].numpy(), flipped["keypoints"].numpy()
    twice = k1[S.flip_index].copy()
    twice[:, 0] = np.where(twice[:, 2] > 0, W - twice[:, 0], 0)
    np.testing.assert_allclose(twice, k0, atol=1e-4)
    assert plain["part_valid"].tolist() == [False, True, False] and flipped["part_valid"].tolist() == [False, False, True]
    b0, b1 = plain["part_boxes"][1].numpy(), flipped["part_boxes"][2].numpy()
    np.testing.assert_allclose(b1, [W - b0[2], b0[1], W - b0[0], b0[3]], atol=1e-4)


def test_part_boxes_outside_the_crop_are_not_valid():
    rec = _record("unused.jpg", {"nose": (60.0, 40.0)}, bbox=(40, 20, 90, 100), boxes={0: [50, 30, 70, 50], 2: [185, 140, 199, 159]})
    s = TopDownDataset([rec], (W, H)).build_sample(0, np.zeros((160, 200, 3), np.uint8))
    assert s["part_valid"].tolist() == [True, False, False]
    assert not s["part_boxes"][2].any()


def test_half_body_crops_one_half():
    names = list(S.upper_body) + list(S.lower_body)
    kps = {n: (100.0 + 3 * (i % 5), 20.0 + 6 * i) for i, n in enumerate(names)}
    rec = _record("unused.jpg", kps, bbox=(80, 10, 130, 160))
    full = TopDownDataset([rec], (W, H)).crop_params(0)
    aug = AugmentConfig(half_body_prob=1.0, scale_factor=0.0, rotation_prob=0.0, flip_prob=0.0)
    ds = TopDownDataset([rec], (W, H), train=True, augment=aug)
    for _ in range(4):
        p = ds.crop_params(0)
        assert p.half_body and p.size[1] < full.size[1]
        upper = p.center[1] < full.center[1]
        half = S.upper_body if upper else S.lower_body
        ys = np.array([kps[n][1] for n in half])
        assert (np.abs(ys - p.center[1]) <= p.size[1] / 2).all()


def test_same_seed_same_samples(blob_record):
    rec, _ = blob_record
    a = TopDownDataset([rec], (W, H), train=True, augment=HEAVY, photometric=default_photometric(), seed=5)
    b = TopDownDataset([rec], (W, H), train=True, augment=HEAVY, photometric=default_photometric(), seed=5)
    for _ in range(3):
        sa, sb = a[0], b[0]
        assert torch.equal(sa["image"], sb["image"]) and torch.equal(sa["keypoints"], sb["keypoints"])
    b.reseed(6)
    assert not torch.equal(a[0]["keypoints"], b[0]["keypoints"])


def test_photometric_must_be_pixel_level():
    with pytest.raises(ValueError, match="HorizontalFlip"):
        as_photometric([A.RandomBrightnessContrast(), A.HorizontalFlip()])
    assert isinstance(as_photometric(A.Blur()), A.Compose)
    with pytest.raises(ValueError, match="Affine"):
        TopDownDataset([], (W, H), photometric=A.Compose([A.OneOf([A.Blur(), A.Affine()])]))


# ----------------------------------------------------------------------------- bad images
@pytest.fixture()
def three_images(tmp_path):
    recs = []
    for i in range(3):
        img = np.full((160, 200, 3), 40 * (i + 1), np.uint8)
        cv2.imwrite(str(tmp_path / f"{i}.jpg"), img)
        recs.append(_record(tmp_path / f"{i}.jpg", {"nose": (100.0, 50.0)}, ann_id=10 + i, image_id=i))
    return recs


def test_corrupt_image_in_training_is_logged_counted_and_replaced(three_images, tmp_path, caplog):
    data = (tmp_path / "1.jpg").read_bytes()
    (tmp_path / "1.jpg").write_bytes(data[: len(data) // 2])  # truncated
    ds = TopDownDataset(three_images, (W, H), train=True, augment=NO_AUGMENT)
    with caplog.at_level(logging.WARNING):
        s = ds[1]
    assert int(s["meta"]["ann_id"]) == 12 and int(s["meta"]["image_id"]) == 2  # the next readable record, whole
    assert s["image"][:, H // 2, W // 2].tolist() == [120, 120, 120]
    assert str(tmp_path / "1.jpg") in caplog.text and "truncated" in caplog.text
    assert ds.bad_images[str(tmp_path / "1.jpg")] == 1
    assert int(s["meta"]["replaced"]) == 1 and int(ds[0]["meta"]["replaced"]) == 0
    assert int(ds[1]["meta"]["replaced"]) == 1  # every replacement is reported with its sample ...
    assert ds.bad_images[str(tmp_path / "1.jpg")] == 1  # ... but the file is remembered, not re-read
    strict = TopDownDataset(three_images, (W, H), on_bad_image="raise")
    with pytest.raises(ImageReadError, match="1.jpg: truncated JPEG"):
        strict[1]


@pytest.mark.parametrize("problem", ["garbage", "empty", "smaller"])
def test_unreadable_or_wrong_size_images(three_images, tmp_path, problem):
    path = tmp_path / "0.jpg"
    if problem == "garbage":
        path.write_bytes(b"not an image at all")
    elif problem == "empty":
        path.write_bytes(b"")
    else:  # an image smaller than its annotation (and than the person box) says
        cv2.imwrite(str(path), np.zeros((100, 120, 3), np.uint8))
    with pytest.raises(ImageReadError, match="0.jpg"):
        read_image(str(path), (200, 160))
    s = TopDownDataset(three_images, (W, H), train=True)[0]
    assert int(s["meta"]["image_id"]) == 1


def test_all_images_unreadable_is_an_error(three_images, tmp_path):
    for i in range(3):
        (tmp_path / f"{i}.jpg").write_bytes(b"x")
    with pytest.raises(ImageReadError, match="consecutive unreadable images") as e:  # one line, a CLI's "error:"
        TopDownDataset(three_images, (W, H), train=True, max_replacements=5)[0]
    assert "\n" not in str(e.value) and e.value.path.endswith(".jpg")


def test_missing_images_are_reported_at_setup(three_images, tmp_path):
    (tmp_path / "0.jpg").unlink()
    (tmp_path / "2.jpg").unlink()
    with pytest.raises(MissingImagesError, match=r"2 of 3 images named by ann.json are missing") as e:
        check_image_files(three_images, "ann.json")
    assert str(tmp_path / "0.jpg") in str(e.value) and "skip_missing_images" in str(e.value)
    kept = check_image_files(three_images, "ann.json", skip_missing=True)
    assert [r.ann_id for r in kept] == [11]


def test_four_channel_warp_equals_the_plain_warp():
    from wholebody.data.dataset import warp_to_rgb
    from wholebody.geometry import affine_matrix, warp_image

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)
    for _ in range(10):
        m = affine_matrix(rng.uniform(0, 120, 2), rng.uniform(20, 150, 2), rng.uniform(-60, 60), (W, H), rng.random() < 0.5)
        ref = cv2.cvtColor(warp_image(img, m, (W, H), border_value=(5, 6, 7)), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(warp_to_rgb(img, m, (W, H), (5, 6, 7)), ref)


def test_records_without_a_usable_box_are_refused():
    rec = _record("unused.jpg", {"nose": (60.0, 40.0)}, bbox=(40, 20, 40, 100), ann_id=77)
    with pytest.raises(ValueError, match="ann_id 77"):
        TopDownDataset([rec], (W, H))


def test_linear_color_jitter():
    from wholebody.data.transforms import LinearColorJitter

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    j = LinearColorJitter()
    np.testing.assert_array_equal(j.apply(img, b=1.0, c=1.0, s=1.0, h=0.0), img)  # neutral parameters
    grey = j.apply(img, b=1.0, c=1.0, s=0.0, h=0.0).astype(int)
    assert np.abs(grey - grey[..., :1]).max() == 0  # no saturation: R = G = B
    red = np.zeros((2, 2, 3), np.uint8)
    red[..., 0] = 200
    np.testing.assert_allclose(j.apply(red, b=1.0, c=1.0, s=1.0, h=120.0)[0, 0], [0, 200, 0], atol=1)  # hue turns R -> G
    luma = np.array([0.299, 0.587, 0.114])
    for c in (0.8, 1.2):  # contrast pivots about the mean luma
        out = j.apply(img, b=1.0, c=c, s=1.0, h=0.0)
        assert abs(out.reshape(-1, 3).mean(0) @ luma - img.reshape(-1, 3).mean(0) @ luma) < 2
    np.testing.assert_allclose(j.apply(img, b=0.5, c=1.0, s=1.0, h=0.0), img * 0.5, atol=1)
    with pytest.raises(ValueError, match="brightness"):
        LinearColorJitter(brightness=1.5)
