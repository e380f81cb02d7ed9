#!/usr/bin/env bash
# The CUDA checks, as one short script for a machine with a GPU. CHECKS picks the groups (comma-separated):
#
# basic (default; issue 3):
#   1. a short fmnist-synth DFG run and a FINE-TUNING run with --device cuda (bf16 autocast,
#      device-resident uint8 data, on-device augmentation);
#   2. `dfg evaluate` of the DFG checkpoint, which must reproduce the run's accuracy;
#   3. `dfg bench` of every method on the GPU (random data; steps/s, images/s).
#
# capture (train.capture, train.jobs_per_gpu; docs/speed.md, "On a GPU"):
#   4. `dfg bench --capture off,on` of every method on each of BACKBONES, side by side in one process
#      (CSV per backbone; VGG-16 and ResNet-50 also with --channels-last off,on); the gate: a LeNet-5
#      DFG step at least 5x faster captured than eager;
#   5. aggregate DFG steps/s with K = 1, 2, 4, 8 bench processes sharing the GPU (JOBS_PER_GPU_LIST);
#   6. one full fmnist-mnist5k DFG run and one ORIGINAL run, seed 0, fmnist-full's 40 000 steps
#      (FULL_STEPS overrides) with capture on; their accuracies against fmnist-full's five CPU runs;
#   7. `dfg plan --rates` of fmnist-full and of the paper suite from the measured captured rates, and the
#      wall time with the best K. scripts/gpu-capture-report.py prints 4-7 as tables (capture-report.md).
#   Inputs of 6: data/splits/fmnist-mnist5k/seed0.json, models/source/lenet5-mnist5k.pt and F-MNIST as in
#   basic (raw or prepared); results/fmnist-full/runs (in git) for the comparison.
#
# Python: the project's .venv when present, else `python3` with src/ on PYTHONPATH (a GPU image with
# its own PyTorch); wheels in .whl/ (scripts/gpu-wheels.sh) are installed to a temporary folder first.
# Data: data/splits/fmnist-synth/seed0.json and models/source/lenet5-synthdigits.pt, plus either
# data/prepared/fashion-mnist or data/raw/fashion-mnist (then `dfg prepare` runs here first). All come
# from `make demo`, or `snakemake --cores all models/source/lenet5-synthdigits.pt
# data/splits/fmnist-synth/seed0.json`.
#
# Full outputs go to GPU_CHECK_DIR (default results/gpu-check). With SUMMARY_DIR set, a flat copy of
# the key files (at most 7) lands there too, and the log is written there directly. Every stage runs
# even if an earlier one failed; the exit status is non-zero when any failed. STEPS (200), BACKBONES
# (lenet5,vgg16,resnet50), DEVICE (cuda), DFG_PYTHON (a Python to use instead of .venv's),
# STAGE_TIMEOUT (300 s per stage) and BENCH_TIMEOUT (per bench stage; default STAGE_TIMEOUT) can be set.
#
# On this project's lent GPU machine (PyTorch in its image, no network), after scripts/gpu-wheels.sh
# here, one call runs all but the ResNet-50 bench (the prepared arrays exceed the 64 MiB a call carries;
# the raw files do not):
#   run(command="BACKBONES=lenet5,vgg16 SUMMARY_DIR=$OUT GPU_CHECK_DIR=/tmp/gpu-check STAGE_TIMEOUT=150 bash scripts/gpu-check.sh",
#       carry=[".whl", "data/raw/fashion-mnist", "data/splits", "models/source"], timeout_s=360)
# (about 35 MB carried.) Measured there on 2026-11-30 (docs/measurements/h200-2026-11-30/): every stage
# up to bench-vgg16 took 150 s together (bench-lenet5 18 s, bench-vgg16 63 s), but bench-resnet50 did
# not fit its 150 s: it printed 4 of 13 methods (a second call, 10 steps, did 8 more in 220 s). So the
# call above, without ResNet-50, takes about 3 minutes; bench ResNet-50 in a call of its own
# (`dfg bench --backbones resnet50 --steps 10`, about 6 minutes). Rows of a bench stage cut by its
# timeout are in the log already.)
set -uo pipefail
cd "$(dirname "$0")/.."
dir=${GPU_CHECK_DIR:-results/gpu-check}
summary=${SUMMARY_DIR:-}
steps=${STEPS:-200}
device=${DEVICE:-cuda}  # DEVICE=cpu: a dry run of this script on a machine without a GPU
stage_timeout=${STAGE_TIMEOUT:-300}  # seconds per stage, so one hang cannot eat a lease
bench_timeout=${BENCH_TIMEOUT:-$stage_timeout}
mkdir -p "$dir" ${summary:+"$summary"}
log="${summary:-$dir}/gpu-check.log"  # in SUMMARY_DIR when set, so a run cut short still leaves its log
: > "$log"

if [[ -z "${DFG_PYTHON:-}" && -x .venv/bin/python ]]; then
  py=.venv/bin/python
else
  py=${DFG_PYTHON:-python3}
  site=""
  if compgen -G ".whl/*.whl" > /dev/null; then
    site=$(mktemp -d)
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .whl/*.whl
  fi
  export PYTHONPATH="$PWD/src${site:+:$site}${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
dfg=("$py" -m dfg)
failed=()
stage() {  # [limit=S] stage NAME COMMAND...: run under a timeout, log, remember a failure, go on
  local name=$1; shift
  echo "== $name: $*" | tee -a "$log"
  local t0=$SECONDS
  if timeout "${limit:-$stage_timeout}" "$@" 2>&1 | tee -a "$log"; then
    echo "== $name ok ($((SECONDS - t0)) s)" | tee -a "$log"
  else
    echo "== $name FAILED ($((SECONDS - t0)) s)" | tee -a "$log"; failed+=("$name")
  fi
}

[[ $device == cpu ]] || stage gpu nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
stage versions "$py" -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'cuda', torch.version.cuda, 'device', torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)"
checks=",${CHECKS:-basic},"
if [[ ! -f data/prepared/fashion-mnist/meta.json ]]; then
  stage prepare "${dfg[@]}" prepare fashion-mnist
fi
if [[ $checks == *,basic,* ]]; then
  for method in dfg finetune; do
    stage "train-$method" "${dfg[@]}" train fmnist-synth "$method" --seed 0 --steps "$steps" --device "$device" \
      --out-model "$dir/$method/seed0.pt" --out-dir "$dir/$method/seed0"
  done
  stage evaluate "${dfg[@]}" evaluate "$dir/dfg/seed0.pt" --task fmnist-synth --device "$device" --out "$dir/dfg/seed0/evaluate.json"
  stage compare "$py" - "$dir" <<'PY'
import json, sys
d = sys.argv[1]
for method in ("dfg", "finetune"):
    run = json.load(open(f"{d}/{method}/seed0/metrics.json"))
    print(f"{method} on {run['device']}: accuracy {run['accuracy']:.4f}, balanced {run['balanced_accuracy']:.4f}, "
          f"{run['steps']} steps in {run['wall_seconds']:.1f} s ({run['steps'] / run['wall_seconds']:.1f} steps/s "
          f"including evaluations), torch {run['torch_version']}")
run = json.load(open(f"{d}/dfg/seed0/metrics.json"))
ev = json.load(open(f"{d}/dfg/seed0/evaluate.json"))
print(f"dfg evaluate: accuracy {ev['accuracy']:.4f} (run: {run['accuracy']:.4f})")
assert abs(run["accuracy"] - ev["accuracy"]) < 1e-3, "evaluate does not reproduce the run's accuracy"
PY
  # last, the slowest: one stage per backbone (own timeout), rows printed as each method finishes
  IFS=, read -ra backbones <<< "${BACKBONES:-lenet5,vgg16,resnet50}"
  for backbone in "${backbones[@]}"; do
    limit=$bench_timeout stage "bench-$backbone" "${dfg[@]}" bench --device "$device" --backbones "$backbone" --steps 20
  done
fi

if [[ $checks == *,capture,* ]]; then
  cap="$dir/capture"; mkdir -p "$cap"
  IFS=, read -ra backbones <<< "${BACKBONES:-lenet5,vgg16,resnet50}"
  for backbone in "${backbones[@]}"; do  # 4: every method, capture off and on side by side
    bsteps=$([[ $backbone == lenet5 ]] && echo "${CAPTURE_STEPS:-200}" || echo "${CAPTURE_STEPS_LARGE:-20}")
    layouts=$([[ $backbone == lenet5 ]] && echo off || echo off,on)  # channels_last: the large conv nets
    limit=$bench_timeout stage "capture-bench-$backbone" "${dfg[@]}" bench --device "$device" --backbones "$backbone" \
      --capture off,on --channels-last "$layouts" --steps "$bsteps" ${CAPTURE_METHODS:+--methods "$CAPTURE_METHODS"} \
      --out "$cap/bench-$backbone.csv"
  done
  for k in ${JOBS_PER_GPU_LIST:-1 2 4 8}; do  # 5: K bench processes of LeNet-5 DFG at once on the one GPU
    stage "capture-share-k$k" "$py" scripts/gpu-capture-report.py share "$k" "$cap" -- "${dfg[@]}" bench \
      --device "$device" --backbones lenet5 --methods dfg --capture on --steps "${SHARE_STEPS:-300}"
  done
  for method in dfg original; do  # 6: full-length runs, capture on (train.capture: auto on CUDA)
    stage "capture-full-$method" "${dfg[@]}" --suite fmnist-full train fmnist-mnist5k "$method" --seed 0 --device "$device" \
      ${FULL_STEPS:+--steps "$FULL_STEPS"} --split data/splits/fmnist-mnist5k/seed0.json \
      --source models/source/lenet5-mnist5k.pt --out-model "$cap/full/$method/seed0.pt" --out-dir "$cap/full/$method/seed0"
  done
  stage capture-report "$py" scripts/gpu-capture-report.py report "$cap" --out "$cap/capture-report.md"  # 7 and the tables
fi

if [[ -n "$summary" ]]; then
  [[ -f "$dir/capture/capture-report.md" ]] && cp "$dir/capture/capture-report.md" "$summary/"
  for f in "$dir"/capture/bench-*.csv; do [[ -f $f ]] && cp "$f" "$summary/capture-$(basename "$f")"; done
  for method in dfg finetune; do
    [[ -f "$dir/$method/seed0/metrics.json" ]] && cp "$dir/$method/seed0/metrics.json" "$summary/$method-metrics.json"
    [[ -f "$dir/$method/seed0/curves.csv" ]] && cp "$dir/$method/seed0/curves.csv" "$summary/$method-curves.csv"
  done
  [[ -f "$dir/dfg/seed0/evaluate.json" ]] && cp "$dir/dfg/seed0/evaluate.json" "$summary/dfg-evaluate.json"
fi
if (( ${#failed[@]} )); then
  echo "gpu-check: FAILED stages: ${failed[*]}" | tee -a "$log"; exit 1
fi
echo "gpu-check: all stages passed" | tee -a "$log"
