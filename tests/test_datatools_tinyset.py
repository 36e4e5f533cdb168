"""A tiny COCO-WholeBody set built in tmp_path for the dataset-tool tests (images + json), with the
truths the tests check against: counts, which faces are sharp or blurred, which gesture each hand
shows. Other ``test_datatools_*`` modules import its builders."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from wholebody.keypoints import COCO_WHOLEBODY as SPEC

W, H = 320, 240
GESTURES = ("fist", "point", "open")  # closed -> open


def hand_shape(kind: str) -> np.ndarray:
    """(21, 2) canonical right hand, wrist at the origin, fingers up (-y), about 1 unit long."""
    base = {"thumb": -55.0, "fore": -18.0, "middle": 0.0, "ring": 15.0, "pinky": 30.0}
    out = [np.zeros(2)]
    for finger, ang in base.items():
        a = np.deg2rad(ang)
        d = np.array([np.sin(a), -np.cos(a)])
        root = d * (0.3 if finger == "thumb" else 0.5)
        open_ = kind == "open" or (kind == "point" and finger == "fore")
        for t in (0.0, 1.0, 2.0, 3.0):
            if open_:
                p = root + d * 0.17 * t
            else:  # curled back towards the palm
                back = np.array([d[1], -d[0]]) * (0.05 * t)
                p = root + d * 0.1 * min(t, 1.0) - d * 0.12 * max(t - 1.0, 0.0) + back
            out.append(p)
    return np.array(out)


def place(shape: np.ndarray, center, scale: float, angle_deg: float, mirror: bool) -> np.ndarray:
    p = shape.copy()
    if mirror:
        p[:, 0] *= -1
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return p @ rot.T * scale + np.asarray(center, float)


def _flat(pts: np.ndarray, v) -> list[float]:
    vv = np.broadcast_to(np.asarray(v, float), (len(pts),))
    return np.concatenate([pts, vv[:, None]], axis=1).reshape(-1).tolist()


def _box(pts: np.ndarray) -> list[float]:
    lo, hi = pts.min(0), pts.max(0)
    return [float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])]


def empty_person(ann_id: int, image_id: int, bbox=(10.0, 10.0, 50.0, 100.0), crowd: bool = False) -> dict:
    rec = {"id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": int(crowd), "bbox": list(bbox),
           "area": float(bbox[2] * bbox[3]), "num_keypoints": 0}
    for part in ("body", "foot", "face", "lefthand", "righthand"):
        rec[SPEC.annotation_keys[part]] = [0.0] * (3 * SPEC.num_part(part))
    for part in ("face", "lefthand", "righthand"):
        rec[SPEC.box_keys[part]] = [0.0, 0.0, 0.0, 0.0]
    for key in SPEC.valid_keys.values():
        rec[key] = False
    return rec


def set_body(rec: dict, center, scale: float, n_labelled: int = 17) -> np.ndarray:
    rng = np.random.default_rng(rec["id"])
    pts = np.asarray(center, float) + rng.uniform(-1, 1, (17, 2)) * scale
    v = np.array([2.0] * n_labelled + [0.0] * (17 - n_labelled))
    pts[v == 0] = 0
    rec["keypoints"] = _flat(pts, v)
    rec["num_keypoints"] = n_labelled
    return pts


def set_face(rec: dict, box_xywh) -> np.ndarray:
    x, y, w, h = box_xywh
    gx, gy = np.meshgrid(np.linspace(0.1, 0.9, 17), np.linspace(0.1, 0.9, 4))
    pts = np.stack([x + gx.ravel() * w, y + gy.ravel() * h], 1)
    rec["face_kpts"] = _flat(pts, 1.0)
    rec["face_box"] = [float(b) for b in box_xywh]
    rec["face_valid"] = True
    return pts


def set_hand(rec: dict, side: str, pts: np.ndarray, v=1.0) -> None:
    rec[f"{side}_kpts"] = _flat(pts, v)
    rec[f"{side}_box"] = _box(pts + 0.5)  # the (continuous) box around the keypoints' pixel centres
    rec[f"{side}_valid"] = True


def write_json(path: Path, images: list[dict], anns: list[dict]) -> Path:
    cats = [{"id": 1, "name": "person", "supercategory": "person", "keypoints": list(SPEC.names[:17]), "skeleton": []}]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path


def _background(seed: int) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    img = np.stack([(xx * 255 / W), (yy * 255 / H), np.full_like(xx, 90 + 40 * seed)], -1)
    return img.astype(np.uint8)


def build_tiny_set(root: Path) -> dict:
    """3 images, 7 person rows. Returns paths and the truths the tests use.

    image 1: A (body, sharp face, open right hand) + B (crowd, nothing labelled)
    image 2: C (body with 5 labelled, blurred face, fist left hand) + D (no keypoints, nothing valid)
    image 3: E (body, face, point left hand, open right hand) + F (invalid face flag only) + G (feet only)
    """
    img_dir = root / "images"
    img_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    texture = (rng.random((48, 48)) > 0.5).astype(np.uint8) * 200 + 30
    texture = np.kron(texture[:24, :24], np.ones((2, 2), np.uint8))  # 2-px checker noise, 48x48
    images, anns = [], []
    for i in (1, 2, 3):
        images.append({"id": i, "file_name": f"{i:012d}.jpg", "width": W, "height": H})

    a = empty_person(101, 1, (20, 20, 140, 200))
    set_body(a, (90, 120), 60)
    set_face(a, (40, 40, 48, 48))
    set_hand(a, "righthand", place(hand_shape("open"), (200, 180), 40, 20, False))
    b = empty_person(102, 1, (200, 20, 100, 100), crowd=True)
    c = empty_person(201, 2, (20, 20, 140, 200))
    set_body(c, (90, 120), 50, n_labelled=5)
    set_face(c, (40, 40, 48, 48))
    set_hand(c, "lefthand", place(hand_shape("fist"), (200, 150), 40, -30, True))
    d = empty_person(202, 2, (150, 30, 40, 80))
    e = empty_person(301, 3, (10, 10, 300, 220))
    set_body(e, (160, 120), 80)
    set_face(e, (130, 30, 60, 64))
    set_hand(e, "lefthand", place(hand_shape("point"), (60, 200), 36, 75, True))
    set_hand(e, "righthand", place(hand_shape("open"), (260, 200), 36, -60, False))
    f = empty_person(302, 3, (250, 10, 30, 60))
    f["face_valid"] = False
    g = empty_person(303, 3, (100, 100, 50, 100))
    g["foot_kpts"] = _flat(np.array([[110.0, 190], [120, 195], [115, 185], [130, 190], [140, 195], [135, 185]]), 2.0)
    g["foot_valid"] = True
    anns = [a, b, c, d, e, f, g]

    for i, info in enumerate(images, start=1):
        img = _background(i)
        if i == 1:
            img[40:88, 40:88] = texture[:, :, None]
        if i == 2:
            img[40:88, 40:88] = cv2.GaussianBlur(texture, (0, 0), 4.0)[:, :, None]
        if i == 3:
            img[30:94, 130:190] = cv2.resize(texture, (60, 64), interpolation=cv2.INTER_NEAREST)[:, :, None]
        cv2.imwrite(str(img_dir / info["file_name"]), img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    ann_path = write_json(root / "annotations" / "tiny_wholebody.json", images, anns)
    return {
        "json": ann_path,
        "images": img_dir,
        "sharp_face_ann": 101,
        "blurred_face_ann": 201,
        "counts": {
            "images": 3, "persons": 7, "crowd": 1, "person_boxes": 7,
            "keypoints": {"body": 17 + 5 + 17, "foot": 6, "face": 3 * 68, "lefthand": 2 * 21, "righthand": 2 * 21},
            "boxes": {"face": 3, "lefthand": 2, "righthand": 2},
            "valid": {"face": 3, "lefthand": 2, "righthand": 2, "foot": 1},
        },
        "gestures": {(101, "righthand"): "open", (201, "lefthand"): "fist", (301, "lefthand"): "point",
                     (301, "righthand"): "open"},
    }


def gesture_data(n_per: int = 8, seed: int = 0, noise: float = 0.01) -> tuple[dict, dict]:
    """A json-only file (one image) of ``n_per`` persons per gesture, each with both hands showing that
    gesture under random rotation, scale and position. Returns (data, {(ann_id, side): gesture})."""
    rng = np.random.default_rng(seed)
    anns, truth = [], {}
    for g in GESTURES:
        for _ in range(n_per):
            rec = empty_person(len(anns) + 1, 1)
            for side, mirror in (("lefthand", True), ("righthand", False)):
                pts = place(hand_shape(g), rng.uniform(50, 600, 2), rng.uniform(15, 80), rng.uniform(-180, 180), mirror)
                pts += rng.normal(0, noise, pts.shape) * 40
                set_hand(rec, side, pts)
                truth[(rec["id"], side)] = g
            anns.append(rec)
    data = {"images": [{"id": 1, "file_name": "x.jpg", "width": 640, "height": 640}], "annotations": anns}
    return data, truth


@pytest.fixture
def tiny_set(tmp_path: Path) -> dict:
    return build_tiny_set(tmp_path / "tiny")


def test_tiny_set_is_a_coco_file_pycocotools_reads(tiny_set):
    from pycocotools.coco import COCO

    coco = COCO(str(tiny_set["json"]))
    assert len(coco.getImgIds()) == 3 and len(coco.getAnnIds()) == 7
    for img in coco.loadImgs(coco.getImgIds()):
        assert cv2.imread(str(tiny_set["images"] / img["file_name"])).shape == (H, W, 3)
