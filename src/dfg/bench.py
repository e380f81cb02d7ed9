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
from dfg.capture import CapturedSteps, resolve_mode
from dfg.loop import make_context
from dfg.methods import METHODS
from dfg.methods.variants import method_spec
from dfg.models import BACKBONES, build_backbone
from dfg.runtime import choose_device, configure_determinism, derive_seed, seed_everything, to_memory_format
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
#: Longest warm-up with capture (DFG records its classifier-update step at its 4th occurrence, step 20).
MAX_CAPTURE_WARMUP = 100


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
              phase: str | None = None, capture: str = "off", channels_last: bool = False) -> dict:
    """Time `steps` steps of one method x backbone after `warmup` ones, in `phase` (see Method.phases;
    None = the method's first), with the train.capture setting `capture`. The result names the phase
    timed, lists all of the method's, and (capture) the resolved mode and what was recorded. With capture,
    the warm-up also lasts until every kind of step seen has been recorded (at most MAX_CAPTURE_WARMUP
    steps), so no recording lands in the timed window."""
    cfg, train_cfg = params.get("bench", {}), params["train"]
    seed_everything(derive_seed(BENCH_SEED, "init"))
    num_classes = int(cfg.get("num_classes", 10))
    spec = method_spec(params, method_name)  # a registered method or one of the suite's variants
    cls, hp = spec.cls, spec.hp
    net = to_memory_format(cls.adapt_net(build_backbone(backbone, num_classes), hp).to(device), channels_last)
    data = random_task(net.info, num_classes, int(cfg.get("n_images", 512)), int(train_cfg["batch_size"]), device,
                       int(params["prepare"].get("image_size", 256)))
    ctx = make_context(task="bench", method=spec.base, seed=BENCH_SEED, params=params, hp=hp, device=device,
                       net=net, source_net=frozen_copy(net) if cls.needs_source else None, data=data,
                       total_steps=BENCH_RUN_STEPS, optimizer=train_cfg["optimizer"][backbone],
                       capture=resolve_mode(capture, device))
    method = cls(ctx)
    ctx.extras["method_steps"] = BENCH_RUN_STEPS
    method.setup()
    phases = method.phases()
    phase = next(iter(phases)) if phase is None else phase
    if phase not in phases:
        raise DfgError(f"{method_name} has no phase {phase!r}; its phases: {', '.join(map(repr, phases))}")
    first = phases[phase]
    runner = CapturedSteps(method, ctx.capture) if ctx.capture != "off" else None
    do = runner if runner is not None else method.train_step
    step = first
    while step < first + warmup or (runner is not None and not runner.failed and step < first + MAX_CAPTURE_WARMUP
                                     and len(runner.entries) < len(runner.seen)):
        do(step)
        step += 1
    sync(device)
    images0 = data.train.images_drawn
    t0 = time.perf_counter()
    for s in range(step, step + steps):
        do(s)
    sync(device)
    dt = time.perf_counter() - t0
    summary = runner.summary() if runner is not None else {"mode": "off"}
    return {"backbone": backbone, "method": method_name, "phase": phase, "phases": list(phases), "steps": steps,
            "seconds": dt, "steps_per_s": steps / dt, "images_per_s": (data.train.images_drawn - images0) / dt,
            "capture": summary["mode"], "graphs": summary.get("graphs", 0), "capture_failed": summary.get("failed", ""),
            "channels_last": channels_last}


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
    captures = _names(getattr(args, "capture", None), [params["train"].get("capture", "auto")])
    layouts = [v == "on" for v in _names(getattr(args, "channels_last", None),
                                          ["on" if params["train"].get("channels_last") else "off"])]
    print(f"{'backbone':<10} {'method':<24} {'capture':<8} {'steps/s':>9} {'images/s':>10} {'ms/step':>9}")
    failed, rows = 0, []
    warmup = int(cfg.get("warmup", 6))
    for b in backbones:
        for m in methods:
            todo: list[str | None] = [None]  # None: the first phase; its result lists the others
            while todo:
                phase = todo.pop(0)
                for setting, nhwc in [(c, n) for n in layouts for c in captures]:  # side by side, one pair
                    try:
                        r = bench_one(params, b, m, device, steps, warmup, phase, setting, nhwc)
                    except (RuntimeError, NotImplementedError, ValueError) as e:  # report, go on with the grid
                        failed += 1
                        print(f"{b:<10} {m:<24} {setting:<8} failed: {type(e).__name__}: "
                              f"{str(e).splitlines()[0][:120]}")
                        todo = []
                        break
                    if phase is None:
                        todo = r["phases"][1:]
                    name = f"{m} ({r['phase']})" if r["phase"] else m
                    _print_row(b, name + (" NHWC" if nhwc else ""), r)
                    rows.append({"device": str(device), "cpu_kernels": kernels, "threads": threads,
                                 "batch": params["train"]["batch_size"],
                                 **{k: r[k] for k in ("backbone", "method", "phase", "capture", "graphs",
                                                      "channels_last", "steps", "seconds", "steps_per_s",
                                                      "images_per_s")},
                                 "ms_per_step": 1000 / r["steps_per_s"], "capture_failed": r["capture_failed"]})
    if getattr(args, "out", None):
        import csv

        with atomic_path(args.out, suffix=".csv") as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["backbone", "method"])
            writer.writeheader()
            writer.writerows(rows)
        log.info("wrote %s", args.out)
    return 1 if failed else 0


def _print_row(backbone: str, name: str, r: dict) -> None:
    how = r["capture"] if r["graphs"] or r["capture"] == "off" else "eager"  # a mode that recorded nothing
    if r["seconds"] < NOOP_SECONDS:  # e.g. a post-hoc method whose training step does nothing
        print(f"{backbone:<10} {name:<24} {how:<8} {'no-op step (no training work)':>30}", flush=True)
        return
    # A method that trains on stored features (smote_feat) draws no images in its steps.
    ips = f"{r['images_per_s']:10.1f}" if r["images_per_s"] > 0 else f"{'features':>10}"
    failed = f"  (capture failed: {r['capture_failed'][:80]})" if r["capture_failed"] else ""
    print(f"{backbone:<10} {name:<24} {how:<8} {r['steps_per_s']:9.2f} {ips} {1000 / r['steps_per_s']:9.1f}{failed}",
          flush=True)
