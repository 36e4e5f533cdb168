"""WholeBody-Face / WholeBody-Hand extraction: selection, crop geometry, files, bad input, overwrite."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from test_datatools_tinyset import build_tiny_set, empty_person, set_face, set_hand, write_json
from wholebody.datatools import OutputExistsError, crop_matrices, extract_sets, load_crop_set, load_wholebody
from wholebody.geometry import apply_affine, invert_affine


@pytest.fixture
def tiny_set(tmp_path):
    return build_tiny_set(tmp_path / "tiny")


def _load(path):
    return json.loads(path.read_text())


def _blob_image(w: int, h: int, centres) -> np.ndarray:
    """Grey image with Gaussian blobs (sigma 2 px) centred at package-px points."""
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    img = np.zeros((h, w))
    for cx, cy in centres:
        img += np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 2.0**2))
    return np.clip(img * 250, 0, 255).astype(np.uint8)


def _centroid(grey: np.ndarray, around, r: int = 10) -> np.ndarray:
    x, y = int(around[0]), int(around[1])
    win = grey[max(0, y - r) : y + r, max(0, x - r) : x + r].astype(float)
    win = np.where(win > 20, win, 0)
    yy, xx = np.mgrid[max(0, y - r) : y + r, max(0, x - r) : x + r] + 0.5
    return np.array([(win * xx).sum() / win.sum(), (win * yy).sum() / win.sum()])


def test_crop_matrices_centre_the_box_and_scale_its_longer_side():
    m = crop_matrices(np.array([[10.0, 20, 50, 40]]), 128, 1.25)[0]
    np.testing.assert_allclose(apply_affine(m, np.array([[30.0, 30]])), [[64, 64]])
    # longer side (40 px) * 1.25 = 50 px spans the 128-px crop
    np.testing.assert_allclose(apply_affine(m, np.array([[5.0, 5], [55, 5]]))[:, 0], [0, 128], atol=1e-9)


def test_crop_pixels_and_crop_keypoints_agree(tmp_path):
    pts = np.array([[75.5, 50.5], [97.2, 52.7], [86.0, 70.3]])
    img = _blob_image(200, 160, pts)
    (tmp_path / "img").mkdir()
    cv2.imwrite(str(tmp_path / "img" / "a.png"), img)
    rec = empty_person(7, 1)
    face = set_face(rec, (65, 35, 40, 42))
    in_file = pts - 0.5  # the blobs' centres as a COCO file holds them (pixel indices)
    face[:3] = in_file
    rec["face_kpts"] = np.concatenate([face, np.ones((68, 1))], 1).reshape(-1).tolist()
    set_hand(rec, "lefthand", in_file[[0, 1, 2] * 7] + np.arange(21)[:, None] * 0.01)
    ann = write_json(tmp_path / "a.json", [{"id": 1, "file_name": "a.png", "width": 200, "height": 160}], [rec])
    for mirror in (False, True):
        out = tmp_path / f"out{mirror}"
        extract_sets(load_wholebody(ann), tmp_path / "img", out, size=96, padding=2.5, mirror_left_hands=mirror, quality=100,
                     progress=False)
        for name, n in (("face", 3), ("hand", 3)):
            d = _load(out / name / "annotations.json")
            a, im = d["annotations"][0], d["images"][0]
            crop = cv2.imread(str(out / name / im["file_name"]), cv2.IMREAD_GRAYSCALE)
            kp = np.array(a["keypoints"]).reshape(-1, 3)
            centres = kp[:, :2] + 0.5  # the crop set is a COCO file too: its keypoints are pixel indices
            for p in centres[:n]:
                np.testing.assert_allclose(_centroid(crop, p), p, atol=0.25)
            # the stored matrix (package px, continuous) maps the crop back onto the source keypoints
            src = pts if name == "face" else pts[[0, 1, 2]] + np.arange(3)[:, None] * 0.01
            np.testing.assert_allclose(apply_affine(invert_affine(np.array(a["image_to_crop"])), centres[:3]), src,
                                       atol=1e-9)
            if name == "hand":
                assert a["mirrored"] is mirror and a["side"] == "left"


def test_tiny_set_extraction_keeps_valid_parts_only(tiny_set, tmp_path):
    rep = extract_sets(load_wholebody(tiny_set["json"]), tiny_set["images"], tmp_path / "out", size=64,
                       progress=False)
    assert rep.sets["face"].crops == 3 and rep.sets["hand"].by_part == {"lefthand": 2, "righthand": 2}
    face = _load(tmp_path / "out" / "face" / "annotations.json")
    assert sorted(a["source_ann_id"] for a in face["annotations"]) == [101, 201, 301]
    assert len(face["categories"][0]["keypoints"]) == 68
    hand = _load(tmp_path / "out" / "hand" / "annotations.json")
    assert {(a["source_ann_id"], a["side"]) for a in hand["annotations"]} == {(101, "right"), (201, "left"),
                                                                               (301, "left"), (301, "right")}
    assert hand["categories"][0]["keypoints"][0] == "hand_root"
    for d, name in ((face, "face"), (hand, "hand")):
        for im, a in zip(d["images"], d["annotations"]):
            assert cv2.imread(str(tmp_path / "out" / name / im["file_name"])).shape == (64, 64, 3)
            assert a["image_id"] == im["id"] and a["num_keypoints"] == len(a["keypoints"]) // 3
            x, y, w, h = a["bbox"]  # padding 1.25: the box (here the keypoints' extent) fills 80 % of the crop
            assert min(x, y) >= 0 and x + w <= 64 and y + h <= 64 and max(w, h) == pytest.approx(64 / 1.25)


def test_existing_output_is_refused_then_replaced_with_overwrite(tiny_set, tmp_path):
    t = load_wholebody(tiny_set["json"])
    out = tmp_path / "out"
    extract_sets(t, tiny_set["images"], out, sets=("face",), size=32, progress=False)
    stale = out / "face" / "images" / "000000000009_999.jpg"
    stale.write_bytes(b"old")
    with pytest.raises(OutputExistsError, match="already holds an extracted set"):
        extract_sets(t, tiny_set["images"], out, sets=("face",), size=32, progress=False)
    extract_sets(t, tiny_set["images"], out, sets=("face",), size=48, overwrite=True, progress=False)
    assert not stale.exists()
    assert _load(out / "face" / "annotations.json")["info"]["crop_size"] == 48
    assert len(list((out / "face" / "images").glob("*.jpg"))) == 3


def test_unreadable_images_are_skipped_listed_and_left_out(tiny_set, tmp_path):
    (tiny_set["images"] / "000000000002.jpg").write_bytes(b"not an image")
    rep = extract_sets(load_wholebody(tiny_set["json"]), tiny_set["images"], tmp_path / "out", workers=2,
                       progress=False)
    assert [(s.file, s.reason) for s in rep.skipped] == [("000000000002.jpg", "cannot decode image data")]
    assert rep.sets["face"].crops == 2 and rep.sets["face"].skipped_crops == 1
    assert rep.sets["hand"].crops == 3 and rep.sets["hand"].skipped_crops == 1
    face = _load(tmp_path / "out" / "face" / "annotations.json")
    assert 201 not in {a["source_ann_id"] for a in face["annotations"]}


def test_empty_image_folder_and_bad_arguments(tiny_set, tmp_path):
    t = load_wholebody(tiny_set["json"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="is empty"):
        extract_sets(t, tmp_path / "empty", tmp_path / "out")
    with pytest.raises(ValueError, match="unknown set"):
        extract_sets(t, tiny_set["images"], tmp_path / "out", sets=("feet",))


def test_real_sample_extraction(real_sample, real_sample_json, tmp_path):
    t = load_wholebody(real_sample_json)
    rep = extract_sets(t, real_sample, tmp_path, progress=False)
    assert rep.skipped == []
    assert rep.sets["face"].crops == int(t.valid["face"].sum()) == 4
    assert rep.sets["hand"].crops == int(t.valid["lefthand"].sum() + t.valid["righthand"].sum()) == 10
    hand = _load(tmp_path / "hand" / "annotations.json")
    for im, a in zip(hand["images"], hand["annotations"]):
        assert cv2.imread(str(tmp_path / "hand" / im["file_name"])).shape == (256, 256, 3)
        kp = np.array(a["keypoints"]).reshape(21, 3)
        lab = kp[:, 2] > 0
        assert ((kp[lab, :2] > 0) & (kp[lab, :2] < 256)).all()  # labelled points land inside the crop


# ----------------------------------------------------------------------------- with the crop metrics
@pytest.fixture(scope="module")
def synthetic_set(tmp_path_factory):
    """A small set from the package's synthetic COCO-WholeBody generator."""
    from wholebody.data.synthetic import generate_synthetic

    root = tmp_path_factory.mktemp("synth")
    generate_synthetic(root, images=3, val_images=1, seed=3)
    return root / "annotations" / "coco_wholebody_train_v1.0.json", root / "train2017"


def test_extracted_sets_feed_the_crop_metrics_and_map_back_exactly(synthetic_set, tmp_path):
    from wholebody.evaluation.crops import epe, face_nme, hand_nme, interocular_distance

    ann, images = synthetic_set
    table = load_wholebody(ann)
    rep = extract_sets(table, images, tmp_path, size=128, mirror_left_hands=True, progress=False)
    assert rep.skipped == [] and rep.sets["face"].crops > 0 and rep.sets["hand"].crops > 0
    face, hand = load_crop_set(tmp_path / "face"), load_crop_set(tmp_path / "hand")
    for cs, part in ((face, "face"), (hand, None)):
        gt, mask = cs.keypoints[..., :2], cs.keypoints[..., 2] > 0
        assert epe(gt, gt, mask) == 0.0
        assert epe(gt + [1.0, 0.0], gt, mask) == pytest.approx(1.0)
        if part == "face":
            assert face_nme(gt, gt, mask) == 0.0
            iod = interocular_distance(gt) * (mask[:, 36] & mask[:, 45])  # faces with both outer eye corners
            assert (iod > 0).sum() < len(iod)  # the set has faces without them: they must be left out
            counted = mask & (iod > 0)[:, None]
            want = np.broadcast_to(1.0 / np.where(iod > 0, iod, 1.0)[:, None], mask.shape)[counted].mean()
            assert face_nme(gt + [1.0, 0.0], gt, mask) == pytest.approx(want)
        else:
            assert hand_nme(gt, gt, cs.boxes, mask) == 0.0
            assert set(cs.side) == {"left", "right"} and cs.mirrored.tolist() == (cs.side == "left").tolist()
        # crop px -> image px gives back the file's keypoints
        row_of = {int(a): r for r, a in enumerate(table.ann_id)}
        for i, r in enumerate(row_of[int(a)] for a in cs.source_ann_id):
            p = part or ("lefthand" if cs.side[i] == "left" else "righthand")
            src = table.keypoints[r, table.spec.slice(p)]
            back = apply_affine(invert_affine(cs.image_to_crop[i]), cs.keypoints[i, :, :2])
            lab = src[:, 2] > 0
            np.testing.assert_allclose(back[lab], src[lab, :2], atol=1e-9)
            np.testing.assert_array_equal(cs.keypoints[i, :, 2], src[:, 2])
