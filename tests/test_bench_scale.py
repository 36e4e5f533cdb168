"""scripts/bench_scale.py runs end to end at a small --scale: every measurement, one JSON line, and the
figures it exists to show (rank 1 holds no gathered row, the evaluator equals xtcocotools)."""

from __future__ import annotations

import json
import subprocess
import sys

from training_utils import REPO
from wholebody.evaluation.reference import reference_status


def test_the_scale_benchmark_runs_every_section_at_a_small_scale(tmp_path):
    res = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_scale.py"), "--scale", "0.003",
                          "--work", str(tmp_path), "--workers", "2"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["persons"] > 500 and out["rows"] == 300 and out["worker_samples"] == 500
    assert out["cold_s"] > 0 and out["warm_s"] > 0 and out["reference_load_s"] > 0
    assert out["gather_rank0_rows"] == out["rows"] and out["gather_rank1_rows"] == 0
    assert out["worker_pss_end_mb"] > 0
    if reference_status()[0] == "ok":
        assert out["eval_max_abs_diff"] == 0
    assert not (tmp_path / "scale0.003").exists()  # removed without --keep
