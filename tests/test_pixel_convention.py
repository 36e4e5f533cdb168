"""COCO's pixel convention at the file boundary: a keypoint read from a file lands on its image content in
the crop, and results files are written back in the file's convention (issue 10, part 2).

A COCO keypoint (x, y) is a pixel index: the centre of pixel x is x itself. The package puts pixel
centres at i + 0.5 (geometry.py), so reading adds 0.5 and writing results subtracts it."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import torch

from wholebody.data.coco import load_coco_wholebody
from wholebody.data.dataset import TopDownDataset
from wholebody.data.transforms import AugmentConfig
from wholebody.geometry import keypoints_from_file, keypoints_to_file
from wholebody.models.postprocess import result_rows, rows_to_arrays

SIGMA = 2.0
R = 8  # the blob's patch: (2R + 1) px square around its pixel


def test_file_keypoints_round_trip_and_leave_unlabelled_points():
    rng = np.random.default_rng(0)
    kp = np.concatenate([rng.uniform(0, 500, (4, 133, 2)), rng.integers(0, 3, (4, 133, 1))], -1)
    kp[kp[..., 2] == 0, :2] = 0.0
    ours = keypoints_from_file(kp)
    labelled = kp[..., 2] > 0
    np.testing.assert_array_equal(ours[labelled][:, :2], kp[labelled][:, :2] + 0.5)
    assert not ours[~labelled].any()  # (0, 0, 0) stays the format's "not labelled"
    np.testing.assert_allclose(keypoints_to_file(ours), kp, rtol=0, atol=1e-12)
    preds = np.concatenate([rng.uniform(0, 500, (4, 133, 2)), rng.uniform(-0.1, 1, (4, 133, 1))], -1)
    back = keypoints_from_file(keypoints_to_file(preds, labelled_only=False), labelled_only=False)
    np.testing.assert_allclose(back, preds, rtol=0, atol=1e-12)  # a prediction moves whatever its score
    assert (keypoints_to_file(preds, labelled_only=False)[..., :2] == preds[..., :2] - 0.5).all()


def _blob(size: int) -> np.ndarray:
    yy, xx = np.mgrid[-size : size + 1, -size : size + 1]
    return 255.0 * np.exp(-(xx**2 + yy**2) / (2 * SIGMA**2))


def _centroid(diff: np.ndarray) -> np.ndarray:
    """Centroid of a (H, W) non-negative image in the package's convention (pixel centres at +0.5)."""
    w = np.clip(diff, 0, None)
    yy, xx = np.mgrid[0 : w.shape[0], 0 : w.shape[1]] + 0.5
    return np.array([(w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()])


def _dotted_pair(image: np.ndarray, at: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(image with a black patch around pixel ``at``, the same with a Gaussian blob centred on that pixel)."""
    x, y = at
    plain = image.copy()
    plain[y - R : y + R + 1, x - R : x + R + 1] = 0
    dotted = plain.copy()
    dotted[y - R : y + R + 1, x - R : x + R + 1] = np.round(_blob(R))[..., None].astype(np.uint8)
    return plain, dotted


def _check_dot(ann_file: Path, images: Path, image_name: str, ann_id: int, at: tuple[int, int], tmp: Path) -> None:
    """Put a dot at pixel ``at`` of the image and the nose label on the same pixel index in the file; the
    label warped into the crop must sit on the dot's centroid, without and with a flip."""
    doc = json.loads(ann_file.read_text())
    (ann,) = [a for a in doc["annotations"] if a["id"] == ann_id]
    ann["keypoints"][0:3] = [float(at[0]), float(at[1]), 2.0]  # COCO: the pixel index of the dot's pixel
    image = cv2.imread(str(images / image_name))
    plain, dotted = _dotted_pair(image, at)
    png = Path(image_name).with_suffix(".png").name  # lossless: the two crops differ by the dot alone
    for im in doc["images"]:
        im["file_name"] = Path(im["file_name"]).with_suffix(".png").name
    for name, img in (("plain", plain), ("dotted", dotted)):
        (tmp / name).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp / name / png), img)
        (tmp / name / "ann.json").write_text(json.dumps(doc))
    for flip in (0.0, 1.0):
        for rotation in (0.0, 1.0):
            aug = AugmentConfig(scale_factor=0.2, rotation_factor=30.0, rotation_prob=rotation, flip_prob=flip,
                                half_body_prob=0.0)
            crops = {}
            for name in ("plain", "dotted"):
                (rec,) = [r for r in load_coco_wholebody(tmp / name / "ann.json", tmp / name).records if r.ann_id == ann_id]
                ds = TopDownDataset([rec], (192, 256), train=True, augment=aug, photometric=None, seed=7)
                crops[name] = ds[0]
            diff = crops["dotted"]["image"].to(torch.float64).mean(0).numpy() - crops["plain"]["image"].to(torch.float64).mean(0).numpy()
            label = crops["dotted"]["keypoints"][0, :2].numpy().astype(np.float64)  # the nose flips onto itself
            assert bool(crops["dotted"]["meta"]["flipped"]) == bool(flip)
            err = np.abs(_centroid(diff) - label).max()
            assert err < 0.05, (flip, rotation, err)


def test_a_label_on_the_real_sample_lands_on_its_image_content(real_sample_json, tmp_path):
    doc = json.loads(real_sample_json.read_text())
    person = next(a for a in doc["annotations"] if not a["iscrowd"] and a["keypoints"][2] > 0)
    image = next(im for im in doc["images"] if im["id"] == person["image_id"])
    x, y = int(person["keypoints"][0]), int(person["keypoints"][1])  # an integer pixel, as COCO's body keypoints
    assert person["keypoints"][0] == x
    _check_dot(real_sample_json, real_sample_json.parent, image["file_name"], person["id"], (x, y), tmp_path)


def test_a_label_on_a_synthetic_image_lands_on_its_image_content(tmp_path):
    from wholebody.data.synthetic import generate_synthetic

    files = generate_synthetic(tmp_path / "set", images=2, val_images=0, seed=3)
    doc = json.loads(Path(files["train"]).read_text())
    person = next(a for a in doc["annotations"] if not a["iscrowd"])
    image = next(im for im in doc["images"] if im["id"] == person["image_id"])
    x0, y0, w, h = person["bbox"]
    at = (int(x0 + w / 2), int(y0 + h / 3))
    _check_dot(Path(files["train"]), tmp_path / "set" / "train2017", image["file_name"], person["id"], at, tmp_path / "t")


def test_synthetic_files_are_written_in_cocos_convention(tmp_path):
    """The generator's files hold pixel indices: read back, each labelled keypoint is 0.5 px right of and
    below the value in the file (so the demo and the tests cross the same boundary as real data)."""
    from wholebody.data.synthetic import generate_synthetic

    files = generate_synthetic(tmp_path / "set", images=2, val_images=0, seed=3)
    doc = json.loads(Path(files["train"]).read_text())
    recs = {r.ann_id: r for r in load_coco_wholebody(files["train"], tmp_path / "set" / "train2017").records}
    a = next(a for a in doc["annotations"] if a["id"] in recs)
    in_file = np.asarray(a["keypoints"], dtype=np.float64).reshape(-1, 3)
    lab = in_file[:, 2] > 0
    np.testing.assert_array_equal(recs[a["id"]].keypoints[:17][lab, :2], in_file[lab, :2] + 0.5)


def test_results_rows_are_written_in_the_files_convention_and_read_back():
    kp = np.zeros((1, 133, 3))
    kp[0, :, :2] = np.arange(266).reshape(133, 2) + 0.5  # package px: pixel centres
    kp[0, :, 2] = 0.9
    res = {"keypoints": kp, "image_id": np.array([3]), "ann_id": np.array([8]), "box_score": np.ones(1),
           "part_boxes": np.zeros((1, 3, 4)), "part_box_scores": np.zeros((1, 3))}
    (row,) = result_rows(res)
    np.testing.assert_array_equal(np.asarray(row["keypoints"]).reshape(17, 3)[:, :2], kp[0, :17, :2] - 0.5)
    assert np.asarray(row["keypoints"])[0] == 0.0  # pixel 0's centre is 0 in the file
    back, _ = rows_to_arrays([row])
    np.testing.assert_array_equal(back, kp)
