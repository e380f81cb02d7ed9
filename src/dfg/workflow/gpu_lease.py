"""`dfg gpu-lease -- CMD ...`: run CMD on one GPU of this machine that no other leased job holds.

Why: `snakemake --resources gpu=N` lets N GPU jobs run at once, but Snakemake does not say which GPU
each one gets; without this they would all land on cuda:0. Each job takes an exclusive lock file per
device (fcntl, released by the kernel when the process ends, so a killed job never leaves a stale
lease) and runs CMD with CUDA_VISIBLE_DEVICES set to that one device.

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


def _lock_name(device: str) -> str:
    return "gpu-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in device) + ".lock"


def try_lease(device: str, lock_dir: Path) -> int | None:
    """An open file descriptor holding the exclusive lock of `device`, or None when another holds it."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_dir / _lock_name(device), os.O_RDWR | os.O_CREAT, 0o644)
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
          poll_s: float = POLL_SECONDS) -> Iterator[str]:
    """Hold one of `devices` for the duration of the block; wait while all are held."""
    if not devices:
        raise DfgError("no GPU to lease; run the command directly")
    start = time.monotonic()
    while True:
        for d in devices:
            fd = try_lease(d, lock_dir)
            if fd is not None:
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
    lock_dir = args.lock_dir or Path(env.get("DFG_GPU_LOCK_DIR", DEFAULT_LOCK_DIR))
    with lease(devices, lock_dir) as device:
        env["CUDA_VISIBLE_DEVICES"] = device
        print(f"dfg gpu-lease: CUDA_VISIBLE_DEVICES={device}", file=sys.stderr, flush=True)
        return run_child(cmd, env)
