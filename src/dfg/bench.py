"""`dfg bench`: throughput of each method x backbone on the current device, on random data of the
right shape (no convergence, no files). The numbers to compare with method.md §7 (authors' loop:
3.0 DFG steps/s for LeNet-5 at batch 64 on a 2-thread CPU).

Each pair runs the real method through the real RunContext and batch source: `bench.warmup` untimed
steps, then `bench.steps` timed ones (params `bench`, `train.batch_size`, `train.optimizer`). The warm-up
must hold every kind of step (DFG's classifier update comes every `classifier_every` = 5 steps): on CUDA,
cuDNN autotunes each new shape once, and that must not land in the timed window. A method with phases
that do different work (DIFA: generator, then matching) gets one row per phase, each timed from its
first step. A suite's method variants (`variants:`) bench like methods, so that a variant and its
base compare in one run (`dfg --suite dfg-slope02 bench --methods dfg,dfg_slope02`); `--out` also writes
the rows as CSV. The run is nominally BENCH_RUN_STEPS long, so switches placed at a fraction of the run
(DRW, DRS, the step LR decay) stay after the window: the rows time the first part of such methods."""

from __future__ import annotations

import argparse
import logging
import time

import torch

from dfg import DfgError
from dfg.batches import DeviceImages, EvalImages, TaskData, TrainBatches
from dfg.loop import make_context
from dfg.methods import METHODS
from dfg.methods.variants import method_spec
from dfg.models import BACKBONES, build_backbone
from dfg.runtime import choose_device, configure_determinism, derive_seed, seed_everything
from dfg.train import frozen_copy
from dfg.utils.io import atomic_path

log = logging.getLogger(__name__)

BENCH_SEED = 0
#: Below this many seconds for all timed steps a method's step is reported as a no-op, not as a rate.
NOOP_SECONDS = 1e-4
#: Majority classes of the random data; the rest are minority with 1/10 of the images (an F-MNIST-like
#: 2 + 8 step split, method.md §4) so methods that treat minority classes specially do their real work.
N_MAJORITY = 2
MINORITY_SHARE = 0.1
#: Nominal length of a benched run (see the module docstring).
BENCH_RUN_STEPS = 1000


def random_task(backbone_info, num_classes: int, n_images: int, batch_size: int, device: torch.device,
                stored_size: int) -> TaskData:
    gen = torch.Generator().manual_seed(BENCH_SEED)
    side = stored_size if backbone_info.large_images else backbone_info.input_size
    kind = "resized_crop_flip" if backbone_info.large_images else ("crop_flip" if backbone_info.in_channels == 3
                                                                   else "none")
    weights = torch.tensor([1.0 if c < N_MAJORITY else MINORITY_SHARE for c in range(num_classes)])
    y = torch.multinomial(weights, n_images, replacement=True, generator=gen)
    y[:num_classes] = torch.arange(num_classes)  # every class present
    x = torch.randint(0, 256, (n_images, side, side, backbone_info.in_channels), dtype=torch.uint8, generator=gen)
    images = DeviceImages(x, y, device)
    train = TrainBatches(images, torch.arange(n_images).numpy(), num_classes, batch_size, kind,
                         backbone_info.input_size, BENCH_SEED, device)
    test = EvalImages(images, torch.arange(min(n_images, batch_size)).numpy(), device)
    return TaskData(train=train, test=test, num_classes=num_classes,
                    class_counts=torch.bincount(y, minlength=num_classes),
                    minority_classes=list(range(N_MAJORITY, num_classes)),
                    classes=[str(c) for c in range(num_classes)], dataset="random")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_one(params: dict, backbone: str, method_name: str, device: torch.device, steps: int, warmup: int,
              phase: str | None = None) -> dict:
    """Time `steps` steps of one method x backbone after `warmup` ones, in `phase` (see Method.phases;
    None = the method's first). The result names the phase timed and lists all of the method's."""
    cfg, train_cfg = params.get("bench", {}), params["train"]
    seed_everything(derive_seed(BENCH_SEED, "init"))
    num_classes = int(cfg.get("num_classes", 10))
    spec = method_spec(params, method_name)  # a registered method or one of the suite's variants
    cls, hp = spec.cls, spec.hp
    net = cls.adapt_net(build_backbone(backbone, num_classes), hp).to(device)
    data = random_task(net.info, num_classes, int(cfg.get("n_images", 512)), int(train_cfg["batch_size"]), device,
                       int(params["prepare"].get("image_size", 256)))
    ctx = make_context(task="bench", method=spec.base, seed=BENCH_SEED, params=params, hp=hp, device=device,
                       net=net, source_net=frozen_copy(net) if cls.needs_source else None, data=data,
                       total_steps=BENCH_RUN_STEPS, optimizer=train_cfg["optimizer"][backbone])
    method = cls(ctx)
    ctx.extras["method_steps"] = BENCH_RUN_STEPS
    method.setup()
    phases = method.phases()
    phase = next(iter(phases)) if phase is None else phase
    if phase not in phases:
        raise DfgError(f"{method_name} has no phase {phase!r}; its phases: {', '.join(map(repr, phases))}")
    first = phases[phase]
    for step in range(first, first + warmup):
        method.train_step(step)
    sync(device)
    images0 = data.train.images_drawn
    t0 = time.perf_counter()
    for step in range(first + warmup, first + warmup + steps):
        method.train_step(step)
    sync(device)
    dt = time.perf_counter() - t0
    return {"backbone": backbone, "method": method_name, "phase": phase, "phases": list(phases), "steps": steps,
            "seconds": dt, "steps_per_s": steps / dt, "images_per_s": (data.train.images_drawn - images0) / dt}


def _names(arg: list[str] | str | None, default: list[str]) -> list[str]:
    if isinstance(arg, str):
        arg = [s for s in arg.split(",") if s]
    return list(arg) if arg else list(default)


def main(args: argparse.Namespace, params: dict) -> int:
    cfg = params.get("bench", {})
    backbones = _names(args.backbones, cfg.get("backbones", BACKBONES.names()))
    methods = _names(args.methods, METHODS.names())
    for b in backbones:
        BACKBONES.get(b)
    for m in methods:
        method_spec(params, m)
    steps = int(args.steps or cfg.get("steps", 10))
    if steps < 1:
        raise DfgError("--steps must be at least 1")
    device = choose_device(args.device or params["device"])
    configure_determinism(device, bool(params["train"]["deterministic"]))
    threads = torch.get_num_threads() if device.type == "cpu" else "-"
    kernels = torch.backends.cpu.get_cpu_capability() if device.type == "cpu" else "-"
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
          f"threads {threads}, batch {params['train']['batch_size']}, {steps} timed steps, torch {torch.__version__}")
    print(f"{'backbone':<10} {'method':<24} {'steps/s':>9} {'images/s':>10} {'ms/step':>9}")
    failed, rows = 0, []
    warmup = int(cfg.get("warmup", 6))
    for b in backbones:
        for m in methods:
            todo: list[str | None] = [None]  # None: the first phase; its result lists the others
            while todo:
                phase = todo.pop(0)
                try:
                    r = bench_one(params, b, m, device, steps, warmup, phase)
                except (RuntimeError, NotImplementedError, ValueError) as e:  # report and go on with the grid
                    failed += 1
                    print(f"{b:<10} {m:<24} failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}")
                    break
                if phase is None:
                    todo = r["phases"][1:]
                _print_row(b, f"{m} ({r['phase']})" if r["phase"] else m, r)
                rows.append({"device": str(device), "cpu_kernels": kernels, "threads": threads,
                             "batch": params["train"]["batch_size"],
                             **{k: r[k] for k in ("backbone", "method", "phase", "steps", "seconds", "steps_per_s",
                                                  "images_per_s")}, "ms_per_step": 1000 / r["steps_per_s"]})
    if getattr(args, "out", None):
        import csv

        with atomic_path(args.out, suffix=".csv") as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["backbone", "method"])
            writer.writeheader()
            writer.writerows(rows)
        log.info("wrote %s", args.out)
    return 1 if failed else 0


def _print_row(backbone: str, name: str, r: dict) -> None:
    if r["seconds"] < NOOP_SECONDS:  # e.g. a post-hoc method whose training step does nothing
        print(f"{backbone:<10} {name:<24} {'no-op step (no training work)':>30}", flush=True)
        return
    # A method that trains on stored features (smote_feat) draws no images in its steps.
    ips = f"{r['images_per_s']:10.1f}" if r["images_per_s"] > 0 else f"{'features':>10}"
    print(f"{backbone:<10} {name:<24} {r['steps_per_s']:9.2f} {ips} {1000 / r['steps_per_s']:9.1f}", flush=True)
