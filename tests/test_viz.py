import logging

import cv2
import numpy as np
import pytest

from wholebody.keypoints import COCO_WHOLEBODY as S
from wholebody.models.postprocess import rows_to_arrays
from wholebody.viz import PART_COLORS, draw_results, draw_wholebody, image_grid


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


def _row(image_id: int, kp: np.ndarray, face_box=None) -> dict:
    row = {"image_id": image_id, "category_id": 1, "score": 1.0}
    for part, key in S.annotation_keys.items():
        row[key] = kp[S.slice(part)].reshape(-1).tolist()
    if face_box is not None:
        row["face_box"], row["face_box_score"] = face_box, 0.9
    return row


def test_draw_results_draws_the_rows_of_the_first_images_and_skips_unreadable_ones(tmp_path, caplog):
    rng = np.random.default_rng(0)
    paths = {}
    for i in (3, 1, 2, 7):
        paths[i] = tmp_path / f"{i}.png"
        cv2.imwrite(str(paths[i]), rng.integers(0, 60, (120, 160, 3), dtype=np.uint8))
    paths[2].write_bytes(b"not an image")
    rows = [_row(3, _person()), _row(1, _person(), face_box=[10.0, 10.0, 40.0, 30.0]), _row(1, _person() * 0.5),
            _row(2, _person()), _row(7, _person())]
    with caplog.at_level(logging.WARNING):
        drawn = draw_results(rows, lambda i: paths[i], max_images=3, score_thr=0.3)
    assert [i for i, _ in drawn] == [1, 3]  # ids 1, 2, 3 in order; 2 is unreadable; 7 is past max_images
    assert "2.png" in caplog.text
    bgr = cv2.imread(str(paths[1]), cv2.IMREAD_COLOR)
    kpts, boxes = rows_to_arrays(rows[1:3])
    np.testing.assert_array_equal(drawn[0][1], draw_wholebody(bgr[:, :, ::-1], kpts, boxes, score_thr=0.3))
    assert drawn[0][1].shape == (120, 160, 3) and drawn[0][1].dtype == np.uint8
    assert not np.array_equal(drawn[0][1], bgr[:, :, ::-1])  # something was drawn
