"""Captured training steps (`train.capture`): a method's whole step replayed as one CUDA graph.

Why: a LeNet-5 step is a few hundred small kernels; on a GPU the time goes to launching them from
Python, not to running them. A CUDA graph records the step's kernels once and replays them with one
launch, so the step costs what its kernels cost.

What a method provides (dfg.methods.base.Method, "captured steps"): its step split in three parts,
- `step_inputs(step)`: the host-side work before the step (drawing batches, sampling switches); returns
  the step's input tensors;
- `step_body(step, inputs)`: the device work (forwards, backwards, optimiser steps) with no host sync and
  no Python decision on a tensor's value; what it reads of `step` is summed up by `capture_key(step)`;
- `step_after(step)`: the host-side work after it (LR schedules, DFG's attention refresh);
and `capture_key(step)`: a hashable naming which body a step runs (DFG: with or without its classifier
update), or None for a method (or a step) that cannot be captured; that step then runs eagerly.

How a step runs here, per key: the first WARMUP_STEPS steps eagerly (on a side stream on CUDA, so lazy
state such as Adam's moments and cuBLAS workspaces exists before capture), then one capture into a
graph with static input buffers, then replays: copy the inputs in, replay, read the static losses. The
optimisers' current learning rates are part of the key (a graph bakes them in), so an LR schedule
step records a new graph. Random draws inside the body (DFG's noise, the penalty's interpolation, dropout)
come from generators registered with the graph, so each replay draws fresh numbers.

Modes (resolve_mode): `graph` on CUDA; `static` anywhere: the same split and static buffers, without a
graph: the code path a graph records, run eagerly (what the CPU tests check against the plain step);
`off`: method.train_step as before. `train.capture: auto` is `graph` on CUDA and `off` on the CPU, so CPU
results never depend on this module. A capture that fails (an op that cannot be recorded) logs its reason
once and the run goes on eagerly: a failed capture costs speed, never a run.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from dataclasses import dataclass

import torch

from dfg import DfgError
from dfg.methods.base import Logs, Method

log = logging.getLogger(__name__)

#: Eager steps per key before its capture (lazy optimiser state, cuBLAS/cuDNN workspaces, autotuning).
WARMUP_STEPS = 3
MODES = ("auto", "on", "off")
#: Only this thread's CUDA calls are checked during a capture: a DataLoader's pin-memory thread (224-px
#: data) may allocate pinned memory meanwhile, which the default "global" mode turns into an error.
CAPTURE_ERROR_MODE = "thread_local"


def resolve_mode(setting: str, device: torch.device) -> str:
    """`train.capture` on `device` -> "graph" | "static" | "off" (see the module docstring)."""
    if setting not in MODES:
        raise DfgError(f"train.capture must be one of {', '.join(MODES)}, got {setting!r}")
    if setting == "off":
        return "off"
    if device.type == "cuda":
        return "graph"
    return "static" if setting == "on" else "off"


def optimizers_of(method: Method) -> list[torch.optim.Optimizer]:
    """The method's optimisers (attributes that are torch optimisers), in attribute-name order."""
    return [v for _, v in sorted(vars(method).items()) if isinstance(v, torch.optim.Optimizer)]


def make_capturable(opt: torch.optim.Optimizer) -> None:
    """Adam/AdamW as built with capturable=True: a resumed optimiser's saved groups say capturable=False
    (state_dict carries the flag) and its step counts sit on the CPU; both move to the device here."""
    if not isinstance(opt, (torch.optim.Adam, torch.optim.AdamW)):
        return
    for group in opt.param_groups:
        group["capturable"] = True
        for p in group["params"]:
            state = opt.state.get(p)
            if state and "step" in state and isinstance(state["step"], torch.Tensor):
                state["step"] = state["step"].to(device=p.device, dtype=torch.float32)


def _tensors(inputs) -> tuple[torch.Tensor, ...]:
    out = tuple(inputs)
    if not all(isinstance(t, torch.Tensor) for t in out):
        raise DfgError("a method's step_inputs must return a tuple of tensors")
    return out


def record_graph(fn, what: str, generator: torch.Generator | None = None
                 ) -> tuple[torch.cuda.CUDAGraph, object] | str:
    """(graph, fn()'s outputs as recorded) of `fn` captured on CUDA, or why it could not be: an op that
    cannot be recorded raises a RuntimeError (CUDA errors are RuntimeErrors), logged once as a warning
    naming `what`; the caller then goes on eagerly. `generator`: the method's, registered so that each
    replay draws fresh numbers (the default CUDA generator is registered by PyTorch)."""
    graph = torch.cuda.CUDAGraph()
    if generator is not None:
        graph.register_generator_state(generator)
    torch.cuda.synchronize()
    try:
        with torch.cuda.graph(graph, capture_error_mode=CAPTURE_ERROR_MODE):
            out = fn()
    except RuntimeError as e:
        reason = f"{type(e).__name__}: {e}".splitlines()[0]
        log.warning("train.capture: %s could not be captured (%s); it runs eagerly", what, reason)
        torch.cuda.synchronize()
        return reason
    return graph, out


@dataclass
class _Entry:
    """One recorded body: its static inputs and losses (and, on CUDA, its graph)."""

    step: int  # the step recorded: what the body read of its step is baked in
    inputs: tuple[torch.Tensor, ...]
    logs: Logs
    graph: torch.cuda.CUDAGraph | None = None

    def feed(self, inputs: tuple[torch.Tensor, ...]) -> None:
        if len(inputs) != len(self.inputs) or any(a.shape != b.shape or a.dtype != b.dtype
                                                   for a, b in zip(self.inputs, inputs)):
            raise DfgError("a captured step's inputs changed shape or type between steps; "
                           "its capture_key must tell such steps apart")
        for static, x in zip(self.inputs, inputs):
            static.copy_(x)


class CapturedSteps:
    """`steps(step) -> logs`: the loop's replacement for `method.train_step(step)` (dfg.loop.fit)."""

    def __init__(self, method: Method, mode: str, warmup: int | None = None) -> None:
        if mode not in ("graph", "static"):
            raise ValueError(mode)
        self.method, self.mode = method, mode
        self.warmup = WARMUP_STEPS if warmup is None else warmup
        self.entries: dict[Hashable, _Entry] = {}
        self.seen: dict[Hashable, int] = {}
        self.failed: str | None = None  # why capture was given up (then every step runs eagerly)
        self.counts = {"replayed": 0, "eager": 0}
        self._said_eager = False
        # A method with its own train_step runs that, never the split parts (its step is its own).
        self.splits = type(method).train_step is Method.train_step
        # Found once (set-up and resume have made them): their learning rates join each step's key.
        self.optimizers = optimizers_of(method)
        if mode == "graph":
            for opt in self.optimizers:
                make_capturable(opt)

    def __call__(self, step: int) -> Logs:
        method = self.method
        key = None if self.failed or not self.splits else method.capture_key(step)
        if key is None:
            if not self._said_eager and not self.failed:
                log.info("train.capture: %s steps run eagerly (the method does not capture; step %d)",
                         method.ctx.method, step)
                self._said_eager = True
            self.counts["eager"] += 1
            return method.train_step(step)
        key = (key, tuple(float(g["lr"]) for opt in self.optimizers for g in opt.param_groups))
        inputs = _tensors(method.step_inputs(step))
        entry = self.entries.get(key)
        if entry is None:
            self.seen[key] = self.seen.get(key, 0) + 1
            if self.seen[key] > self.warmup:
                entry = self._record(key, step, inputs)
        if entry is None:
            logs = self._eager_body(step, inputs)
            self.counts["eager"] += 1
        else:
            entry.feed(inputs)
            if entry.graph is not None:
                entry.graph.replay()
                logs = entry.logs
            else:  # static mode: the recorded code path on the static buffers, with the recorded step,
                # so a body reading more of `step` than its key says differs from eager here as on a GPU
                logs = method.step_body(entry.step, entry.inputs)
            self.counts["replayed"] += 1
        method.step_after(step)
        return logs

    def _eager_body(self, step: int, inputs: tuple[torch.Tensor, ...]) -> Logs:
        if self.mode != "graph":
            return self.method.step_body(step, inputs)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            logs = self.method.step_body(step, inputs)
        torch.cuda.current_stream().wait_stream(side)
        return logs

    def _record(self, key: Hashable, step: int, inputs: tuple[torch.Tensor, ...]) -> _Entry | None:
        static = tuple(t.clone() for t in inputs)
        if self.mode == "static":
            log.info("train.capture: %s step %r recorded (static buffers, no graph on %s)",
                     self.method.ctx.method, key[0], self.method.ctx.device.type)
            return self._keep(key, _Entry(step, static, {}))
        got = record_graph(lambda: self.method.step_body(step, static), f"{self.method.ctx.method}'s step",
                           self.method.ctx.generator)
        if isinstance(got, str):
            self.failed = got
            return None
        log.info("train.capture: %s step %r captured as a CUDA graph", self.method.ctx.method, key[0])
        return self._keep(key, _Entry(step, static, got[1], got[0]))

    def _keep(self, key: Hashable, entry: _Entry) -> _Entry:
        self.entries[key] = entry
        return entry

    def summary(self) -> dict:
        """What metrics.json records of the run's capture."""
        return {"mode": self.mode, "graphs": len(self.entries), **self.counts,
                **({"failed": self.failed} if self.failed else {})}


class CapturedForward:
    """`forward(x) -> logits` of a network in eval mode, recorded once per batch shape and replayed
    (evaluation every `eval_every` steps: the test set's full batches share one recording, the last
    partial batch has its own). The network must be in eval mode whenever this is called (loop.predict
    sets it); the weights are read from their memory at each replay, so training in between is seen."""

    def __init__(self, net: torch.nn.Module, autocast, mode: str, warmup: int | None = None) -> None:
        if mode not in ("graph", "static"):
            raise ValueError(mode)
        self.net, self.autocast, self.mode = net, autocast, mode
        self.warmup = WARMUP_STEPS if warmup is None else warmup
        self.entries: dict[tuple, _Entry] = {}
        self.seen: dict[tuple, int] = {}
        self.failed: str | None = None

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            return self.net(x).float()

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        key = (tuple(x.shape), x.dtype)
        entry = self.entries.get(key)
        if entry is None:
            self.seen[key] = self.seen.get(key, 0) + 1
            if self.failed or self.seen[key] <= self.warmup:
                return self._forward(x)
            entry = self._record(key, x)
            if entry is None:
                return self._forward(x)
        entry.feed((x,))
        if entry.graph is None:
            return self._forward(entry.inputs[0]).clone()
        entry.graph.replay()
        return entry.logs["logits"].clone()  # a copy: the next replay overwrites the static output

    def _record(self, key: tuple, x: torch.Tensor) -> _Entry | None:
        static = (x.clone(),)
        if self.mode == "static":
            return self.entries.setdefault(key, _Entry(0, static, {}))
        got = record_graph(lambda: self._forward(static[0]), "the evaluation forward")
        if isinstance(got, str):
            self.failed = got
            return None
        return self.entries.setdefault(key, _Entry(0, static, {"logits": got[1]}, got[0]))
