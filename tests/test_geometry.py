import cv2
import numpy as np
import pytest

from wholebody import geometry as G
from wholebody.keypoints import COCO_WHOLEBODY

rng = np.random.default_rng(0)


def test_xywh_xyxy_round_trip():
    b = rng.uniform(0, 100, size=(5, 4))
    np.testing.assert_allclose(G.xyxy_to_xywh(G.xywh_to_xyxy(b)), b)


def test_center_size_pads_to_aspect_ratio():
    c, s = G.box_to_center_size([10, 20, 30, 100], aspect_ratio=0.75, padding=1.25)
    np.testing.assert_allclose(c, [20, 60])
    # 20 x 80 box: width grows to 60 (= 80 * 0.75), then both * 1.25
    np.testing.assert_allclose(s, [75, 100])
    c, s = G.box_to_center_size([0, 0, 300, 100], aspect_ratio=0.75, padding=1.0)
    np.testing.assert_allclose(s, [300, 400])


@pytest.mark.parametrize("flip", [False, True])
def test_warp_then_inverse_warp_returns_points(flip):
    centers = rng.uniform(50, 500, size=(8, 2))
    sizes = rng.uniform(30, 300, size=(8, 2))
    rots = rng.uniform(-45, 45, size=8)
    m = G.affine_matrix(centers, sizes, rots, (288, 384), flip=flip)
    pts = rng.uniform(0, 640, size=(8, 133, 2))
    back = G.apply_affine(G.invert_affine(m), G.apply_affine(m, pts))
    assert np.abs(back - pts).max() < 1e-4


def test_affine_maps_region_onto_crop():
    m = G.affine_matrix([100, 200], [50, 80], 0.0, (25, 40))
    corners = G.apply_affine(m, [[75, 160], [125, 240], [100, 200]])
    np.testing.assert_allclose(corners, [[0, 0], [25, 40], [12.5, 20]])
    # positive rotation shows the content turned counter-clockwise: a point right of the centre moves up
    m = G.affine_matrix([0, 0], [10, 10], 90.0, (10, 10))
    np.testing.assert_allclose(G.apply_affine(m, [[1.0, 0.0]]), [[5.0, 4.0]], atol=1e-12)


def test_flip_twice_is_identity_and_swaps_sides():
    k = rng.uniform(0, 200, size=(3, 133, 3))
    f = COCO_WHOLEBODY.flip_index
    once = G.flip_keypoints(k, 200, f)
    np.testing.assert_allclose(G.flip_keypoints(once, 200, f), k)
    lw, rw = COCO_WHOLEBODY.index("left_wrist"), COCO_WHOLEBODY.index("right_wrist")
    np.testing.assert_allclose(once[:, lw, 0], 200 - k[:, rw, 0])
    b = np.array([[10.0, 5.0, 30.0, 50.0]])
    np.testing.assert_allclose(G.flip_boxes_x(b, 100), [[70, 5, 90, 50]])
    np.testing.assert_allclose(G.flip_boxes_x(G.flip_boxes_x(b, 100), 100), b)


def test_flip_affine_mirrors_the_crop():
    # flipping inside the affine equals flipping the unflipped crop: x' = W - x
    c, s, w, h = [60.0, 80.0], [40.0, 60.0], 30, 45
    pts = rng.uniform(0, 150, size=(10, 2))
    plain = G.apply_affine(G.affine_matrix(c, s, 12.0, (w, h)), pts)
    flipped = G.apply_affine(G.affine_matrix(c, s, -12.0, (w, h), flip=True), pts)
    np.testing.assert_allclose(flipped, G.flip_points_x(plain, w), atol=1e-9)


def test_transform_boxes_flip_keeps_width():
    m = G.affine_matrix([50, 50], [100, 100], 0.0, (100, 100), flip=True)
    np.testing.assert_allclose(G.transform_boxes(m, [[10, 20, 30, 40]]), [[70, 20, 90, 40]])


@pytest.mark.parametrize("rot,flip", [(0.0, False), (30.0, False), (-40.0, True)])
def test_drawn_keypoint_lands_on_warped_keypoint(rot, flip):
    """A bright pixel at a point in the image appears at the warped point in the crop."""
    img = np.zeros((240, 320), np.float32)
    px, py = 171, 97  # pixel indices; its centre is at (171.5, 97.5) in the package convention
    img[py - 1 : py + 2, px - 1 : px + 2] = 1.0
    img[py, px] = 4.0
    m = G.affine_matrix([160, 120], [160, 200], rot, (192, 256), flip=flip)
    crop = G.warp_image(img, m, (192, 256))
    expected = G.apply_affine(m, [[px + 0.5, py + 0.5]])[0]
    # intensity-weighted centroid of the warped blob, in package coordinates
    ys, xs = np.nonzero(crop > 0.05)
    w = crop[ys, xs]
    got = np.array([(xs + 0.5) @ w / w.sum(), (ys + 0.5) @ w / w.sum()])
    assert np.abs(got - expected).max() < 0.15, (got, expected)


def test_warp_identity_keeps_pixels():
    img = rng.integers(0, 255, size=(20, 30, 3), dtype=np.uint8)
    m = G.affine_matrix([15, 10], [30, 20], 0.0, (30, 20))
    out = G.warp_image(img, m, (30, 20), interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(out, img)


def test_keypoints_bbox():
    pts = np.array([[[1.0, 2.0], [5.0, 9.0], [100.0, 100.0]]])
    boxes, ok = G.keypoints_bbox(pts, np.array([[True, True, False]]))
    np.testing.assert_allclose(boxes, [[1, 2, 5, 9]])
    boxes, ok = G.keypoints_bbox(pts, np.zeros((1, 3), bool))
    assert not ok[0] and (boxes == 0).all()
