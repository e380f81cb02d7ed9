#!/usr/bin/env bash
# Wheels for a GPU machine that has PyTorch but no network (e.g. a lent accelerator image): the
# packages `dfg train/bench/evaluate/prepare` import that such an image usually lacks, at the versions
# this project is tested with, for CPython 3.12 on x86-64 Linux. Run here, where PyPI is reachable;
# then copy .whl/ along and, there:
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
# scripts/gpu-check.sh does that itself when .whl/ exists. Override PY_VERSION for another Python.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${DEST:-.whl}
py=${PY_VERSION:-3.12}
mkdir -p "$dest"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$py" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$dest" \
  imbalanced-learn==0.14.2 sklearn-compat==0.1.6 jsonschema==4.26.0 jsonschema-specifications==2025.9.1 \
  referencing==0.37.0 rpds-py==2026.9.1
ls -1 "$dest"
