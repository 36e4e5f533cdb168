"""Detected persons end to end: the score modes of the results rows, ``wholebody-eval-ckpt`` on a
detection file with the ground-truth-box oracle in the same run, and OKS-NMS in ``wholebody-predict``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training_utils import read_json
from wholebody.keypoints import COCO_WHOLEBODY, EVAL_PARTS
from wholebody.models.postprocess import part_scores, result_rows


def _image_results(rng, n=3):
    k = COCO_WHOLEBODY.num_keypoints
    kpts = np.concatenate([rng.uniform(0, 300, (n, k, 2)), rng.uniform(0, 1, (n, k, 1))], -1)
    kpts[0, :, 2] = 0.1  # no keypoint above 0.2
    return {"keypoints": kpts, "part_boxes": np.zeros((n, 3, 4)), "part_box_scores": np.zeros((n, 3)),
            "image_id": np.arange(n), "bbox_id": np.arange(n), "box_score": np.array([0.9, 0.5, 0.7]),
            "crop_area": np.array([100.0, 200.0, 300.0])}


def test_mmpose_score_mode_writes_one_whole_body_score_for_every_part():
    res = _image_results(np.random.default_rng(0))
    s = res["keypoints"][..., 2]
    expected = [res["box_score"][i] * (s[i][s[i] > 0.2].mean() if (s[i] > 0.2).any() else 0.0) for i in range(3)]
    rows = result_rows(res, score_mode="mmpose")
    for row, e in zip(rows, expected):
        assert [row[COCO_WHOLEBODY.score_keys[p]] for p in EVAL_PARTS] == pytest.approx([e] * len(EVAL_PARTS), abs=1e-12)
    assert rows[0]["score"] == 0.0 and rows[1]["score"] > 0
    per_part = result_rows(res)
    assert [r["wholebody_score"] for r in per_part] == [r["wholebody_score"] for r in rows]  # NMS orders by it
    assert per_part[1]["score"] != rows[1]["score"]  # per part: body's own 17 keypoints
    assert [r["crop_area"] for r in rows] == [100.0, 200.0, 300.0]
    with pytest.raises(ValueError, match="score_mode"):
        part_scores(s, res["box_score"], score_mode="bbox")


def _eval_overrides(root: Path, out: Path, *extra: str) -> list[str]:
    return ["data=synthetic", f"data.root={root}", "data.synthetic.images=8", "data.synthetic.val_images=4",
            "data.synthetic.workers=1", "data.num_workers=0", "trainer=cpu", "~callbacks.progress", "logger=csv",
            "callbacks.report.plots=false", "callbacks.report.analyze=false", f"paths.output_dir={out}", *extra]


def _detections(ckpt: Path, root: Path, out: Path, tmp_path: Path) -> list[dict]:
    """An evaluation on the ground-truth boxes into ``tmp_path/gt`` (the set generated), and
    ``tmp_path/dets.json``: every labelled person's box, three of them twice (scored lower)."""
    from wholebody.training.evaluate import evaluate
    from wholebody.training.run import compose_config

    first = compose_config(_eval_overrides(root, out, f"ckpt={ckpt}", "score_mode=mmpose"), config_name="eval",
                           run_dir=tmp_path / "gt")
    evaluate(first)
    gt = read_json(root / "annotations" / "coco_wholebody_val_v1.0.json")
    dets = [{"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 1.0}
            for a in gt["annotations"] if not a["iscrowd"]]
    dets += [dict(d, score=0.5) for d in dets[:3]]  # three persons detected twice (the same box)
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    return dets


def test_eval_ckpt_on_detections_records_its_protocol_and_gives_the_gt_box_oracle(tiny_ckpt, tmp_path, one_thread):
    from wholebody.training.evaluate import evaluate
    from wholebody.training.run import compose_config

    ckpt, _ = tiny_ckpt
    root = tmp_path / "set"
    out = tmp_path / "runs"
    dets = _detections(ckpt, root, out, tmp_path)
    cfg = compose_config(_eval_overrides(root, out, f"ckpt={ckpt}", f"data.val_boxes={tmp_path / 'dets.json'}",
                                         "also_gt_boxes=true", "score_mode=mmpose"),
                         config_name="eval", run_dir=tmp_path / "dets")
    metrics = evaluate(cfg)
    run = tmp_path / "dets"
    record = read_json(run / "evaluation.json")
    assert record["persons"] == f"detections: {tmp_path / 'dets.json'}" and record["score_mode"] == "mmpose"
    assert record["rows"] == len(dets) and record["stats"] == read_json(run / "stats.json")
    assert record["nms_thr"] == 0.9 and record["rows_removed_by_nms"] == 3
    # the results file holds the rows the stats describe: the three lower-scored duplicates are gone
    assert sorted(r["bbox_id"] for r in read_json(run / "results.json")) == list(range(len(dets) - 3))
    oracle = record["gt_boxes"]
    assert oracle["persons"] == "ground-truth boxes" and oracle["stats"] == read_json(run / "gt_boxes" / "stats.json")
    assert metrics["gt_boxes/wholebody/AP"] == oracle["stats"]["wholebody"]["AP"]
    assert "val/wholebody/AP" in metrics and (run / "gt_boxes" / "eval" / "val_latest_stats.json").is_file()
    rows = read_json(run / "results.json")
    assert all(len({r[COCO_WHOLEBODY.score_keys[p]] for p in EVAL_PARTS}) == 1 for r in rows)  # one score per person
    gt_rows = read_json(run / "gt_boxes" / "results.json")
    assert all("ann_id" in r for r in gt_rows) and all("bbox_id" in r for r in rows)
    assert oracle["stats"] == read_json(tmp_path / "gt" / "stats.json")  # the oracle is the ground-truth-box evaluation


def test_the_gt_box_metrics_come_from_the_broadcast_stats_on_every_rank(tiny_ckpt, tmp_path, one_thread,
                                                                         monkeypatch):
    """A rank other than 0 has no record of the ground-truth-box pass (its evaluator ran on rank 0 only),
    yet returns its metrics, from the stats every rank receives."""
    from wholebody.training import evaluate as module
    from wholebody.training.run import compose_config

    ckpt, _ = tiny_ckpt
    root, out = tmp_path / "set", tmp_path / "runs"
    _detections(ckpt, root, out, tmp_path)
    protocol = module._protocol
    monkeypatch.setattr(module, "_protocol", lambda cfg, trainer, net: {} if cfg.data.val_boxes is None
                        else protocol(cfg, trainer, net))  # the ground-truth-box pass as a rank > 0 sees it
    cfg = compose_config(_eval_overrides(root, out, f"ckpt={ckpt}", f"data.val_boxes={tmp_path / 'dets.json'}",
                                         "also_gt_boxes=true"), config_name="eval", run_dir=tmp_path / "dets")
    metrics = module.evaluate(cfg)
    stats = read_json(tmp_path / "dets" / "gt_boxes" / "stats.json")
    assert metrics["gt_boxes/wholebody/AP"] == stats["wholebody"]["AP"] and metrics["gt_boxes/face/ARl"] == stats["face"]["ARl"]


def test_predict_removes_duplicate_detections_by_oks_nms(memorised, tmp_path, one_thread):
    """Each labelled person detected twice (the same box again, scored lower: the tiny memorised model's
    poses move too much with its crop for a shifted box to stay above OKS 0.9 on every person): predict
    keeps one pose per person, the better-scored detection's; with nms_thr=None both stay; persons of an annotation file
    (ann_id) are never suppressed."""
    from wholebody.data.coco import load_coco_wholebody
    from wholebody.inference import WholeBodyEstimator, predict

    gt = load_coco_wholebody(memorised.ann_file, memorised.image_dir)
    dets = []
    for r in gt.records:
        x0, y0, x1, y1 = (float(v) for v in r.bbox)
        dets.append({"image_id": r.image_id, "category_id": 1, "bbox": [x0, y0, x1 - x0, y1 - y0], "score": 0.9})
        dets.append({"image_id": r.image_id, "category_id": 1, "bbox": [x0, y0, x1 - x0, y1 - y0], "score": 0.6})
    det_file = tmp_path / "dets.json"
    det_file.write_text(json.dumps(dets))
    est = WholeBodyEstimator.from_checkpoint(memorised.ckpt)
    report = predict(est, memorised.image_dir, tmp_path / "nms", boxes=str(det_file), overlay=False, progress=False)
    rows = read_json(tmp_path / "nms" / "results.json")
    assert sorted(r["bbox_id"] for r in rows) == list(range(0, len(dets), 2))  # the 0.9 ones
    assert report.suppressed == len(gt.records) and report.persons == len(gt.records)
    assert read_json(tmp_path / "nms" / "summary.json")["nms_suppressed"] == len(gt.records)
    predict(est, memorised.image_dir, tmp_path / "all", boxes=str(det_file), overlay=False, progress=False, nms_thr=None)
    assert len(read_json(tmp_path / "all" / "results.json")) == len(dets)
    gt_report = predict(est, memorised.image_dir, tmp_path / "gt", boxes=str(memorised.ann_file), overlay=False,
                        progress=False)
    assert gt_report.suppressed == 0 and gt_report.persons == len(gt.records)
