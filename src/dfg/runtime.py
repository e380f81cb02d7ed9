"""Device choice, seeding, determinism and autocast: the run-wide settings every verb shares.

Kept apart from the loop so `dfg train`, `dfg pretrain`, `dfg evaluate` and `dfg bench` make the same
choices from the same parameters (params `device`, `train.amp`, `train.deterministic`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import random
from collections.abc import Callable
from contextlib import AbstractContextManager

import numpy as np
import torch

from dfg import DfgError

log = logging.getLogger(__name__)

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def choose_device(name: str) -> torch.device:
    """`auto` = CUDA when present, else CPU. Asking for CUDA without one is an error, never a silent
    fallback: a GPU job quietly running on a CPU would take days and look like a hang."""
    if name not in DEVICE_CHOICES:
        raise DfgError(f"unknown device {name!r}; use one of {', '.join(DEVICE_CHOICES)}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DfgError(
            "device 'cuda' asked for but torch sees no CUDA device; run with --device cpu (or set "
            "`device: cpu` / `auto` in params.yaml), or check the driver and CUDA_VISIBLE_DEVICES"
        )
    return torch.device(name)


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any tuple (seed, stream name, counter): independent, stable streams without
    a central counter. sha256, so it is the same on every platform and Python version."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every CUDA device) from the run's seed."""
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)


def configure_determinism(device: torch.device, deterministic: bool) -> None:
    """CPU + deterministic: same seed, same machine -> bit-identical metrics (design.md). On CUDA we keep
    cuDNN autotuning for speed; deterministic CUDA kernels would need CUBLAS_WORKSPACE_CONFIG and cost
    throughput, and the paper's comparison is across seeds anyway."""
    if device.type == "cpu":
        torch.use_deterministic_algorithms(deterministic)
    else:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.benchmark = True


def configure_cpu_threads(device: torch.device, threads: int) -> None:
    """On the CPU, fix the thread count of torch and of the BLAS/OpenMP pools (`train.cpu_threads`):
    a float sum split over a different number of threads differs in its last bits, and over a run such
    differences grow into different metrics, so identical results for a seed need the same count on
    every entry point (`dfg train`, Snakemake, `dvc repro`). 0 keeps the defaults (all cores). On CUDA
    the GPU does the arithmetic and the CPU pools are left alone."""
    if device.type != "cpu" or threads <= 0:
        return
    torch.set_num_threads(threads)
    from threadpoolctl import threadpool_limits  # scikit-learn's dependency: NumPy BLAS (SMOTE's kNN)

    threadpool_limits(limits=threads)


def autocast_factory(device: torch.device, amp: bool, cache: bool = True) -> Callable[[], AbstractContextManager]:
    """A zero-argument callable returning the autocast context for a forward pass: bf16 on CUDA when
    `train.amp` (bf16 needs no loss scaling), a no-op elsewhere (CPU autocast is slower here). `cache`
    False for steps recorded as CUDA graphs (autocast's weight-cast cache must not outlive a capture)."""
    if device.type == "cuda" and amp:
        return lambda: torch.autocast(device_type="cuda", dtype=torch.bfloat16, cache_enabled=cache)
    return contextlib.nullcontext


def make_generator(device: torch.device, seed: int) -> torch.Generator:
    """A torch.Generator on `device` (CUDA ops need a CUDA generator), seeded."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def rng_state(device: torch.device) -> dict:
    """Global RNG states (torch CPU/CUDA, NumPy, Python) in a form `weights_only` loading accepts."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
        "python": _py_state_to_list(random.getstate()),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    npst = state["numpy"]
    np.random.set_state(("MT19937", npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"],
                         npst["cached"]))
    random.setstate(_py_state_from_list(state["python"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _py_state_to_list(st: tuple) -> list:
    version, internal, gauss = st
    return [version, list(internal), gauss]


def _py_state_from_list(st: list) -> tuple:
    version, internal, gauss = st
    return (version, tuple(internal), gauss)


def to_memory_format(net: torch.nn.Module, channels_last: bool) -> torch.nn.Module:
    """`train.channels_last`: the network's 4-D weights in NHWC order (convolutions then pick NHWC
    kernels, faster for large convolutional nets under bf16 on recent GPUs; inputs follow the weights).
    The same values, other summation orders: off by default, and not part of a job's identity."""
    return net.to(memory_format=torch.channels_last) if channels_last else net
