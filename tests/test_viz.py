import numpy as np
import pytest

from wholebody.keypoints import COCO_WHOLEBODY as S
from wholebody.viz import PART_COLORS, draw_wholebody, image_grid


def _person():
    kp = np.zeros((133, 3))
    kp[S.index("left_wrist")] = [40.5, 50.5, 0.9]
    kp[S.index("left_elbow")] = [40.5, 90.5, 0.9]
    kp[S.index("right_wrist")] = [150.5, 50.5, 0.1]  # below threshold: hidden
    kp[S.index("left_hand_root")] = [100.5, 100.5, 0.8]
    return kp


def test_draws_visible_points_in_part_colours_and_hides_low_scores():
    img = np.zeros((200, 200, 3), np.uint8)
    out = draw_wholebody(img, _person(), score_thr=0.3, radius=3, thickness=1)
    assert img.sum() == 0  # input untouched
    assert tuple(out[50, 40]) == PART_COLORS["body"]
    assert tuple(out[100, 100]) == PART_COLORS["lefthand"]
    assert out[45:56, 145:156].sum() == 0  # hidden right wrist
    # the left forearm edge is drawn between elbow and wrist
    assert out[70, 38:43].sum() > 0


def test_part_boxes_and_person_boxes():
    img = np.zeros((100, 100, 3), np.uint8)
    boxes = np.zeros((1, 3, 4))
    boxes[0, 0] = [10, 10, 30, 30]
    out = draw_wholebody(img, np.zeros((1, 133, 3)), part_boxes=boxes, person_boxes=np.array([[5, 5, 95, 95]]),
                         thickness=1)
    assert out[20, 9:12].max() > 120  # left edge of the face box (anti-aliased across 2 px)
    assert out[50, 5].sum() > 0
    assert out[20, 20].sum() == 0  # box interior stays empty


def test_rejects_wrong_shapes():
    with pytest.raises(ValueError, match="keypoints"):
        draw_wholebody(np.zeros((10, 10, 3), np.uint8), np.zeros((17, 3)))
    with pytest.raises(ValueError, match="image"):
        draw_wholebody(np.zeros((10, 10), np.uint8), np.zeros((133, 3)))


def test_image_grid_tiles():
    g = image_grid([np.full((10, 20, 3), i, np.uint8) for i in range(5)], columns=3, pad=2)
    assert g.shape == (22, 64, 3)
    assert g[0, 0, 0] == 0 and g[0, 22, 0] == 1 and g[12, 0, 0] == 3
