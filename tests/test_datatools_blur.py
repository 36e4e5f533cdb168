"""Face blurriness: the Laplacian measure, the crop, and the image-reading job (skips, empty folders)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from test_datatools_tinyset import build_tiny_set
from wholebody.datatools import face_blurriness, face_sharpness, laplacian_variance, load_wholebody
from wholebody.datatools.blur import crop_resize


@pytest.fixture
def tiny_set(tmp_path):
    return build_tiny_set(tmp_path / "tiny")


def test_laplacian_variance_of_flat_and_checkerboard_images():
    assert laplacian_variance(np.full((20, 20), 77, np.uint8)) == 0.0
    checker = (np.indices((20, 20)).sum(0) % 2).astype(np.uint8)  # 0/1: the Laplacian is +-4 everywhere
    assert laplacian_variance(checker) == pytest.approx(16.0)


def test_blurring_lowers_sharpness_at_any_face_size():
    rng = np.random.default_rng(0)
    img = (rng.random((400, 400)) * 255).astype(np.uint8)
    img = cv2.resize(img[:100, :100], (400, 400), interpolation=cv2.INTER_NEAREST)
    soft = cv2.GaussianBlur(img, (0, 0), 3.0)
    for box in (np.array([10.0, 10, 40, 40]), np.array([0.0, 0, 300, 300])):  # enlarged / shrunk to 112
        assert face_sharpness(img, box) > 10 * face_sharpness(soft, box)


def test_crop_resize_clips_to_the_image():
    img = np.arange(100, dtype=np.uint8).reshape(10, 10)
    assert crop_resize(img, np.array([-5.0, -5, 5, 5]), 8).shape == (8, 8)
    assert crop_resize(img, np.array([2.0, 3, 4, 6]), 3).shape == (3, 3)
    assert crop_resize(img, np.array([20.0, 20, 30, 30])) is None


def test_face_blurriness_scores_every_valid_face_and_ranks_sharp_over_blurred(tiny_set):
    t = load_wholebody(tiny_set["json"])
    b = face_blurriness(t, tiny_set["images"], progress=False)
    assert sorted(t.ann_id[b.rows].tolist()) == [101, 201, 301]
    score = dict(zip(t.ann_id[b.rows].tolist(), b.log10))
    assert score[tiny_set["sharp_face_ann"]] > score[tiny_set["blurred_face_ann"]] + 1.0
    assert b.skipped == [] and b.outside == 0


def test_unreadable_images_are_skipped_and_listed(tiny_set):
    d = tiny_set["images"]
    (d / "000000000002.jpg").write_bytes((d / "000000000002.jpg").read_bytes()[:500])  # truncated
    (d / "000000000003.jpg").unlink()
    t = load_wholebody(tiny_set["json"])
    b = face_blurriness(t, d, workers=2, progress=False)
    assert t.ann_id[b.rows].tolist() == [101]
    reasons = {s.file: s.reason for s in b.skipped}
    assert reasons == {"000000000002.jpg": "truncated JPEG (no end-of-image marker)",
                       "000000000003.jpg": "file not found"}


def test_wrong_image_size_is_reported(tiny_set):
    d = tiny_set["images"]
    cv2.imwrite(str(d / "000000000001.jpg"), np.zeros((10, 12, 3), np.uint8))
    b = face_blurriness(load_wholebody(tiny_set["json"]), d, progress=False)
    assert [(s.file, s.reason) for s in b.skipped] == [("000000000001.jpg", "image is 12x10 but its annotation says 320x240")]


def test_an_empty_or_missing_image_folder_says_so(tiny_set, tmp_path):
    t = load_wholebody(tiny_set["json"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty"):
        face_blurriness(t, tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        face_blurriness(t, tmp_path / "nowhere")


def test_real_sample_faces_are_all_scored(real_sample, real_sample_json):
    t = load_wholebody(real_sample_json)
    b = face_blurriness(t, real_sample, progress=False)
    assert b.rows.size == int(t.valid["face"].sum()) == 4 and b.skipped == []
    assert np.isfinite(b.log10).all() and (b.log10 > 0).all()
