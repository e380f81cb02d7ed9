"""Start-up cost: what each entry point imports. A training job, the CLI's help and the GPU lease must not
load libraries they do not use (scikit-learn, imbalanced-learn, matplotlib, torchvision.models with
torch._dynamo: seconds each, measured with `python -X importtime`); `--help` and `dfg gpu-lease` must not
load torch at all."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dfg.workflow import gpu_lease

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("sklearn", "imblearn", "matplotlib", "torchvision", "torch._dynamo", "scipy", "pandas")


def loaded_after(code: str, env: dict | None = None) -> set[str]:
    """Top-level packages (and torch._dynamo) in sys.modules after running `code` in a fresh interpreter."""
    probe = (f"{code}\nimport sys\n"
             "print('@@modules', ' '.join(sorted({m.split('.')[0] for m in sys.modules} | "
             "({'torch._dynamo'} if 'torch._dynamo' in sys.modules else set()))))")
    r = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, **(env or {})}, check=False)
    assert r.returncode == 0, r.stderr
    return set(r.stdout.rpartition("@@modules")[2].split())


def test_a_training_job_loads_torch_and_nothing_heavy_besides():
    mods = loaded_after("import dfg.train, dfg.loop, dfg.metrics\n"
                        "from dfg.methods import METHODS\nfrom dfg.models import build_backbone\n"
                        "for m in ('original', 'dfg', 'delta', 'difa_cmwgan', 'balanced_softmax'): METHODS.get(m)\n"
                        "build_backbone('lenet5', 10)")
    assert "torch" in mods
    assert not mods & set(HEAVY), mods & set(HEAVY)


def test_a_vgg16_backbone_imports_torchvision_when_built():
    assert "torchvision" in loaded_after("from dfg.models import build_backbone\nbuild_backbone('vgg16', 10)")


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["evaluate", "--help"], ["pretrain", "--help"],
                                  ["bench", "--help"], ["fetch-weights", "--help"], ["params", "train.steps"],
                                  ["--version"]])
def test_help_version_and_params_never_import_torch(argv):
    mods = loaded_after(f"from dfg.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass")
    assert "torch" not in mods


def test_gpu_lease_decides_without_torch():
    mods = loaded_after("from dfg.cli import main\nmain(['gpu-lease', '--', 'true'])",
                        env={"CUDA_VISIBLE_DEVICES": "", "PATH": os.environ["PATH"]})
    assert "torch" not in mods


def test_gpu_count_from_the_driver_folder_then_nvidia_smi(tmp_path, monkeypatch):
    proc = tmp_path / "gpus"
    for bus in ("0000:01:00.0", "0000:41:00.0"):
        (proc / bus).mkdir(parents=True)
    assert gpu_lease.count_gpus(proc) == 2
    # no driver folder: nvidia-smi's list, one "GPU i: ..." line per device
    bindir = tmp_path / "bin"
    bindir.mkdir()
    smi = bindir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 (UUID: GPU-1)'\necho 'GPU 1: NVIDIA H100 (UUID: GPU-2)'\n"
                   "echo 'GPU 2: NVIDIA H100 (UUID: GPU-3)'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", str(bindir))
    assert gpu_lease.count_gpus(tmp_path / "absent") == 3
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert gpu_lease.count_gpus(tmp_path / "absent") == 0  # no driver at all: no GPU
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert gpu_lease.candidate_devices({}) == ([] if not gpu_lease.NVIDIA_PROC.is_dir() else
                                              [str(i) for i in range(gpu_lease.count_gpus())])
