"""Memory that would grow with the input has a bound (issue 19, item 4): each bound is checked in a
subprocess under an address-space cap (``RLIMIT_AS``) at a size where the code before the fix needed
more than the cap. The subprocesses import numpy (and PIL where an image is read), never torch."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from wholebody.evaluation import nms
from wholebody.evaluation.nms import oks_matrix, oks_nms
from wholebody.evaluation.oks import keypoint_similarity
from wholebody.keypoints import COCO_WHOLEBODY

SIGMAS = COCO_WHOLEBODY.sigmas_array
K = COCO_WHOLEBODY.num_keypoints
MB = 1 << 20


def run_capped(code: str, cap_mb: int, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh Python whose address space is capped at ``cap_mb`` MiB."""
    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (cap_mb * MB, cap_mb * MB))

    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                          timeout=timeout, preexec_fn=cap, env=env)


# ---------------------------------------------------------------------- OKS-NMS
def single_array_oks(keypoints, areas, sigmas):
    """The OKS matrix as one (N, N, K, 2) expression (the implementation before the fix): the reference
    the blocked computation must equal bit for bit."""
    xy = np.asarray(keypoints, dtype=np.float64)[..., :2]
    a = np.asarray(areas, dtype=np.float64)
    scale = (a[:, None] + a[None]) / 2
    return keypoint_similarity(xy[:, None], xy[None], scale, np.asarray(sigmas, np.float64)).mean(-1)


def single_array_nms(keypoints, scores, areas, sigmas, thr):
    over = single_array_oks(keypoints, areas, sigmas) > thr
    removed, keep = np.zeros(len(scores), bool), []
    for i in np.argsort(-np.asarray(scores, np.float64), kind="stable"):
        if not removed[i]:
            keep.append(i)
            removed |= over[i]
    return keep


def crowd(rng, n, k=K):
    """n poses on one image: clusters of near-duplicates (a detector's repeated boxes), tied scores."""
    centres = rng.uniform(0, 800, (max(1, n // 4), 1, 2)) + rng.normal(0, 40, (max(1, n // 4), k, 2))
    kp = centres[rng.integers(len(centres), size=n)] + rng.normal(0, rng.choice([0.2, 1.0, 4.0]), (n, k, 2))
    kp = np.concatenate([kp, rng.uniform(0, 1, (n, k, 1))], -1)
    scores = np.round(rng.uniform(0, 1, n), 1)  # many ties: the earlier pose goes first
    areas = rng.uniform(2000, 20000, n)
    areas[rng.integers(n, size=n // 5)] = 0.0  # area 0 (keypoints' extent of a degenerate pose)
    return kp, scores, areas


@pytest.mark.parametrize("block", [1, 7 * K, 1 << 21])
@pytest.mark.parametrize("seed", range(4))
def test_blocked_oks_nms_is_bit_identical_to_the_single_array_form(monkeypatch, seed, block):
    """Blocks of one value, of a few pairs and of whole rows give the same float64 OKS matrix and the same
    kept poses as the single (N, N, K, 2) expression, ties included."""
    monkeypatch.setattr(nms, "BLOCK_VALUES", block)
    rng = np.random.default_rng(seed)
    kp, scores, areas = crowd(rng, int(rng.integers(2, 40)), k=K if block > 1 else 5)
    sig = SIGMAS[: kp.shape[1]]
    assert np.array_equal(oks_matrix(kp, areas, sig), single_array_oks(kp, areas, sig))
    for thr in (0.3, 0.9, 0.99):
        assert oks_nms(kp, scores, areas, sig, thr).tolist() == single_array_nms(kp, scores, areas, sig, thr)


def test_oks_nms_of_600_poses_on_one_image_runs_under_a_512_mb_cap(tmp_path):
    """600 detections on one image: the single (N, N, K, 2) form peaked at 1.1 GB (measured); blocked,
    the process stays under 512 MB of address space, numpy's own mappings included."""
    rng = np.random.default_rng(11)
    kp, scores, areas = crowd(rng, 600)
    expected = oks_nms(kp, scores, areas, SIGMAS, 0.9).tolist()
    assert 100 < len(expected) < 600  # duplicates removed, distinct persons kept
    np.savez(tmp_path / "poses.npz", kp=kp, scores=scores, areas=areas)
    out = run_capped("""
        import json, sys
        import numpy as np
        from wholebody.evaluation.nms import oks_nms
        from wholebody.keypoints import COCO_WHOLEBODY
        d = np.load(sys.argv[1])
        print(json.dumps(oks_nms(d["kp"], d["scores"], d["areas"], COCO_WHOLEBODY.sigmas_array, 0.9).tolist()))
        assert "torch" not in sys.modules
    """, 512, str(tmp_path / "poses.npz"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout) == expected


# ---------------------------------------------------------------------- wholebody-eval's results reading
def results_file(path, n_images, target_mb, indent=False):
    """A results file of about ``target_mb`` MB (simulated rows repeated) and its ground truth."""
    import orjson

    from wholebody.evaluation.simulate import simulate_ground_truth, simulate_results

    gt = simulate_ground_truth(n_images, seed=0)
    rows = simulate_results(gt, seed=1)
    body = orjson.dumps(rows, option=orjson.OPT_INDENT_2 if indent else 0).strip()[1:-1].strip()
    reps = max(1, round(target_mb * 1e6 / len(body)))
    path.write_bytes(b" [\n" + b",\n".join([body] * reps) + b"\n]\n")
    gt_path = path.with_name("gt.json")
    gt_path.write_bytes(orjson.dumps(gt))
    return gt_path, rows * reps


def test_results_read_in_batches_are_the_whole_file_parse_bit_for_bit(monkeypatch, tmp_path):
    """Batches of 7 rows (part scores, part boxes and box scores in some batches only, bbox areas decided by
    the first row) give exactly the arrays of the whole-file parse, and the same one-line error naming the
    row by its index in the whole file."""
    import orjson

    from wholebody.cocowb import read_json
    from wholebody.evaluation import results as res

    path = tmp_path / "results.json"
    _, rows = results_file(path, 20, 0.01, indent=True)
    rows = [dict(r) for r in (rows * 4)[:60]]
    for i, r in enumerate(rows):
        if i in (30, 31):
            r["face_score"] = 0.25 + i
        if i == 40:
            r["lefthand_box"], r["lefthand_box_score"] = [1.0, 2.0, 30.0, 40.0], 0.5
        if i == 0:
            r["bbox"] = [10.0, 20.0, 100, 200]
        r.setdefault("bbox", [0.0, 0.0, 50.0 + i, 60.0])
    path.write_bytes(orjson.dumps(rows, option=orjson.OPT_INDENT_2))
    monkeypatch.setattr(res, "RESULTS_BATCHED_MIN_BYTES", 0)
    monkeypatch.setattr(res, "RESULTS_BATCH_ROWS", 7)
    whole = res.read_rows(read_json(path), source=str(path))
    batched = res._read_rows_in_batches(path, res.EVAL_PARTS, True, res.COCO_WHOLEBODY)
    assert batched is not None and res.read_results_file(path).image_id.shape == (60,)
    for name in ("image_id", "category_id", "keypoints", "area", "boxes", "box_present", "box_scores"):
        a, b = getattr(whole, name), getattr(batched, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    assert whole.scores.keys() == batched.scores.keys()
    assert all(np.array_equal(whole.scores[p], batched.scores[p]) for p in whole.scores)
    assert batched.box_present.any() and not np.array_equal(batched.scores["face"], batched.scores["body"])

    rows[45]["score"] = "0.5"
    path.write_bytes(orjson.dumps(rows))
    with pytest.raises(res.EvalInputError, match=r"result #45 .*'score'") as batched_error:
        res.read_results_file(path)
    monkeypatch.setattr(res, "RESULTS_BATCHED_MIN_BYTES", 1 << 40)
    with pytest.raises(res.EvalInputError) as whole_error:
        res.read_results_file(path)
    assert str(batched_error.value) == str(whole_error.value)


def test_wholebody_eval_reads_a_40_mb_results_file_under_a_400_mb_cap(tmp_path):
    """The whole-file parse of a 40 MB results file mapped about 900 MB (measured); in batches the whole
    command stays under 400 MB of address space (about 250 MB measured) and prints its table."""
    path = tmp_path / "results.json"
    gt_path, _ = results_file(path, 30, 40)
    out = run_capped("""
        import sys
        from wholebody.cli.evaluate import main
        rc = main([sys.argv[1], sys.argv[2], "--jobs", "1", "--out", sys.argv[3]])
        assert "torch" not in sys.modules
        sys.exit(rc)
    """, 400, str(gt_path), str(path), str(tmp_path / "stats.json"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert "wholebody" in out.stdout and set(json.loads((tmp_path / "stats.json").read_text())) >= {"body", "wholebody"}


def test_out_of_memory_while_reading_results_is_one_line_naming_the_file_and_its_size(tmp_path):
    """Under a cap too small for the file: exit 2 and one line (the file, its size, what to do); no
    traceback, no crash, and no second parse by the standard library."""
    path = tmp_path / "results.json"
    gt_path, _ = results_file(path, 30, 40)
    out = run_capped("""
        import json, sys
        from wholebody.cli.evaluate import main
        json.loads = None  # a second parse by the standard library would fail loudly here
        sys.exit(main([sys.argv[1], sys.argv[2], "--jobs", "1", "-q"]))
    """, 230, str(gt_path), str(path))
    assert out.returncode == 2, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert str(path) in lines[0] and "out of memory" in lines[0] and "MB file" in lines[0]


def test_out_of_memory_in_a_whole_file_json_parse_is_one_line_without_a_stdlib_reparse(tmp_path):
    """read_json (every reader's whole-file parse) under a cap below what orjson needs for the file: the
    one-line error naming the file and its size, before orjson allocates (orjson can crash instead of
    raising when an allocation fails), never a re-parse by the standard library."""
    import orjson

    path = tmp_path / "big.json"
    path.write_bytes(orjson.dumps([[float(i), i * 0.5, 3.25] for i in range(600_000)]))
    out = run_capped("""
        import json, sys
        from wholebody.cocowb import AnnotationError, read_json
        json.loads = None  # the old fallback re-parsed with the standard library after orjson's failure
        try:
            read_json(sys.argv[1])
        except AnnotationError as e:
            print(e)
            sys.exit(2)
    """, 200, str(path))
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr and str(path) in out.stdout and "out of memory" in out.stdout
    assert "MB file" in out.stdout


# ---------------------------------------------------------------------- images: the pixel limit, from the header
@pytest.fixture(scope="module")
def huge_png(tmp_path_factory):
    """A 30000 x 30000 PNG of 0.1 MB (1 bit a pixel, all black): 2.7 GB once decoded as BGR."""
    from PIL import Image

    path = tmp_path_factory.mktemp("huge") / "huge.png"
    Image.new("1", (30000, 30000)).save(path)
    assert path.stat().st_size < 1 << 20
    return path


def jpeg_claiming(width, height, tmp_path):
    """A small valid JPEG whose start-of-frame header is rewritten to claim ``width`` x ``height``."""
    import cv2

    data = bytearray(cv2.imencode(".jpg", np.full((16, 16, 3), 128, np.uint8))[1].tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    path = tmp_path / "claims.jpg"
    path.write_bytes(bytes(data))
    return path


def test_a_30000x30000_png_is_refused_from_its_header_under_a_900_mb_cap(huge_png):
    """Decoding it took 2.7 GB (6.3 GB in predict); the reader refuses it in one line naming the file and
    its size, before decoding, inside an address space of 900 MB (cv2 and numpy take about 470 MB)."""
    out = run_capped("""
        import sys
        from wholebody.images import ImageReadError, read_image
        try:
            read_image(sys.argv[1])
        except ImageReadError as e:
            print(e)
            sys.exit(3)
        assert "torch" not in sys.modules
    """, 900, str(huge_png))
    assert out.returncode == 3, out.stderr[-2000:]
    line = out.stdout.strip()
    assert "\n" not in line and str(huge_png) in line and "30000x30000" in line and "100 megapixels" in line


def test_the_pixel_limit_reads_jpeg_png_and_other_headers_and_is_a_setting(tmp_path):
    import cv2
    from PIL import Image

    from wholebody.images import ImageReadError, header_size, read_image

    img = np.random.default_rng(0).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    for ext in (".jpg", ".png", ".bmp", ".webp", ".tiff"):
        path = tmp_path / f"small{ext}"
        cv2.imwrite(str(path), img)
        assert header_size(np.fromfile(path, np.uint8)) == (53, 37), ext
        assert read_image(path, max_pixels=53 * 37).shape == (37, 53, 3)  # at the limit: read
        with pytest.raises(ImageReadError, match=r"small\.\w+: image of 53x37 pixels"):
            read_image(path, max_pixels=53 * 37 - 1)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(img).save(tmp_path / "progressive.jpg", progressive=True, exif=exif, icc_profile=b"x" * 70000)
    assert header_size(np.fromfile(tmp_path / "progressive.jpg", np.uint8)) == (53, 37)  # SOF2 after EXIF/ICC
    claims = jpeg_claiming(20000, 12000, tmp_path)
    with pytest.raises(ImageReadError, match=r"claims\.jpg: image of 20000x12000 pixels \(240 megapixels\)"):
        read_image(claims)


def test_predict_skips_an_image_over_the_pixel_limit_and_lists_it(memorised, huge_png, tmp_path):
    import shutil

    from wholebody.inference import InputError, WholeBodyEstimator, predict

    folder = tmp_path / "in"
    folder.mkdir()
    good = sorted(memorised.image_dir.iterdir())[0]
    shutil.copy(good, folder / good.name)
    shutil.copy(huge_png, folder / "huge.png")
    estimator = WholeBodyEstimator.from_checkpoint(memorised.ckpt)
    report = predict(estimator, folder, tmp_path / "out", boxes="full", progress=False, overlay=False)
    assert report.images == 1
    assert [(os.path.basename(p), "30000x30000" in why) for p, why in report.skipped] == [("huge.png", True)]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [os.path.basename(s["input"]) for s in summary["skipped"]] == ["huge.png"]
    with pytest.raises(InputError, match="max_image_pixels"):
        predict(estimator, folder, tmp_path / "out2", boxes="full", progress=False, max_image_pixels=0)
