#!/bin/bash
# Wheels the GPU machine lacks (its image has Python 3.12, torch, torchvision, lightning, timm, opencv,
# scipy, matplotlib, rich; not hydra, albumentations, pycocotools, orjson): downloaded here into .whl/
# (kept out of git), carried to the device by scripts/gpu_check.sh's caller (`carry: [".whl"]`).
# Versions: this checkout's .venv's, so the device runs what the tests ran.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
PIP=${PIP:-.venv/bin/pip}
pure=(hydra-core omegaconf antlr4-python3-runtime albumentations albucore pydantic annotated-types typing-inspection)
binary=(pydantic-core simsimd stringzilla pycocotools orjson)
pin() { for p in "$@"; do echo "$p==$($PIP show "$p" | sed -n 's/^Version: //p')"; done; }
rm -rf .whl && mkdir .whl
# pure Python: any wheel (antlr4's 4.9.3, which omegaconf needs, is an sdist: built here into a py3 wheel)
python3 -m pip wheel -q --no-deps -w .whl $(pin "${pure[@]}")
plat=()
for n in 39 35 34 31 28 27 24 17; do plat+=(--platform "manylinux_2_${n}_x86_64"); done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${plat[@]}" --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl $(pin "${binary[@]}")
ls .whl && du -sh .whl
