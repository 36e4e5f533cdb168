"""The evaluator object: reset / process / evaluate, batches, errors across batches."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from conftest import need_reference
from wholebody.evaluation import (
    STAT_NAMES,
    EvalInputError,
    WholeBodyEvaluator,
    evaluate,
    evaluate_files,
    metric_dict,
)
from wholebody.evaluation.simulate import simulate
from wholebody.keypoints import EVAL_PARTS


@pytest.fixture(scope="module")
def data():
    return simulate(200, 21)


def test_batches_give_the_same_stats_as_one_call(data):
    gt, rows = data
    ev = WholeBodyEvaluator(gt)
    for i in range(0, len(rows), 37):
        ev.process(rows[i : i + 37])
    stats = ev.evaluate()
    assert list(stats) == list(EVAL_PARTS) and all(list(s) == list(STAT_NAMES) for s in stats.values())
    assert stats == evaluate(gt, rows)
    assert len(ev) == len(rows)
    ev.reset()
    assert len(ev) == 0 and ev.evaluate()["body"]["AP"] == 0.0
    ev.process(rows)
    assert ev.evaluate() == stats


def test_error_in_a_later_batch_names_the_global_index(data):
    gt, rows = data
    ev = WholeBodyEvaluator(gt)
    ev.process(rows[:10])
    bad = [dict(r) for r in rows[10:15]]
    bad[2]["score"] = float("nan")
    with pytest.raises(EvalInputError, match=r"result #12 \(image_id"):
        ev.process(bad)


def test_the_evaluator_keeps_no_reference_to_caller_rows(data):
    gt, rows = data
    mine = copy.deepcopy(rows)
    ev = WholeBodyEvaluator(gt)
    ev.process(mine)
    before = ev.evaluate()
    for r in mine:  # the caller reuses its objects
        r["keypoints"] = [0.0] * len(r["keypoints"])
        r["score"] = 0.0
    assert ev.evaluate() == before


def test_parts_and_files(data, tmp_path):
    gt, rows = data
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "r.json").write_text(json.dumps(rows))
    stats = evaluate_files(tmp_path / "gt.json", tmp_path / "r.json", parts=["lefthand"])
    assert list(stats) == ["lefthand"] and stats == {"lefthand": evaluate(gt, rows)["lefthand"]}
    # two processes: same numbers, same order of parts, same errors
    assert evaluate_files(tmp_path / "gt.json", tmp_path / "r.json", jobs=2) == evaluate(gt, rows)
    (tmp_path / "bad.json").write_text(json.dumps(rows[:2] + [dict(rows[2], score="high")]))
    with pytest.raises(EvalInputError, match=r"bad.json: result #2 .*'score' is not a number"):
        evaluate_files(tmp_path / "gt.json", tmp_path / "bad.json", jobs=2)
    with pytest.raises(EvalInputError, match="nothing.json: no such file"):
        evaluate_files(tmp_path / "nothing.json", tmp_path / "bad.json", jobs=2)
    with pytest.raises(ValueError, match="unknown part"):
        WholeBodyEvaluator(gt, parts=["tail"])


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_two_processes_with_either_start_method(data, tmp_path, monkeypatch, method):
    import multiprocessing

    from wholebody.evaluation import files

    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"this platform has no {method!r} multiprocessing start method (the other one is tested)")
    monkeypatch.setattr(files, "_context", lambda: multiprocessing.get_context(method))
    gt, rows = data
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "r.json").write_text(json.dumps(rows))
    g, d, evals = files.load_and_evaluate(tmp_path / "gt.json", tmp_path / "r.json", jobs=2)
    assert list(evals) == list(EVAL_PARTS) and len(d) == len(rows)
    assert {p: e.stats for p, e in evals.items()} == evaluate(gt, rows)


def test_boxes_sizes_and_diagnosis_from_the_evaluator(data):
    gt, rows = data
    ev = WholeBodyEvaluator(gt, parts=["body", "face"])
    ev.process(rows)
    boxes = ev.evaluate_boxes()
    assert set(boxes) == {"face", "lefthand", "righthand"} and 0 < boxes["face"]["AP"] < 1
    sizes = ev.size_breakdown()
    assert set(sizes) == {"body", "face"} and sizes["body"]["all"]["AP"] == pytest.approx(
        ev.evaluate()["body"]["AP"]
    )
    diag = ev.diagnose()
    assert set(diag) == {"body", "face"}
    assert np.isclose(sum(diag["body"]["fractions"].values()), 1.0)


def test_evaluating_a_subset_of_images(data, tmp_path):
    gt, rows = data
    ids = sorted({im["id"] for im in gt["images"]})[::3]
    ev = WholeBodyEvaluator(gt)
    ev.process(rows)
    sub = ev.evaluate(image_ids=ids)
    keep = set(ids)
    gt_sub = dict(
        gt,
        images=[im for im in gt["images"] if im["id"] in keep],
        annotations=[a for a in gt["annotations"] if a["image_id"] in keep],
    )
    assert sub == evaluate(gt_sub, [r for r in rows if r["image_id"] in keep])
    assert sub != ev.evaluate()
    need_reference()
    from wholebody.evaluation.reference import reference_stats

    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "r.json").write_text(json.dumps(rows))
    ref = reference_stats(tmp_path / "gt.json", tmp_path / "r.json", parts=["wholebody"], image_ids=ids)["wholebody"]
    assert np.abs(np.array([sub["wholebody"][n] - ref[n] for n in STAT_NAMES])).max() <= 1e-12


def test_metric_names():
    stats = {"body": dict.fromkeys(STAT_NAMES, 0.5), "face": dict.fromkeys(STAT_NAMES, 0.25)}
    assert metric_dict(stats) == {
        "val/body/AP": 0.5,
        "val/body/AR": 0.5,
        "val/face/AP": 0.25,
        "val/face/AR": 0.25,
    }
    assert list(metric_dict(stats, "test", ["AP75"])) == ["test/body/AP75", "test/face/AP75"]
