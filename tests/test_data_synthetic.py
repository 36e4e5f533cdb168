"""The synthetic COCO-WholeBody generator: determinism, valid files, and 'annotated = drawn'."""

from __future__ import annotations

import hashlib
import json

import cv2
import numpy as np
import pytest

from wholebody.cli.synth import main as synth_main
from wholebody.data.coco import load_coco_wholebody
from wholebody.data.figures import JOINT, SIDE, sample_figure
from wholebody.data.synthetic import SynthConfig, generate_synthetic, render_image, synthetic_is_current
from wholebody.geometry import keypoints_bbox, keypoints_from_file
from wholebody.keypoints import BOX_PARTS
from wholebody.keypoints import COCO_WHOLEBODY as S

BUSY = SynthConfig(image_size=(192, 160), crowd_prob=0.4, occluder_prob=0.5, border_prob=0.3, invalid_part_prob=0.3)


@pytest.fixture(scope="module")
def synth_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    generate_synthetic(out, images=24, val_images=6, seed=3, config=BUSY)
    return out


def _kpts(a: dict) -> np.ndarray:
    """An annotation's 133 keypoints in the package's pixel convention (the file holds COCO's)."""
    return keypoints_from_file(np.concatenate([np.reshape(a[S.annotation_keys[p]], (-1, 3)) for p in S.parts]))


def _tree_digest(root) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_layout_and_loader_accepts_it(synth_set):
    for split, folder in (("train", "train2017"), ("val", "val2017")):
        ann = synth_set / "annotations" / f"coco_wholebody_{split}_v1.0.json"
        s = load_coco_wholebody(ann, synth_set / folder)
        doc = json.loads(ann.read_text())
        assert len(doc["images"]) == (24 if split == "train" else 6)
        assert all((synth_set / folder / im["file_name"]).is_file() for im in doc["images"])
        assert s.records and s.stats.kept + s.stats.crowd + s.stats.no_keypoints + s.stats.small_box == len(doc["annotations"])
    doc = json.loads((synth_set / "annotations" / "coco_wholebody_train_v1.0.json").read_text())
    anns = doc["annotations"]
    assert len({a["id"] for a in anns}) == len(anns)
    assert any(a["iscrowd"] for a in anns), "the busy setting should produce crowd regions"
    persons = [a for a in anns if not a["iscrowd"]]
    for part in BOX_PARTS:  # some parts invalid, most valid
        valid = np.mean([a[S.valid_keys[part]] for a in persons])
        assert 0.2 < valid < 1.0, (part, valid)


def test_deterministic_per_seed(tmp_path, synth_set):
    again = tmp_path / "again"
    generate_synthetic(again, images=24, val_images=6, seed=3, config=BUSY, workers=2)  # parallel: same bytes
    (again / "synthetic.json").unlink()
    ref = synth_set / "synthetic.json"
    content = ref.read_bytes()
    ref.unlink()
    try:
        assert _tree_digest(again) == _tree_digest(synth_set)
    finally:
        ref.write_bytes(content)
    a, _, _ = render_image(np.random.default_rng([3, 0, 0]), BUSY)
    b, _, _ = render_image(np.random.default_rng([4, 0, 0]), BUSY)
    assert (a != b).any()


def test_annotations_describe_what_is_drawn(synth_set):
    doc = json.loads((synth_set / "annotations" / "coco_wholebody_train_v1.0.json").read_text())
    w, h = doc["images"][0]["width"], doc["images"][0]["height"]
    hidden_inside = 0
    for a in doc["annotations"]:
        k = _kpts(a)
        lab = k[:, 2] > 0
        assert (k[~lab] == 0).all()  # unlabelled: (0, 0, 0)
        assert ((k[lab, 0] >= 0) & (k[lab, 0] < w) & (k[lab, 1] >= 0) & (k[lab, 1] < h)).all()
        if a["iscrowd"]:
            assert not lab.any() and a["area"] > 0
            continue
        assert a["num_keypoints"] == lab[S.slice("body")].sum()
        x, y, bw, bh = a["bbox"]
        assert (k[lab, 0] >= x).all() and (k[lab, 0] <= x + bw).all() and (k[lab, 1] >= y).all() and (k[lab, 1] <= y + bh).all()
        assert 0 < a["area"] <= bw * bh
        for part in BOX_PARTS:
            sl = S.slice(part)
            if a[S.valid_keys[part]]:
                box, _ = keypoints_bbox(k[sl, :2], k[sl, 2] > 0)
                np.testing.assert_allclose(a[S.box_keys[part]], [box[0], box[1], box[2] - box[0], box[3] - box[1]], atol=0.011)
            else:
                assert not k[sl, 2].any() and a[S.box_keys[part]] == [0, 0, 0, 0]
        assert a[S.valid_keys["foot"]] == lab[S.slice("foot")].any()
        hidden_inside += int((~lab[S.slice("body")]).sum())
    assert hidden_inside > 0  # occluders and other people hide keypoints


def test_labelled_body_joints_show_their_marker_colour(synth_set):
    """The image at a labelled joint shows that joint's marker: of all marker and limb colours, the
    decoded JPEG pixel is nearest to that joint's."""
    doc = json.loads((synth_set / "annotations" / "coco_wholebody_train_v1.0.json").read_text())
    images = {im["id"]: im["file_name"] for im in doc["images"]}
    joints = [(f"{side}_{j}", j) for side in ("left", "right") for j in ("shoulder", "elbow", "hip", "knee", "ankle")]
    palette = {**JOINT, "left_limb": SIDE["left"], "right_limb": SIDE["right"]}
    names = list(palette)
    colours = np.array([palette[n] for n in names], float)
    checked = 0
    for a in doc["annotations"]:
        img = cv2.cvtColor(cv2.imread(str(synth_set / "train2017" / images[a["image_id"]])), cv2.COLOR_BGR2RGB)
        k = _kpts(a)
        for name, joint in joints:
            x, y, v = k[S.index(name)]
            if v > 0 and a["bbox"][3] > 80:  # markers of tiny people are a pixel or two
                px = img[int(y), int(x)].astype(float)
                nearest = names[int(np.argmin(np.abs(colours - px).sum(1)))]
                assert nearest == joint, (a["id"], name, px, nearest)
                checked += 1
    assert checked > 50


def test_front_view_left_is_on_the_image_right():
    for seed in range(20):
        fig = sample_figure(np.random.default_rng(seed))
        for a, b in (("left_shoulder", "right_shoulder"), ("left_hip", "right_hip"), ("left_eye", "right_eye"),
                     ("left_ear", "right_ear"), ("face-45", "face-36")):
            assert fig.keypoints[S.index(a), 0] > fig.keypoints[S.index(b), 0]
    fig = sample_figure(np.random.default_rng(0), back_view=True)
    assert fig.keypoints[S.index("left_shoulder"), 0] < fig.keypoints[S.index("right_shoulder"), 0]


def test_occluders_hide_keypoints_inside_the_image():
    cfg = SynthConfig(image_size=(160, 160), persons=(1, 1), occluder_prob=1.0, border_prob=0.0, crowd_prob=0.0)
    hidden = 0
    for seed in range(5):
        img, anns, ids = render_image(np.random.default_rng(seed), cfg)
        occluded = ids == 65535
        assert occluded.any()
        k = _kpts(anns[0])
        assert not occluded[k[k[:, 2] > 0, 1].astype(int), k[k[:, 2] > 0, 0].astype(int)].any()
        hidden += int((k[:, 2] == 0).sum())
    assert hidden > 0


def test_ground_truth_as_predictions_scores_ap_one(synth_set):
    from wholebody import evaluation
    gt = synth_set / "annotations" / "coco_wholebody_val_v1.0.json"
    doc = json.loads(gt.read_text())
    rows = []
    for a in doc["annotations"]:
        if a["iscrowd"]:
            continue
        row = {"image_id": a["image_id"], "category_id": 1, "score": 1.0}
        row.update({S.annotation_keys[p]: a[S.annotation_keys[p]] for p in S.parts})
        row.update({S.box_keys[p]: a[S.box_keys[p]] for p in BOX_PARTS if a[S.valid_keys[p]]})
        rows.append(row)
    ev = evaluation.WholeBodyEvaluator(str(gt))
    ev.process(rows)
    for part, stats in ev.evaluate().items():
        assert stats["AP"] == pytest.approx(1.0), part
    for part, stats in ev.evaluate_boxes().items():
        assert stats["AP"] == pytest.approx(1.0), part


def test_cli_and_reuse_marker(tmp_path, capsys):
    out = tmp_path / "cli"
    assert synth_main([str(out), "--images", "3", "--val-images", "2", "--seed", "1", "--preset", "demo",
                       "--persons", "2", "2", "--workers", "1"]) == 0
    assert "3 train + 2 val images" in capsys.readouterr().out
    doc = json.loads((out / "annotations" / "coco_wholebody_val_v1.0.json").read_text())
    assert [(im["width"], im["height"]) for im in doc["images"]] == [(256, 192)] * 2
    knobs = {"preset": "demo", "persons": [2, 2]}
    assert synthetic_is_current(out, 3, 2, 1, knobs)
    assert not synthetic_is_current(out, 3, 2, 2, knobs)
    assert not synthetic_is_current(out, 3, 2, 1, {"preset": "demo"})
    assert synth_main([str(out), "--crowd-prob", "2"]) == 2
    assert "crowd_prob" in capsys.readouterr().err
