"""Portable CPU mode (params `portable_cpu`): a CPU result that does not depend on the processor.

On one CPU, a seed gives identical results at a fixed thread count. Across CPUs it does not: the
libraries pick their code by the processor. Measured on a 2-core AMD EPYC (AVX2; the
demo's ORIGINAL run, 60 steps, final weights compared bit for bit; each line changes them):
- torch's kernel dispatch: ATen CPU capability AVX2 (chosen here) against `default`;
- oneDNN, which torch uses for convolutions: on against off, and with it on, its instruction-set
  ceiling (AVX2 against SSE4.1). oneDNN also sizes its blocking by the caches it detects, so it is
  bypassed (`torch.backends.mkldnn.enabled = False`: convolutions run ATen's im2col and MKL's GEMM);
- MKL's code path (what it picks, its AVX2 branch, its COMPATIBLE branch: three results). Pinned to
  Conditional Numerical Reproducibility COMPATIBLE,STRICT, which MKL documents as identical on every
  x86 processor at a fixed thread count;
- OpenBLAS's kernel (NumPy/SciPy's BLAS: scikit-learn's nearest neighbours in SMOTE, t-SNE) is chosen
  by CPU model: pinned to Nehalem (x86-64-v2, which NumPy's own build already requires);
- NumPy's run-time SIMD dispatch (X86_V3, AVX-512 ...): switched off, leaving its baseline build;
- glibc picks FMA/AVX2 variants of libm's exp, log, ... by CPU: masked to the SSE2 ones. No difference
  was measured here (with the ATen capability at `default`), but a CPU without FMA would take another
  variant than this one;
- thread counts: fixed to train.cpu_threads (a float sum split another way differs in its last bits);
- NNPACK: with oneDNN bypassed, torch computes most convolution forwards with NNPACK, whose x86-64
  kernels need AVX2 and FMA. On a CPU without them torch silently takes another path and the numbers
  differ, so the mode requires them (`apply` checks): "any x86-64" here means any x86-64 CPU with AVX2
  and FMA (x86-64-v3: Intel since 2013, AMD since 2015). Switching NNPACK off instead would lift the
  requirement at a measured 40 % more time per LeNet-5 step and change every result of the mode.

All of these are read when a library loads, before any of our code could change them, so the `dfg`
command starts itself again with them in its environment (before it imports torch) whenever the
parameters ask for the mode and the environment does not hold it yet; what the caller had set for these
variables is overridden. Every entry point runs `dfg` (Snakemake rules, DVC stages, SLURM jobs), so this
one place covers them all. The cost, measured by `dfg bench`, is in the README. The fast mode (the
libraries' own choices) stays the default for long suites and for CUDA; a GPU result is not portable
across GPU types whatever this says.
"""

from __future__ import annotations

import os
import sys

from dfg import DfgError

#: Set to "1" in the environment of a process started in portable mode (provenance reads it).
MARKER = "DFG_PORTABLE_CPU"
#: Set on the re-executed process: a second start that still lacks the settings is an error, not a loop.
REEXEC_GUARD = "DFG_PORTABLE_REEXEC"
#: The verbs whose numbers it pins: every one that computes floats we commit (fetch, prepare and split
#: move bytes and integers; their outputs are checked by their hashes). Not `bench`: it measures the
#: speed of the libraries' own choices (the portable mode's cost is measured on whole runs, README).
VERBS = frozenset({"pretrain", "train", "evaluate", "verify", "aggregate", "figures"})
#: Variables dropped from the caller's environment: they would change a pinned library's arithmetic.
DROPPED = ("MKL_ENABLE_INSTRUCTIONS", "ONEDNN_DEFAULT_FPMATH_MODE", "DNNL_DEFAULT_FPMATH_MODE", "MKL_CBWR_BRANCH")
#: glibc's CPU features to hide from its variant selection (unknown names are ignored by glibc).
GLIBC_HIDDEN = ("AVX", "AVX2", "FMA", "FMA4", "AVX512F", "AVX512DQ", "AVX512BW", "AVX512VL")


def _numpy_dispatch_targets() -> str:
    """NumPy's run-time dispatch targets, to switch off (names differ between NumPy versions, so they are
    read from the installed one; importing NumPy here does not affect the process that is started)."""
    try:
        try:
            from numpy._core._multiarray_umath import __cpu_dispatch__
        except ImportError:  # NumPy 1.x
            from numpy.core._multiarray_umath import __cpu_dispatch__
    except ImportError:
        return ""
    return " ".join(__cpu_dispatch__)


def settings(threads: int) -> dict[str, str]:
    """The environment of a portable process computing with `threads` threads."""
    if threads < 1:
        raise DfgError("portable_cpu needs a fixed thread count: set train.cpu_threads to 1 or more (0 = all cores "
                       "would make the result depend on the machine's core count)")
    n = str(threads)
    return {
        "ATEN_CPU_CAPABILITY": "default",
        "DNNL_MAX_CPU_ISA": "SSE41", "ONEDNN_MAX_CPU_ISA": "SSE41",  # for anything left on oneDNN
        "MKL_CBWR": "COMPATIBLE,STRICT", "MKL_DYNAMIC": "FALSE",
        "OPENBLAS_CORETYPE": "Nehalem",
        "NPY_DISABLE_CPU_FEATURES": _numpy_dispatch_targets(),
        "GLIBC_TUNABLES": "glibc.cpu.hwcaps=" + ",".join(f"-{f}" for f in GLIBC_HIDDEN),
        "OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n,
        MARKER: "1",
    }


def in_force(env: dict[str, str], threads: int) -> bool:
    want = settings(threads)
    return all(env.get(k) == v for k, v in want.items()) and not any(k in env for k in DROPPED)


def requested(argv: list[str]) -> tuple[bool, int]:
    """(portable_cpu, train.cpu_threads) of the parameters `argv` names (--params, --suite), read without
    importing torch or NumPy."""
    from dfg.config import DEFAULT_PARAMS, load_params

    params_file, suite = str(DEFAULT_PARAMS), None
    for i, word in enumerate(argv[:-1]):
        if word == "--params":
            params_file = argv[i + 1]
        elif word == "--suite":
            suite = argv[i + 1]
    params = load_params(params_file, suite, semantic=False)
    return bool(params.get("portable_cpu", False)), int(params["train"]["cpu_threads"])


def ensure(argv: list[str]) -> None:
    """Start this `dfg` command again in portable mode when its parameters ask for it and the environment
    does not hold it (os.execve: the process is replaced). A no-op when it is in force or not asked for."""
    wanted, threads = requested(argv)
    if not wanted or in_force(dict(os.environ), threads):
        return
    if os.environ.get(REEXEC_GUARD):
        raise DfgError("portable_cpu: the environment was changed after start-up (a sitecustomize or shell hook?); "
                       f"run with these variables as they are set: {settings(threads)}")
    env = {k: v for k, v in os.environ.items() if k not in DROPPED}
    env.update(settings(threads))
    env[REEXEC_GUARD] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "dfg", *argv], env)


def active() -> bool:
    return os.environ.get(MARKER) == "1"


def apply() -> None:
    """In a process started in portable mode: bypass oneDNN, and check torch took the baseline kernels."""
    import torch

    torch.backends.mkldnn.enabled = False
    if not torch._nnpack_available():
        raise DfgError("portable_cpu: this CPU lacks AVX2 or FMA, which NNPACK (torch's convolution path in this "
                       "mode) needs; without it torch computes convolutions another way and the results would "
                       "differ from those of every other machine; set portable_cpu: false (the fast mode)")
    got = torch.backends.cpu.get_cpu_capability()
    if got != "DEFAULT":
        raise DfgError(f"portable_cpu: torch runs its {got} kernels although ATEN_CPU_CAPABILITY=default was set "
                       "before it loaded; this torch build ignores it, so results would depend on the CPU")
