#!/usr/bin/env bash
# The CUDA checks of issue 3, as one short script for a machine with a GPU:
#   1. `dfg bench` of every method on the GPU (random data; steps/s, images/s);
#   2. a short fmnist-synth DFG run and a FINE-TUNING run with --device cuda (bf16 autocast, device-resident data);
#   3. `dfg evaluate` of the DFG checkpoint, which must reproduce the run's accuracy.
# Needs the package installed (make venv) and the demo's inputs: data/prepared/fashion-mnist,
# data/splits/fmnist-synth/seed0.json, models/source/lenet5-synthdigits.pt (e.g. from `make demo`, or
# `snakemake --cores all models/source/lenet5-synthdigits.pt data/splits/fmnist-synth/seed0.json`).
# Writes everything under $OUT (default results/gpu-check/).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-results/gpu-check}
steps=${STEPS:-200}
mkdir -p "$out"
export PATH="$PWD/.venv/bin:$PATH"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
dfg bench --device cuda --backbones "${BACKBONES:-lenet5,vgg16,resnet50}" --steps 20 | tee "$out/bench.txt"
for method in dfg finetune; do
  dfg train fmnist-synth "$method" --seed 0 --steps "$steps" --device cuda \
    --out-model "$out/$method/seed0.pt" --out-dir "$out/$method/seed0" 2>&1 | tail -2 | tee -a "$out/train.txt"
done
dfg evaluate "$out/dfg/seed0.pt" --task fmnist-synth --device cuda --out "$out/dfg/seed0/evaluate.json" \
  | tee -a "$out/train.txt"
python - "$out" <<'PY'
import json, sys
d = sys.argv[1]
run = json.load(open(f"{d}/dfg/seed0/metrics.json"))
ev = json.load(open(f"{d}/dfg/seed0/evaluate.json"))
print(f"dfg on cuda: accuracy {run['accuracy']:.4f} (evaluate: {ev['accuracy']:.4f}), "
      f"{run['steps']} steps in {run['wall_seconds']:.1f} s, device {run['device']}")
assert abs(run["accuracy"] - ev["accuracy"]) < 1e-3, "evaluate does not reproduce the run's accuracy"
PY
