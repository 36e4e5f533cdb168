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
