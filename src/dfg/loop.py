"""The one training loop every method, `dfg pretrain` and `dfg bench` run on (docs/architecture.md).

fit(): for step in range(start, method.steps()): method.train_step(step); every `eval_every` steps and
at the end a test-accuracy row for curves.csv (with validation accuracy when the split has a validation
set); every `checkpoint_every` steps an atomic resume
checkpoint; when one exists at start, the run continues from it and ends bit-identical to an
uninterrupted run on the CPU (net, optimiser state, every RNG and the data stream's counters are in it).
Then method.on_train_end(). Writing the final outputs is the caller's (train.py, pretrain.py).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from dfg import DfgError
from dfg.capture import CapturedForward, CapturedSteps
from dfg.methods.base import Method, RunContext
from dfg.runtime import autocast_factory, derive_seed, make_generator, rng_state, set_rng_state
from dfg.utils.io import load_torch, save_torch

log = logging.getLogger(__name__)


# -- optimiser and schedule from params --------------------------------------------------------------
def optimizer_factory(opt: dict, total_steps: Callable[[], int], lr: float | None = None, capturable: bool = False
                      ) -> tuple[Callable[..., torch.optim.Optimizer], Callable[[torch.optim.Optimizer], object]]:
    """(make_optimizer, make_scheduler) for one `train.optimizer[backbone]` block (method.md §2: Adam
    for LeNet/VGG, SGD with a step decay for ResNet). `lr` overrides the block's (source pre-training).
    `total_steps()` is read when the scheduler is made, i.e. after the loop knows the method's steps.
    `capturable`: Adam keeps its step count on the device, so a CUDA graph can record its step."""
    lr = float(opt["lr"] if lr is None else lr)
    wd = float(opt.get("weight_decay", 0.0))

    def make_optimizer(params) -> torch.optim.Optimizer:
        if opt["name"] == "adam":
            betas = tuple(opt.get("betas", (0.9, 0.999)))
            return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=wd, capturable=capturable)
        if opt["name"] == "sgd":
            return torch.optim.SGD(params, lr=lr, momentum=float(opt.get("momentum", 0.0)), weight_decay=wd)
        raise DfgError(f"unknown optimizer {opt['name']!r}; use adam or sgd")

    def make_scheduler(optimizer: torch.optim.Optimizer):
        if "step_at" not in opt:
            return None
        step_size = max(1, round(float(opt["step_at"]) * total_steps()))
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=float(opt.get("gamma", 0.1)))

    return make_optimizer, make_scheduler


def make_context(*, task: str, method: str, seed: int, params: dict, hp: dict, device: torch.device,
                 net: torch.nn.Module, source_net: torch.nn.Module | None, data, total_steps: int,
                 optimizer: dict, lr: float | None = None, capture: str = "off") -> RunContext:
    """The RunContext of one run; its generator is seeded from (seed, "method"), independent of the
    data stream's seeds, so a method drawing more or fewer random numbers never changes the batches.
    `capture`: the resolved train.capture mode (dfg.capture.resolve_mode)."""
    extras: dict = {}
    graph = capture == "graph"
    make_opt, make_sched = optimizer_factory(optimizer, lambda: extras.get("method_steps", total_steps), lr,
                                             capturable=graph)
    return RunContext(
        task=task, method=method, seed=seed, params=params, hp=hp, device=device, net=net,
        source_net=source_net, data=data, total_steps=total_steps,
        generator=make_generator(device, derive_seed(seed, "method")),
        autocast=autocast_factory(device, bool(params["train"].get("amp", True)), cache=not graph),
        make_optimizer=make_opt, make_scheduler=make_sched, extras=extras, capture=capture,
    )


# -- prediction --------------------------------------------------------------------------------------
@torch.no_grad()
def predict(net: torch.nn.Module, batches: Iterator[tuple[torch.Tensor, torch.Tensor]], autocast=None,
            logit_bias: torch.Tensor | None = None, forward: Callable[[torch.Tensor], torch.Tensor] | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities (float32 [N, K]) and labels of a whole pass, in eval mode; the modules'
    train/eval flags are restored afterwards (methods may keep parts frozen in eval mode). `forward`:
    the net's recorded forward (capture.CapturedForward) instead of calling it."""
    modes = {m: m.training for m in net.modules()}
    net.eval()
    probs, labels = [], []
    try:
        for x, y in batches:
            if forward is not None:
                logits = forward(x)
            else:
                with (autocast() if autocast else torch.autocast("cpu", enabled=False)):
                    logits = net(x)
            logits = logits.float()
            if logit_bias is not None:
                logits = logits + logit_bias.to(logits.device)
            probs.append(torch.softmax(logits, dim=1).cpu())
            labels.append(y.cpu())
    finally:
        for m, mode in modes.items():
            m.training = mode
    return torch.cat(probs).numpy(), torch.cat(labels).numpy()


def curve_accuracies(probs: np.ndarray, y: np.ndarray, num_classes: int) -> tuple[float, float]:
    """(accuracy, balanced accuracy over the classes present) for a curves.csv row."""
    pred = probs.argmax(axis=1)
    correct = pred == y
    recalls = [correct[y == c].mean() for c in range(num_classes) if (y == c).any()]
    return float(correct.mean()), float(np.mean(recalls))


# -- the loop --------------------------------------------------------------------------------------
@dataclass
class FitResult:
    steps: int
    curves: list[dict]
    wall_seconds: float
    resumed_from: int | None
    last_eval: tuple[np.ndarray, np.ndarray] | None = None  # (probs, y) of the final-step evaluation
    extra: dict = field(default_factory=dict)


def _resume_fields(run_fields: dict) -> dict:
    return {k: run_fields[k] for k in ("task", "method", "seed", "steps") if k in run_fields}


def save_resume(path: Path, ctx: RunContext, method: Method, step: int, curves: list[dict], loss_sums: dict,
                wall: float, run_fields: dict) -> None:
    save_torch(path, {
        **run_fields, "kind": "resume", "step": step, "device_type": ctx.device.type, "net": ctx.net.state_dict(),
        "method_state": method.state_dict(), "rng": rng_state(ctx.device),
        "generator": ctx.generator.get_state(), "data_state": ctx.data.train.state_dict(),
        "curves": curves, "loss_sums": {k: (float(s), n) for k, (s, n) in loss_sums.items()}, "wall_seconds": wall,
    })


def load_resume(path: Path, ctx: RunContext, method: Method, run_fields: dict) -> dict:
    # on the CPU: RNG states must be CPU tensors; load_state_dict moves the rest. Writes are atomic, so an
    # unreadable file is a foreign or damaged one, never a half-written one of ours.
    state = load_torch(path, what="resume checkpoint", fix="delete it to start the run afresh")
    if not isinstance(state, dict) or state.get("kind") != "resume":
        raise DfgError(f"resume checkpoint {path} is not a dfg resume checkpoint; delete it to start the run afresh")
    want, got = _resume_fields(run_fields), _resume_fields(state)
    if want != got:
        raise DfgError(f"resume checkpoint {path} belongs to another run ({got} vs {want}); delete it to start afresh")
    saved_on = state.get("device_type", ctx.device.type)
    if saved_on != ctx.device.type:  # CPU and CUDA random-number states do not convert into each other
        raise DfgError(f"resume checkpoint {path} was written on {saved_on} and this run is on {ctx.device.type}, so "
                       f"it cannot continue exactly; rerun with --device {saved_on}, or delete it to start afresh")
    ctx.net.load_state_dict(state["net"])
    method.load_state_dict(state["method_state"])
    ctx.data.train.load_state_dict(state["data_state"])
    set_rng_state(state["rng"], ctx.device)
    ctx.generator.set_state(state["generator"])
    return state


def check_finite(loss_sums: dict, method: str, first: int, last: int) -> None:
    """Stop a diverged run with the fix named: a non-finite loss sum over steps first..last. Read only at
    evaluations and checkpoints (one host sync there, none per step); before a resume checkpoint is
    written, so a rerun never continues from a diverged state."""
    bad = {k: float(s) for k, (s, _) in loss_sums.items() if not np.isfinite(float(s))}
    if bad:
        found = ", ".join(f"{k} = {v}" for k, v in sorted(bad.items()))
        raise DfgError(f"{method}: the training loss became non-finite between steps {first} and {last} ({found}); "
                       f"lower the learning rate (train.optimizer) or check the method's parameters in "
                       f"methods.{method}")


#: Seconds between progress lines in a job's log (no terminal): a 40 000-step CPU run otherwise says nothing
#: until its first evaluation. Operational, not a result: a module constant rather than a parameter.
PROGRESS_EVERY_S = 60.0


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


class Progress:
    """One log line per `every_s` seconds and per evaluation: step/total, steps/s and ETA (over this
    process's steps), and the mean losses since the last evaluation. Reading the losses syncs the device
    once a line, never per step."""

    def __init__(self, total: int, start: int, every_s: float) -> None:
        self.total, self.start, self.every_s = total, start, every_s
        self.t0 = self.last = time.monotonic()

    def due(self) -> bool:
        return time.monotonic() - self.last >= self.every_s

    def line(self, done: int, loss_sums: dict, extra: str = "") -> str:
        now = time.monotonic()
        self.last = now
        rate = (done - self.start) / max(now - self.t0, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else float("inf")
        losses = "  ".join(f"{k} {float(s) / max(n, 1):.4g}" for k, (s, n) in sorted(loss_sums.items()))
        parts = [f"step {done}/{self.total}", f"{rate:.3g} steps/s",
                 f"ETA {_duration(eta) if eta != float('inf') else '?'}", extra, losses]
        return "  ".join(p for p in parts if p)


def fit(method: Method, ctx: RunContext, *, eval_every: int, checkpoint_every: int, eval_batch_size: int,
        resume_path: Path | None = None, run_fields: dict | None = None,
        callback: Callable[[int, dict], None] | None = None, steps: int | None = None,
        progress_every_s: float | None = None) -> FitResult:
    """Run `method` on `ctx` to method.steps() (or `steps`, a debugging override); see the module
    docstring. `callback(step_done, logs)` runs after each step (tests use it to interrupt a run).
    Progress: a bar on a terminal; otherwise a log line every `progress_every_s` s (PROGRESS_EVERY_S) and at
    each evaluation."""
    run_fields = dict(run_fields or {})
    total = int(steps if steps is not None else method.steps())
    ctx.extras["method_steps"] = total
    run_fields["steps"] = total
    method.setup()
    start, curves, loss_sums, wall_before, resumed_from = 0, [], {}, 0.0, None
    if resume_path is not None and Path(resume_path).exists():
        state = load_resume(Path(resume_path), ctx, method, run_fields)
        start, curves, loss_sums = int(state["step"]), list(state["curves"]), dict(state["loss_sums"])
        wall_before, resumed_from = float(state["wall_seconds"]), start
        log.info("resuming %s from step %d of %d (%s)", run_fields.get("method", "run"), start, total, resume_path)
    t0 = time.perf_counter()
    last_eval = None
    # A progress bar only on a terminal; log lines otherwise (design.md, "Progress").
    interactive = sys.stderr.isatty()
    bar = tqdm(total=total, initial=start, desc=f"{run_fields.get('task', '')} {run_fields.get('method', '')}",
               disable=not interactive, leave=False, dynamic_ncols=True)
    progress = Progress(total, start, PROGRESS_EVERY_S if progress_every_s is None else progress_every_s)
    window_start = curves[-1]["step"] + 1 if curves else 1  # first step summed into loss_sums
    steps_of = CapturedSteps(method, ctx.capture) if ctx.capture != "off" else None
    forward = CapturedForward(ctx.net, ctx.autocast, ctx.capture) if ctx.capture != "off" else None
    for step in range(start, total):
        logs = steps_of(step) if steps_of is not None else method.train_step(step)
        bar.update(1)
        for name, value in logs.items():
            s, n = loss_sums.get(name, (0.0, 0))
            # A 0-dim tensor is summed on its device (float64): no host sync per step on CUDA.
            v = value.detach().double() if isinstance(value, torch.Tensor) else float(value)
            loss_sums[name] = (s + v, n + 1)
        done = step + 1
        if done % eval_every == 0 or done == total:
            check_finite(loss_sums, ctx.method, window_start, done)
            probs, y = predict(ctx.net, ctx.data.test.iterate(eval_batch_size), ctx.autocast, forward=forward)
            acc, bacc = curve_accuracies(probs, y, ctx.data.num_classes)
            row = {"step": done, "test_accuracy": acc, "test_balanced_accuracy": bacc}
            val_text = ""
            if getattr(ctx.data, "val", None) is not None:
                vp, vy = predict(ctx.net, ctx.data.val.iterate(eval_batch_size), ctx.autocast, forward=forward)
                row["val_accuracy"], row["val_balanced_accuracy"] = curve_accuracies(vp, vy, ctx.data.num_classes)
                val_text = f"  val acc {row['val_accuracy']:.4f}"
            row.update({k: float(s) / max(n, 1) for k, (s, n) in sorted(loss_sums.items())})
            curves.append(row)
            log.info("%s", progress.line(done, loss_sums, f"test acc {acc:.4f}  bal {bacc:.4f}{val_text}"))
            loss_sums, window_start = {}, done + 1
            last_eval = (probs, y) if done == total else None
        elif not interactive and progress.due():
            log.info("%s", progress.line(done, loss_sums))
        if resume_path is not None and done % checkpoint_every == 0 and done < total:
            check_finite(loss_sums, ctx.method, window_start, done)
            save_resume(Path(resume_path), ctx, method, done, curves, loss_sums,
                        wall_before + time.perf_counter() - t0, run_fields)
        if callback is not None:
            callback(done, logs)
    bar.close()
    method.on_train_end()
    extra = {"capture": {**steps_of.summary(), "eval_graphs": len(forward.entries),
                         **({"eval_failed": forward.failed} if forward.failed else {})}
             if steps_of is not None else {"mode": "off"}}
    return FitResult(steps=total, curves=curves, wall_seconds=wall_before + time.perf_counter() - t0,
                     resumed_from=resumed_from, last_eval=last_eval, extra=extra)


#: curves.csv's accuracy columns, in this order; the validation pair only in runs whose split has one.
ACCURACY_COLUMNS = ("test_accuracy", "test_balanced_accuracy", "val_accuracy", "val_balanced_accuracy")


def curves_csv(curves: list[dict]) -> str:
    """curves.csv text: step, test_accuracy, test_balanced_accuracy, (with a validation set) val_accuracy,
    val_balanced_accuracy, then the loss names (sorted)."""
    present = {k for row in curves for k in row}
    accs = [c for c in ACCURACY_COLUMNS if c in present or c.startswith("test_")]
    losses = sorted(present - {"step", *ACCURACY_COLUMNS})
    cols = ["step", *accs, *losses]
    lines = [",".join(cols)]
    for row in curves:
        lines.append(",".join("" if row.get(c) is None else (str(row[c]) if c == "step" else f"{row[c]:.6g}")
                              for c in cols))
    return "\n".join(lines) + "\n"
