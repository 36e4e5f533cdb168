"""``wholebody-eval``: output shape, bad input (one line, status 2, no traceback), atomic writes,
light imports, plots."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from wholebody.cli.evaluate import main
from wholebody.evaluation import STAT_NAMES, EvalInputError, evaluate, load_ground_truth, load_results
from wholebody.evaluation.simulate import simulate
from wholebody.keypoints import EVAL_PARTS


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[Path, Path, dict, list]:
    d = tmp_path_factory.mktemp("eval_cli")
    gt, rows = simulate(80, 3)
    (d / "gt.json").write_text(json.dumps(gt))
    (d / "res.json").write_text(json.dumps(rows))
    return d / "gt.json", d / "res.json", gt, rows


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wholebody.cli.evaluate", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def write(tmp_path: Path, name: str, obj) -> Path:
    p = tmp_path / name
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return p


def test_table_and_stats_file(files, tmp_path, capsys):
    gt, res, gt_obj, rows = files
    out = tmp_path / "sub" / "stats.json"
    assert main([str(gt), str(res), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    header = next(line for line in printed.splitlines() if line.startswith("part"))
    assert header.split() == ["part", *STAT_NAMES]
    for part in EVAL_PARTS:
        assert any(line.split()[0] == part for line in printed.splitlines() if line.strip())
    stats = json.loads(out.read_text())
    assert list(stats) == list(EVAL_PARTS)
    assert all(list(v) == list(STAT_NAMES) for v in stats.values())
    assert stats == evaluate(gt_obj, rows)
    assert [p.name for p in out.parent.iterdir()] == ["stats.json"]  # no temp file left behind


def test_parts_option_limits_the_output(files, tmp_path):
    gt, res, *_ = files
    out = tmp_path / "s.json"
    assert main([str(gt), str(res), "--parts", "face,body", "--out", str(out), "-q"]) == 0
    assert list(json.loads(out.read_text())) == ["face", "body"]
    r = cli(gt, res, "--parts", "face,elbow")
    assert r.returncode == 2 and "elbow" in r.stderr


def test_help_says_an_empty_list_is_valid():
    r = cli("--help")
    assert r.returncode == 0 and "[] is a valid results file" in " ".join(r.stdout.split())


def test_empty_results_file_gives_zeros(files, tmp_path):
    gt, *_ = files
    out = tmp_path / "s.json"
    r = cli(gt, write(tmp_path, "empty.json", "[]"), "--out", out)
    assert r.returncode == 0, r.stderr
    stats = json.loads(out.read_text())
    assert stats["body"]["AP"] == 0.0 and stats["wholebody"]["AR"] == 0.0


def _bad_row_cases(rows: list) -> list[tuple[str, object, list[str]]]:
    r0 = rows[0]
    short = [dict(r) for r in rows[:5]]
    short[3] = dict(short[3], face_kpts=short[3]["face_kpts"][:-3])
    unknown = [dict(r) for r in rows[:5]]
    unknown[2] = dict(unknown[2], image_id=987654)
    no_score = [dict(r) for r in rows[:3]]
    del no_score[1]["score"]
    nan = [dict(r) for r in rows[:4]]
    nan[2]["score"] = 12345.678  # spelled NaN in the file below
    text_nan = json.dumps(nan).replace("12345.678", "NaN")
    inf_kp = [dict(r) for r in rows[:4]]
    inf_kp[1] = dict(inf_kp[1], keypoints=[1e400] + inf_kp[1]["keypoints"][1:])
    string_kp = [dict(r) for r in rows[:2]]
    string_kp[1] = dict(string_kp[1], lefthand_kpts=["x"] * 63)
    return [
        (
            "short.json",
            short,
            ["short.json", "result #3", f"image_id {short[3]['image_id']}", "face_kpts", "201"],
        ),
        ("unknown.json", unknown, ["unknown.json", "result #2", "987654"]),
        ("noscore.json", no_score, ["noscore.json", "result #1", "missing 'score'"]),
        ("nan.json", text_nan, ["nan.json", "result #2", "score"]),
        ("inf.json", json.dumps(inf_kp), ["inf.json", "result #1", "'keypoints'[0] is inf"]),
        ("str.json", string_kp, ["str.json", "result #1", "lefthand_kpts"]),
        ("dict.json", {"annotations": [r0]}, ["dict.json", "list"]),
        ("garbage.json", "{not json", ["garbage.json", "not valid JSON"]),
    ]


def test_bad_results_give_one_line_naming_the_record(files, tmp_path):
    gt, _, _, rows = files
    for name, content, expected in _bad_row_cases(rows):
        r = cli(gt, write(tmp_path, name, content))
        assert r.returncode == 2, (name, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in r.stderr, (name, r.stderr)
        for piece in expected:
            assert piece in lines[0], (name, piece, lines[0])


def test_bad_ground_truth_gives_one_line(files, tmp_path):
    _, res, gt_obj, _ = files
    plain = json.loads(json.dumps(gt_obj))
    for a in plain["annotations"]:
        del a["foot_kpts"]  # a COCO (body only) keypoint file
    r = cli(write(tmp_path, "coco_body.json", plain), res)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "coco_body.json" in r.stderr and "annotation id 10000 (#0" in r.stderr and "foot_kpts" in r.stderr
    r = cli(tmp_path / "missing.json", res)
    assert r.returncode == 2 and "no such file" in r.stderr


def test_library_errors_name_the_record(files):
    _, _, gt_obj, rows = files
    gt = load_ground_truth(gt_obj)
    bad = [dict(r) for r in rows[:3]] + [dict(rows[3], righthand_kpts=[0.0] * 60)]
    with pytest.raises(EvalInputError, match=r"result #3 .*'righthand_kpts' has 60 values, expected 63"):
        load_results(bad, gt)


def test_cli_imports_nothing_heavy(files):
    gt, res, *_ = files
    heavy = "{'torch', 'lightning', 'matplotlib', 'pycocotools', 'xtcocotools', 'scipy', 'cv2'}"
    code = (
        f"import sys; from wholebody.cli.evaluate import main; rc = main([{str(gt)!r}, {str(res)!r}, '-q']);"
        f"print(rc, sorted({{m.split('.')[0] for m in sys.modules}} & {heavy}))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.split() == ["0", "[]"], r.stdout + r.stderr


def test_plots_details_and_analysis(files, tmp_path):
    gt, res, *_ = files
    plots, details = tmp_path / "plots", tmp_path / "details.json"
    r = cli(gt, res, "--plots", plots, "--details", details, "--analyze")
    assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in plots.iterdir())
    assert names == [
        "ap_by_size.png",
        "box_pr_curves.png",
        "error_breakdown.png",
        "error_pr_curves.png",
        "pr_curves.png",
    ]
    for p in plots.iterdir():
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 20_000
    d = json.loads(details.read_text())
    assert set(d) == {"keypoints", "boxes", "sizes", "diagnosis"}
    assert set(d["boxes"]) == {"face", "lefthand", "righthand"}
    assert set(d["sizes"]["body"]) == {"all", "medium", "large", "M", "L", "XL", "XX"}
    assert np.isclose(sum(d["diagnosis"]["face"]["fractions"].values()), 1.0)
    assert "AP by size" in r.stdout and "inversion" in r.stdout
