"""Crop metrics (EPE, NME) on cases worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from wholebody.evaluation import epe, face_nme, hand_nme, nme
from wholebody.evaluation.crops import interocular_distance
from wholebody.keypoints import COCO_WHOLEBODY


def test_epe_is_the_mean_distance_over_counted_keypoints():
    gt = np.zeros((1, 3, 2))
    pred = np.array([[[3.0, 4.0], [0.0, 1.0], [100.0, 0.0]]])
    assert epe(pred, gt) == pytest.approx((5 + 1 + 100) / 3)
    assert epe(pred, gt, np.array([[True, True, False]])) == pytest.approx(3.0)
    assert np.isnan(epe(pred, gt, np.zeros((1, 3), bool)))


def test_nme_averages_over_keypoints_not_samples():
    gt = np.zeros((2, 2, 2))
    pred = np.array([[[2.0, 0.0], [0.0, 0.0]], [[0.0, 6.0], [0.0, 0.0]]])
    mask = np.array([[True, True], [True, False]])
    # errors / norm: sample 0 -> 2/2, 0/2 ; sample 1 -> 6/3 ; mean over the 3 counted keypoints
    assert nme(pred, gt, np.array([2.0, 3.0]), mask) == pytest.approx((1 + 0 + 2) / 3)
    # a sample without a positive normaliser does not count
    assert nme(pred, gt, np.array([2.0, 0.0]), mask) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        nme(pred, gt, np.array([1.0]))


def test_face_nme_uses_the_outer_eye_corners():
    start = COCO_WHOLEBODY.slice("face").start
    a = COCO_WHOLEBODY.index("face-36") - start
    b = COCO_WHOLEBODY.index("face-45") - start
    assert (a, b) == (36, 45)
    gt = np.zeros((1, 68, 2))
    gt[0, a], gt[0, b] = [10.0, 50.0], [70.0, 50.0]  # 60 px apart
    assert interocular_distance(gt) == pytest.approx([60.0])
    pred = gt + np.array([0.0, 3.0])  # every landmark 3 px off
    assert face_nme(pred, gt) == pytest.approx(3 / 60)
    # a second face whose right outer eye corner is unlabelled (stored at 0, 0) has no normaliser
    gt2 = np.concatenate([gt, gt])
    gt2[1, b] = 0.0
    mask = np.ones((2, 68), bool)
    mask[1, b] = False
    assert face_nme(gt2 + np.array([0.0, 3.0]), gt2, mask) == pytest.approx(3 / 60)


def test_hand_nme_normalises_by_the_box_size():
    gt = np.zeros((2, 21, 2))
    pred = gt + np.array([4.0, 0.0])
    boxes = np.array([[0, 0, 16, 4], [5, 5, 8, 8]], float)  # sqrt(w * h) = 8 for both
    assert hand_nme(pred, gt, boxes) == pytest.approx(0.5)
