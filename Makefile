# wholebody — common tasks. `make help` lists them.
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export WANDB_MODE ?= offline
export WANDB_SILENT ?= true
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: help install test test-full lint demo bench bench-data bench-eval bench-model bench-predict bench-gpu bench-scale clean

help:  ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@# test-only: the reference evaluator of the parity tests, compiled here against this venv's numpy.
	@# --no-cache-dir: a wheel in pip's cache may have been built against numpy 1 (mmpose users have
	@# one) and fails to import here ("numpy.dtype size changed"); then check that it imports, and
	@# rebuild it once if an older install in this venv does not.
	$(BIN)/python -m pip install -q --no-cache-dir --no-build-isolation --no-binary xtcocotools xtcocotools \
	  || echo "warning: xtcocotools did not build; parity tests will use the pinned reference numbers"
	@$(BIN)/python -m wholebody.evaluation.reference \
	  || $(BIN)/python -m pip install -q --force-reinstall --no-deps --no-cache-dir --no-build-isolation --no-binary xtcocotools xtcocotools
	@$(BIN)/python -m wholebody.evaluation.reference
	@touch $(STAMP)

install: $(STAMP)  ## create .venv (if missing) and install the package with dev extras

test: $(STAMP)  ## run the default test suite (what CI runs)
	$(BIN)/python -m pytest -q

test-full: $(STAMP)  ## run every test, slow ones included
	$(BIN)/python -m pytest -q -m "slow or not slow"

lint: $(STAMP)  ## ruff check
	$(BIN)/ruff check src tests scripts

demo: $(STAMP)  ## the main job: synthetic data -> train zoomnet_tiny on CPU -> evaluate -> outputs/demo
	$(BIN)/python -m wholebody.cli.demo

bench: bench-data bench-eval bench-model bench-predict  ## run every benchmark

bench-data: $(STAMP)  ## data pipeline throughput vs JPEG decode
	$(BIN)/python scripts/bench_data.py

bench-eval: $(STAMP)  ## evaluator vs xtcocotools, same files
	$(BIN)/python scripts/bench_eval.py

bench-model: $(STAMP)  ## ZoomNet vs one-stage HRNet: FLOPs and throughput
	$(BIN)/python scripts/bench_model.py

bench-predict: $(STAMP)  ## end-to-end predict: batched vs one-by-one, ONNX Runtime vs eager
	$(BIN)/python scripts/bench_predict.py

bench-scale: $(STAMP)  ## full-size train file: cold/warm load vs json+COCO(), 8 workers' PSS, 100k-row eval vs xtcocotools (BENCH_SCALE_ARGS=--scale 0.05 for a quick run)
	$(BIN)/python scripts/bench_scale.py $(BENCH_SCALE_ARGS)

bench-gpu: $(STAMP)  ## CUDA training/inference img/s, syncs per step, data feed (scripts/bench_gpu.py; --smoke on a CPU)
	$(BIN)/python scripts/bench_gpu.py $(BENCH_GPU_ARGS)

clean:  ## remove build outputs (keeps .venv)
	rm -rf build dist src/*.egg-info .pytest_cache outputs multirun
