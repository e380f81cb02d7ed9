"""Where a result was computed: machine, numerical settings and software versions (metrics.json `provenance`).

A CPU result depends on more than the code and the seed: torch picks its kernels by the processor's
instruction set (ATen's CPU capability), oneDNN and MKL pick code paths by it too unless told otherwise,
OpenBLAS (scikit-learn's kNN in SMOTE) picks a kernel by CPU model, and float sums depend on the thread
count. So every run records what was in force, next to the versions of everything that computes.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

from dfg import portable

#: Packages whose versions can change a number in metrics.json (or the workflow that produced it).
PACKAGES = ("torch", "torchvision", "numpy", "scipy", "scikit-learn", "imbalanced-learn", "pandas",
            "threadpoolctl", "snakemake", "dvc")
#: Environment variables read by torch, oneDNN, MKL, OpenBLAS and OpenMP that change CPU numerics or threads.
NUMERIC_ENV = ("ATEN_CPU_CAPABILITY", "DNNL_MAX_CPU_ISA", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR", "MKL_DYNAMIC",
               "MKL_ENABLE_INSTRUCTIONS", "OPENBLAS_CORETYPE", "NPY_DISABLE_CPU_FEATURES", "GLIBC_TUNABLES",
               "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
LOCK_FILE = "requirements.lock"


def cpu_model() -> str:
    """The processor's model name (/proc/cpuinfo on Linux), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def lock_sha256(root: Path | None = None) -> str | None:
    """sha256 of the dependency lock file the environment was installed from, where it is present."""
    path = (root or Path(__file__).resolve().parents[2]) / LOCK_FILE
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def blas_pools() -> list[dict]:
    """The BLAS/OpenMP libraries loaded in this process, their thread counts and OpenBLAS's kernel."""
    from threadpoolctl import threadpool_info

    keep = ("internal_api", "version", "num_threads", "architecture", "threading_layer")
    return [{k: pool.get(k) for k in keep if pool.get(k) is not None} for pool in threadpool_info()]


def gpu_info(device: torch.device) -> dict | None:
    if device.type != "cuda":
        return None
    index = device.index if device.index is not None else torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    driver = None
    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader", f"--id={index}"],
                                capture_output=True, text=True, timeout=10, check=True).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return {"name": props.name, "capability": f"{props.major}.{props.minor}", "memory_gb": round(props.total_memory / 2**30, 1),
            "driver": driver, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()}


def collect(device: torch.device) -> dict:
    """The `provenance` block of a run's metrics.json."""
    return {
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "os": platform.platform(),
        "python": platform.python_version(),
        # the portable CPU mode was in force (dfg.portable; a CUDA run is never portable across GPUs)
        "portable_cpu": portable.active() and device.type == "cpu",
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "onednn_enabled": torch.backends.mkldnn.enabled,
        "torch_threads": torch.get_num_threads(),
        "blas": blas_pools(),
        "numeric_env": {k: os.environ.get(k) for k in NUMERIC_ENV},
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "gpu": gpu_info(device),
        "versions": versions(),
        "lock_sha256": lock_sha256(),
    }
