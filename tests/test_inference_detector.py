"""The person detector glue: weights only from a local file, persons only, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wholebody.inference import DetectorError, PersonDetector

ARCH = "fasterrcnn_mobilenet_v3_large_320_fpn"  # the smallest torchvision Faster R-CNN: quick to build


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (180, 240, 3), dtype=np.uint8)
    img[40:160, 80:140] = (200, 60, 60)
    return img


def test_without_weights_the_detector_says_what_to_do():
    with pytest.raises(DetectorError) as e:
        PersonDetector()
    msg = str(e.value)
    assert "detector.weights=" in msg and "boxes=dets.json" in msg and "boxes=full" in msg and "\n" not in msg
    with pytest.raises(DetectorError, match="is not one of"):
        PersonDetector(arch="yolo", random_weights=True)


def test_detections_are_persons_in_image_px_best_first(image):
    # two classes (background, person): every detection of the untrained network is a "person"
    det = PersonDetector(arch=ARCH, random_weights=True, num_classes=2, score_thr=0.0, min_size=160, max_size=320)
    boxes, scores = det(image)
    assert boxes.shape == (len(scores), 4) and len(scores) > 0
    h, w = image.shape[:2]
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= w + 1e-3).all() and (boxes[:, 3] <= h + 1e-3).all()
    assert (boxes[:, 2:] >= boxes[:, :2]).all() and (np.diff(scores) <= 0).all()
    thr = float(np.median(scores))
    det.score_thr = thr
    assert (det(image)[1] >= thr).all()
    # with 91 classes only label 1 counts: the person filter drops everything else
    det91 = PersonDetector(arch=ARCH, random_weights=True, score_thr=0.0, min_size=160, max_size=320)
    raw = det91.model([torch.from_numpy(image).permute(2, 0, 1).float() / 255])[0]
    assert len(det91(image)[0]) == int((raw["labels"] == 1).sum())


def test_weights_load_from_a_local_file_and_foreign_weights_are_refused(image, tmp_path):
    torch.manual_seed(0)
    src = PersonDetector(arch=ARCH, random_weights=True, num_classes=2, score_thr=0.0, min_size=160, max_size=320)
    path = tmp_path / "frcnn.pth"
    torch.save({"model": src.model.state_dict(), "epoch": 3}, path)  # torchvision's reference-training layout
    loaded = PersonDetector(path, arch=ARCH, num_classes=2, score_thr=0.0, min_size=160, max_size=320)
    a, b = src(image), loaded(image)
    np.testing.assert_allclose(a[0], b[0])
    np.testing.assert_allclose(a[1], b[1])
    with pytest.raises(DetectorError, match="do not fit"):
        PersonDetector(path, arch=ARCH, num_classes=91)
    with pytest.raises(DetectorError, match="do not exist"):
        PersonDetector(tmp_path / "missing.pth", arch=ARCH)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"junk")
    with pytest.raises(DetectorError, match="not a readable checkpoint"):
        PersonDetector(junk, arch=ARCH)
