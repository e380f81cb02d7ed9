"""`dfg gpu-lease -- CMD ...`: run CMD on one GPU of this machine that no other leased job holds.

Why: `snakemake --resources gpu=N` lets N GPU jobs run at once, but Snakemake does not say which GPU
each one gets; without this they would all land on cuda:0. Each job takes an exclusive lock file per
device (fcntl, released by the kernel when the process ends, so a killed job never leaves a stale
lease) and runs CMD with CUDA_VISIBLE_DEVICES set to that one device.

Several jobs per GPU (`train.jobs_per_gpu` = K): a small model uses a sliver of a GPU, so each device
is handed out K times, one lock file per (device, slot); leases fill every device's first slot before
any second one. The workflow exports K to its jobs as DFG_JOBS_PER_GPU; `--jobs-per-gpu` overrides it.

Candidates: the entries of CUDA_VISIBLE_DEVICES when set, else one per NVIDIA GPU that the driver lists
(/proc/driver/nvidia/gpus, else `nvidia-smi -L`), found without importing torch (seconds per job). No
NVIDIA driver, no GPU, or CUDA_VISIBLE_DEVICES empty/-1: CMD runs as is, on the CPU. Under SLURM the scheduler
has already given the job its own GPUs (and may number them from 0 in every job), so CMD runs as is.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dfg import DfgError

#: Folder of the per-device lock files (git-ignored); override with DFG_GPU_LOCK_DIR.
DEFAULT_LOCK_DIR = ".dfg-gpu-locks"
#: Seconds between attempts while every device is leased (jobs beyond the GPU count wait their turn).
POLL_SECONDS = 1.0


def candidate_devices(env: dict[str, str] | None = None) -> list[str]:
    """The device ids this process may lease, as CUDA_VISIBLE_DEVICES spells them."""
    env = os.environ if env is None else env
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [d.strip() for d in visible.split(",") if d.strip()]
        # CUDA stops at the first invalid entry; "-1" is the usual way to hide every GPU.
        out = []
        for d in ids:
            if d.startswith("-"):
                break
            out.append(d)
        return out
    return [str(i) for i in range(count_gpus())]


#: Where a loaded NVIDIA kernel driver lists its GPUs, one folder each.
NVIDIA_PROC = Path("/proc/driver/nvidia/gpus")


def count_gpus(proc: Path = NVIDIA_PROC) -> int:
    """NVIDIA GPUs on this machine, as the driver reports them: its /proc folder, else `nvidia-smi -L`;
    0 without a driver (CUDA cannot run then). Torch is never imported: it costs seconds and hundreds of
    MB in a process that only hands out a device."""
    if proc.is_dir():
        return sum(1 for p in proc.iterdir() if p.is_dir())
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


#: Environment variable through which the workflow tells its jobs K (train.jobs_per_gpu).
JOBS_PER_GPU_ENV = "DFG_JOBS_PER_GPU"


def jobs_per_gpu(arg: int | None, env: dict[str, str]) -> int:
    """K: `--jobs-per-gpu`, else $DFG_JOBS_PER_GPU, else 1."""
    raw = arg if arg is not None else env.get(JOBS_PER_GPU_ENV, "1")
    try:
        k = int(raw)
    except ValueError:
        k = 0
    if k < 1:
        raise DfgError(f"jobs per GPU must be a whole number >= 1, got {raw!r} (--jobs-per-gpu or "
                       f"${JOBS_PER_GPU_ENV}; the workflow sets it from train.jobs_per_gpu)")
    return k


def job_gpu_resources(gpu: bool, per_gpu: int, provided_gpus: int | None) -> tuple[dict[str, int], int | None]:
    """(what one GPU job claims, the `gpu_slot` total to provide or None) for Snakemake: with K = 1 a
    job claims `gpu=1` of the user's `--resources gpu=N`, as always; with K > 1 it claims one `gpu_slot`
    and N GPUs provide N x K of them, so `gpu=N` keeps meaning N GPUs. No GPU: claims nothing."""
    if not gpu:
        return {"gpu": 0}, None
    if per_gpu == 1:
        return {"gpu": 1}, None
    return {"gpu_slot": 1}, (None if provided_gpus is None else provided_gpus * per_gpu)


def _lock_name(device: str, slot: int = 0) -> str:
    name = "gpu-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in device)
    return name + (f".slot{slot}" if slot else "") + ".lock"


def try_lease(device: str, lock_dir: Path, slot: int = 0) -> int | None:
    """An open file descriptor holding the exclusive lock of `device`'s `slot`, or None when another
    holds it."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_dir / _lock_name(device, slot), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


@contextmanager
def lease(devices: list[str], lock_dir: Path, timeout_s: float | None = None,
          poll_s: float = POLL_SECONDS, per_device: int = 1) -> Iterator[str]:
    """Hold one of `per_device` slots of one of `devices` for the duration of the block; wait while all
    are held. Every device's slot 0 comes before any device's slot 1, so jobs spread over the GPUs first."""
    if not devices:
        raise DfgError("no GPU to lease; run the command directly")
    start = time.monotonic()
    while True:
        for slot in range(per_device):
            for d in devices:
                fd = try_lease(d, lock_dir, slot)
                if fd is None:
                    continue
                try:
                    yield d
                finally:
                    os.close(fd)  # closing releases the flock
                return
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise DfgError(f"all GPUs ({','.join(devices)}) stayed leased for {timeout_s:.0f} s; "
                           f"check for stuck jobs holding locks in {lock_dir}")
        time.sleep(poll_s)


def run_child(cmd: list[str], env: dict[str, str]) -> int:
    """Run cmd, forwarding SIGTERM/SIGINT (Snakemake and SLURM stop jobs that way) so it can clean up."""
    try:
        proc = subprocess.Popen(cmd, env=env)
    except FileNotFoundError:
        raise DfgError(f"command not found: {cmd[0]}") from None

    def forward(signum, _frame):
        proc.send_signal(signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        return proc.wait()
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def main(args: argparse.Namespace, params: dict | None) -> int:
    cmd = list(args.command)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise DfgError("nothing to run; usage: dfg gpu-lease -- CMD ARGS...")
    env = dict(os.environ)
    devices = [] if env.get("SLURM_JOB_ID") else candidate_devices(env)
    if not devices:
        return run_child(cmd, env)
    per_device = jobs_per_gpu(getattr(args, "jobs_per_gpu", None), env)
    lock_dir = args.lock_dir or Path(env.get("DFG_GPU_LOCK_DIR", DEFAULT_LOCK_DIR))
    with lease(devices, lock_dir, per_device=per_device) as device:
        env["CUDA_VISIBLE_DEVICES"] = device
        share = f" (one of {per_device} jobs on it)" if per_device > 1 else ""
        print(f"dfg gpu-lease: CUDA_VISIBLE_DEVICES={device}{share}", file=sys.stderr, flush=True)
        return run_child(cmd, env)
