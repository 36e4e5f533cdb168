#!/bin/bash
# Issue 13's device check as one script, for the GPU machine (device tool `run`, carry [".whl"] made by
# scripts/gpu_wheels.sh):   bash scripts/gpu_check.sh [all|bench|fit]
#   bench: scripts/bench_gpu.py (--budget-s $BENCH_BUDGET_S, default 300), its JSON line in bench_gpu.json;
#   fit:   a short Lightning fit of ZoomNet at 384x288 on the synthetic set, bf16-mixed, channels_last,
#          torch.compile, through the DDP code path on one device, validation once; fit_summary.json.
# Everything goes to $OUT (the device tool's folder; default outputs/gpu_check). GPU_CHECK_SMOKE=1 runs
# both stages small on the CPU with the local .venv (how this script is tested).
set -uo pipefail
cd "$(dirname "$0")/.."
STAGE=${1:-all}
OUT=${OUT:-outputs/gpu_check}; mkdir -p "$OUT"
SMOKE=${GPU_CHECK_SMOKE:-0}
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled OMP_WAIT_POLICY=PASSIVE
if [ "$SMOKE" = 1 ]; then
  PY=${PY:-.venv/bin/python}
else
  PY=${PY:-python3}
  if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
      || { echo "wheel install failed"; exit 1; }
    export PYTHONPATH=/tmp/site
  fi
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
{ nvidia-smi 2>&1 || echo "no nvidia-smi"; $PY -c "import sys, torch, lightning, hydra; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'lightning', lightning.__version__, 'hydra', hydra.__version__)"; } > "$OUT/versions.txt" 2>&1
cat "$OUT/versions.txt" | tail -1

if [ "$STAGE" = all ] || [ "$STAGE" = bench ]; then
  echo "== bench_gpu"
  $PY scripts/bench_gpu.py --budget-s "${BENCH_BUDGET_S:-300}" $([ "$SMOKE" = 1 ] && echo --smoke) 2>&1 | tee "$OUT/bench_gpu.log"
  tail -1 "$OUT/bench_gpu.log" > "$OUT/bench_gpu.json"
fi

if [ "$STAGE" = all ] || [ "$STAGE" = fit ]; then
  echo "== Lightning fit"
  if [ "$SMOKE" = 1 ]; then
    args=(model=zoomnet_tiny data.synthetic.images=16 data.synthetic.val_images=4 data.synthetic.workers=1 data.batch_size=4
          data.num_workers=0 trainer.accelerator=cpu trainer.max_epochs=2 trainer.check_val_every_n_epoch=2
          trainer.log_every_n_steps=2 compile=false)
  else
    args=(model=zoomnet data.synthetic.images=1000 data.synthetic.val_images=50 data.synthetic.workers=16 data.batch_size=32
          data.num_workers=12 trainer.accelerator=gpu trainer.max_epochs=5 trainer.check_val_every_n_epoch=5
          trainer.log_every_n_steps=10 compile=true)
  fi
  timeout "${FIT_TIMEOUT_S:-260}" $PY -m wholebody.cli.train data=synthetic "data.root=$OUT/../synth_gpu_check" trainer=ddp \
    trainer.devices=1 trainer.precision=bf16-mixed channels_last=true logger=csv '~callbacks.progress' \
    callbacks.report.plots=false "paths.output_dir=$OUT/fit" name=zoomnet_gpu hydra.run.dir="$OUT/fit/run" "${args[@]}" \
    2>&1 | tee "$OUT/fit.log" | grep -vE "^\s*$" | tail -25
  echo "fit exit status ${PIPESTATUS[0]}"
  $PY - "$OUT" <<'PY'
import csv, json, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = list(csv.DictReader(next((out / "fit" / "run" / "csv").glob("version_*/metrics.csv")).open()))
col = lambda k: [(int(r["step"]), float(r[k])) for r in rows if r.get(k)]
loss, rate = col("train/loss/total_step"), col("train/img_per_s")
stats = json.loads((out / "fit" / "run" / "stats.json").read_text()) if (out / "fit" / "run" / "stats.json").exists() else None
steady = [v for _, v in rate[1:]] or [v for _, v in rate]  # the first window holds compilation
k = max(1, len(loss) // 10)  # a tenth of the logged steps at each end: per-step losses are noisy
first, last = (sum(v for _, v in w) / len(w) if w else None for w in (loss[:k], loss[-k:]))
summary = {"steps": max((s for s, _ in loss), default=0), "loss_first": first, "loss_last": last,
           "loss_fell": bool(loss) and last < first,
           "img_per_s_steady_median": sorted(steady)[len(steady) // 2] if steady else None,
           "gpu_mem_gb": max((float(r["train/gpu_mem_gb"]) for r in rows if r.get("train/gpu_mem_gb")), default=None),
           "wholebody_AP": stats["wholebody"]["AP"] if stats else None}
(out / "fit_summary.json").write_text(json.dumps(summary))
print(json.dumps(summary))
PY
fi
