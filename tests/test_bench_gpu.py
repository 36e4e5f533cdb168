"""scripts/bench_gpu.py keeps working without a GPU: its --smoke mode runs every section on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys

from training_utils import REPO


def test_the_gpu_benchmark_smoke_mode_runs_every_section_and_ends_with_one_json_line():
    res = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_gpu.py"), "--smoke"], capture_output=True,
                         text=True, timeout=600, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["smoke"] and out["device"] == "cpu" and out["skipped"] == []
    for model in ("zoomnet", "hrnet_wholebody"):
        variants = out["train"][model]["b2"]
        assert {"fp32", "fp32_cl", "bf16", "bf16_cl"} <= set(variants)
        compiled = [v for k, v in variants.items() if k.endswith("_compiled")]
        assert len(compiled) == 1 and compiled[0]["compile_s"] > 0
        assert all(v["img_per_s"] > 0 for v in variants.values())
        assert set(out["infer"][model]) == {"b1_eager", "b2_eager", "b1_compiled", "b2_compiled"}
    ratio = out["ratio"]
    eager = {"fp32", "fp32_cl", "bf16", "bf16_cl"}
    # every eager variant, plus the compiled one when both models compiled the same (the fastest) variant
    assert ratio["macs_ratio"] > 1 and eager <= set(ratio["time_ratio"])
    extra = set(ratio["time_ratio"]) - eager
    assert extra <= {k for k in out["train"]["zoomnet"]["b2"] if k.endswith("_compiled")} and len(extra) <= 1
    assert out["data"]["samples"] > 0 and out["data"]["samples_per_s"] > 0
    assert out["syncs_per_step"] is None  # counted on CUDA only
    assert set(out["targets"]) == {"time_ratio_le_1.15x_macs", "data_feeds_training"}


def test_a_spent_budget_skips_the_sections_and_says_which():
    res = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_gpu.py"), "--smoke", "--budget-s", "0"],
                         capture_output=True, text=True, timeout=300, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert "train zoomnet b2 fp32" in out["skipped"] and "data pipeline" in out["skipped"]
    assert out["train"]["zoomnet"]["b2"] == {} and "data" not in out


def test_the_device_script_runs_its_fit_stage_on_the_cpu(tmp_path):
    """scripts/gpu_check.sh as the device runs it, small on the CPU (GPU_CHECK_SMOKE=1): the Lightning fit
    through the DDP code path on one device with bf16-mixed and channels_last, and its summary."""
    import os

    env = {**os.environ, "OUT": str(tmp_path / "out"), "GPU_CHECK_SMOKE": "1", "PY": sys.executable, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), "fit"], capture_output=True, text=True,
                         timeout=600, env=env)
    assert res.returncode == 0 and "fit exit status 0" in res.stdout, (res.stdout + res.stderr)[-3000:]
    summary = json.loads((tmp_path / "out" / "fit_summary.json").read_text())
    assert summary["steps"] >= 8 and summary["img_per_s_steady_median"] > 0 and summary["wholebody_AP"] is not None
    assert "torch" in (tmp_path / "out" / "versions.txt").read_text()
