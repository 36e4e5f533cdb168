"""``wholebody-data``: the subcommands end to end, their messages on bad input, and the acceptance
check that the statistics produce their charts on the real sample."""

from __future__ import annotations

import json

import cv2
import pytest

from test_datatools_tinyset import build_tiny_set
from wholebody.cli.data_tools import main

PNGS = ("counts.png", "scales.png", "gestures.png", "blur.png")


@pytest.fixture
def tiny_set(tmp_path):
    return build_tiny_set(tmp_path / "tiny")


def _png_ok(path) -> bool:
    img = cv2.imread(str(path))
    return img is not None and img.shape[0] > 200 and img.shape[1] > 400 and img.std() > 5


def test_stats_on_the_tiny_set_writes_numbers_tables_and_charts(tiny_set, tmp_path, capsys):
    out = tmp_path / "stats"
    assert main(["stats", str(tiny_set["json"]), str(out), "--images", str(tiny_set["images"]), "--quiet"]) == 0
    for name in PNGS:
        assert _png_ok(out / name), name
    st = json.loads((out / "stats.json").read_text())
    assert st["counts"]["persons"] == 7 and st["gestures"]["hands_clustered"] == 4
    assert st["blur"]["log10_laplacian_variance"]["count"] == 3
    assert (out / "face_blur.csv").read_text().splitlines()[0] == "ann_id,image_id,laplacian_variance,log10"
    assert len((out / "hand_gestures.csv").read_text().splitlines()) == 1 + 4
    text = capsys.readouterr().out
    assert "3 images, 7 persons (1 crowd)" in text and "wrote:" in text


def test_stats_refuses_to_overwrite_and_blur_needs_images(tiny_set, tmp_path, capsys):
    out = tmp_path / "stats"
    assert main(["stats", str(tiny_set["json"]), str(out), "--only", "counts", "blur"]) == 0
    assert "face blurriness needs the image folder" in capsys.readouterr().out
    assert (out / "counts.png").exists() and not (out / "blur.png").exists()
    assert main(["stats", str(tiny_set["json"]), str(out), "--only", "counts"]) == 2
    assert "already holds stats.json, counts.png; pass overwrite (--overwrite)" in capsys.readouterr().err
    assert main(["stats", str(tiny_set["json"]), str(out), "--only", "scales", "--overwrite"]) == 0
    st = json.loads((out / "stats.json").read_text())  # a partial rerun keeps the other statistics
    assert st["counts"]["persons"] == 7 and st["scales"]["parts"]["body"]["count"] == 3


def test_extract_reports_skipped_images_at_the_end(tiny_set, tmp_path, capsys):
    (tiny_set["images"] / "000000000003.jpg").unlink()
    out = tmp_path / "crops"
    assert main(["extract", str(tiny_set["json"]), str(tiny_set["images"]), str(out), "--size", "64", "--quiet"]) == 0
    text = capsys.readouterr()
    assert "face: 2 crops (face 2); 1 left out with their images" in text.out
    assert text.err.rstrip().endswith("1 image(s) skipped:\n  000000000003.jpg: file not found")


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_text("[]"), "not a COCO annotation file"),
    (lambda p: None, "annotation file not found"),
])
def test_bad_annotation_files_exit_2_with_one_line(tmp_path, capsys, make, message):
    p = tmp_path / "ann.json"
    make(p)
    assert main(["stats", str(p), str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and str(p) in err and err.count("\n") == 1


def test_extract_from_an_empty_folder_says_so(tiny_set, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["extract", str(tiny_set["json"]), str(tmp_path / "empty"), str(tmp_path / "o")]) == 2
    assert "is empty" in capsys.readouterr().err


def test_stats_with_an_empty_image_folder_fails_before_writing_anything(tiny_set, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "o"
    assert main(["stats", str(tiny_set["json"]), str(out), "--images", str(tmp_path / "empty")]) == 2
    assert "is empty" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


def test_acceptance_stats_and_extraction_on_the_real_sample(real_sample, real_sample_json, tmp_path, capsys):
    out = tmp_path / "stats"
    assert main(["stats", str(real_sample_json), str(out), "--images", str(real_sample), "--quiet"]) == 0
    for name in PNGS:
        assert _png_ok(out / name), name
    st = json.loads((out / "stats.json").read_text())
    assert st["counts"]["persons"] == 14 and st["blur"]["log10_laplacian_variance"]["count"] == 4
    assert st["gestures"]["hands_clustered"] + st["gestures"]["left_out_incomplete"] == 10
    assert main(["extract", str(real_sample_json), str(real_sample), str(tmp_path / "crops"), "--quiet"]) == 0
    assert "hand: 10 crops (lefthand 5, righthand 5)" in capsys.readouterr().out


def test_stats_on_the_synthetic_set_agree_with_a_pycocotools_tally(tmp_path):
    from pycocotools.coco import COCO

    from wholebody.data.synthetic import generate_synthetic
    from wholebody.keypoints import COCO_WHOLEBODY as SPEC

    generate_synthetic(tmp_path / "synth", images=1, val_images=2, seed=5)
    ann = tmp_path / "synth" / "annotations" / "coco_wholebody_val_v1.0.json"
    out = tmp_path / "stats"
    assert main(["stats", str(ann), str(out), "--images", str(tmp_path / "synth" / "val2017"), "--quiet"]) == 0
    for name in PNGS:
        assert _png_ok(out / name), name
    st = json.loads((out / "stats.json").read_text())
    anns = COCO(str(ann)).dataset["annotations"]
    assert st["counts"]["persons"] == len(anns)
    for part, key in SPEC.annotation_keys.items():
        assert st["counts"]["parts"][part]["keypoints"] == sum(v > 0 for a in anns for v in a[key][2::3])
    assert st["blur"]["log10_laplacian_variance"]["count"] == sum(bool(a["face_valid"]) for a in anns)


def test_crop_metrics_scores_predictions_on_an_extracted_set(tiny_set, tmp_path, capsys):
    out = tmp_path / "crops"
    assert main(["extract", str(tiny_set["json"]), str(tiny_set["images"]), str(out), "--sets", "hand", "--quiet"]) == 0
    hand = json.loads((out / "hand" / "annotations.json").read_text())
    rows = []
    for a in hand["annotations"]:
        kp = [v + 2.0 if i % 3 == 1 else v for i, v in enumerate(a["keypoints"])]  # every y off by 2 px
        rows.append({"image_id": a["image_id"], "keypoints": kp, "score": 1.0})
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(rows))
    assert main(["crop-metrics", str(out / "hand"), str(pred), "--out", str(tmp_path / "m.json")]) == 0
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["set"] == "hand" and m["crops"] == 4 and m["EPE"] == pytest.approx(2.0)
    boxes = [a["bbox"] for a in hand["annotations"]]
    assert m["NME"] == pytest.approx(sum(2.0 / (w * h) ** 0.5 for _, _, w, h in boxes) / 4)
    assert "EPE 2.0000 px" in capsys.readouterr().out
    pred.write_text(json.dumps(rows[1:]))
    assert main(["crop-metrics", str(out / "hand"), str(pred)]) == 2
    assert "1 of 4 crops have no prediction" in capsys.readouterr().err
