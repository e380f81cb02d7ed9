"""The interface every method implements on the shared training loop (dfg.loop).

The loop owns everything common: device, seeding, data on the device, optimiser construction from
params, AMP, the step loop, periodic evaluation, resume checkpoints, final checkpoint, metrics. A method
owns only what makes it different: which networks it adds, what one training step does, and (rarely)
how its network is adapted or its logits adjusted.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch

#: What train_step returns: loss name -> detached 0-dim tensor (preferred) or float.
Logs = dict[str, torch.Tensor | float]

if TYPE_CHECKING:  # pragma: no cover
    from dfg.models.base import SplitNet


@dataclass
class RunContext:
    """What the loop hands a method. Built by dfg.loop; methods read it, never rebuild it."""

    task: str
    method: str
    seed: int
    params: dict  # the whole validated parameter tree
    hp: dict  # params["methods"][method]
    device: torch.device
    net: SplitNet  # target network: random init (needs_source False) or source / init_from_run weights
    source_net: SplitNet | None  # frozen copy of the source model in eval mode (None without a source)
    data: Any  # dfg.batches.TaskData: .train (batch source), .num_classes, .class_counts, .minority_classes
    total_steps: int
    generator: torch.Generator  # seeded; use it (or torch RNG seeded by the loop) for every random draw
    autocast: Any  # callable -> context manager: bf16 autocast on CUDA when train.amp, no-op otherwise
    make_optimizer: Any  # callable(params_iterable) -> optimizer per train.optimizer[backbone]
    make_scheduler: Any  # callable(optimizer) -> LR scheduler stepped once per step (or None)
    extras: dict = field(default_factory=dict)
    capture: str = "off"  # train.capture resolved (dfg.capture): "graph" | "static" | "off"


class Method:
    """Base class. Subclasses register with `@METHODS.register("name")` in their own module."""

    #: True: the target net starts from the task's source model (the loop loads it and gives source_net).
    needs_source: ClassVar[bool] = True
    #: A method whose starting point is another method's final model of the same task and seed
    #: (e.g. "finetune" for crt, logit_adjust_posthoc, smote_feat). The workflow makes that run an input.
    init_from_run: ClassVar[str | None] = None
    #: Display name in tables and figures.
    label: ClassVar[str] = ""
    #: True for methods that add nothing to the paper's five (tables mark them as additions).
    addition: ClassVar[bool] = False

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx

    # -- network --------------------------------------------------------------------------------------
    @classmethod
    def adapt_net(cls, net: SplitNet, hp: dict) -> SplitNet:
        """Change the architecture before weights are loaded (e.g. a cosine head). Applied identically
        when training and when `dfg evaluate` rebuilds the model from a checkpoint."""
        return net

    # -- training ---------------------------------------------------------------------------------------
    def require_source(self) -> SplitNet:
        """ctx.source_net, or a clear error for a context built without one (the loop always gives it
        to needs_source methods; hand-built contexts in tests or benchmarks may not)."""
        if self.ctx.source_net is None:
            from dfg import DfgError

            raise DfgError(f"{self.ctx.method} needs the task's source model; run `dfg pretrain` / "
                           "`dfg fetch-weights` first")
        return self.ctx.source_net

    def setup(self) -> None:
        """Create optimisers and extra networks. Called once, before a possible resume."""

    def steps(self) -> int:
        """Number of training steps (default: params train.steps; a method may read its own hp)."""
        return self.ctx.total_steps

    def train_step(self, step: int) -> Logs:
        """Do one step (draw batches from self.ctx.data.train); return scalar losses for curves.csv, as
        detached 0-dim tensors (the loop sums them on the device: no host sync per step on CUDA) or floats.
        A non-finite loss stops the run at the next evaluation (fit). By default the three parts below,
        in order: a method either implements those (and can be captured) or overrides this."""
        logs = self.step_body(step, self.step_inputs(step))
        self.step_after(step)
        return logs

    # -- captured steps (dfg.capture) ----------------------------------------------------------------------
    def capture_key(self, step: int) -> Hashable | None:
        """Which recorded body replays `step` (steps whose device work differs need different keys), or
        None: the step runs eagerly through train_step. None by default (a method that overrides
        train_step, or draws host-side random numbers inside its step, cannot be captured)."""
        return None

    def step_inputs(self, step: int) -> tuple[torch.Tensor, ...]:
        """The host-side work before the step's device work (draw batches, switch sampling); returns the
        step's input tensors, whose shapes depend on capture_key(step) only."""
        raise NotImplementedError(f"{type(self).__name__} implements neither train_step nor step_inputs")

    def step_body(self, step: int, inputs: tuple[torch.Tensor, ...]) -> Logs:
        """The step's device work on `inputs`: forwards, backwards, optimiser steps. No host sync (no
        .item(), float(tensor), bool(tensor), nonzero, host-to-device copy of new data) and nothing of
        `step` beyond what capture_key(step) says, so one recording serves every step of its key.
        Returns the losses as 0-dim tensors."""
        raise NotImplementedError

    def step_after(self, step: int) -> None:
        """The host-side work after the device work (LR scheduler steps, refreshes)."""

    @classmethod
    def untrained_steps(cls, hp: dict, total_steps: int) -> int:
        """Steps at the start of a run in which the evaluated network (F and C) is not trained (DIFA's
        generator phase): its evaluations there show the untouched starting classifier, and the learning
        curves draw that span apart. A classmethod of the run's hp, so figures can call it from metrics.json."""
        return 0

    def phases(self) -> dict[str, int]:
        """First step of each phase whose steps do different work (after setup). `dfg bench` times each
        phase on its own; one phase by default."""
        return {"": 0}

    def on_train_end(self) -> None:
        """Hook after the last step (e.g. compute a post-hoc adjustment)."""

    # -- inference -------------------------------------------------------------------------------------
    def logit_bias(self) -> torch.Tensor | None:
        """A constant added to the logits at test time (post-hoc logit adjustment); saved in the checkpoint."""
        return None

    # -- resume ----------------------------------------------------------------------------------------
    # By convention a method's F/C optimiser is `self.optimizer` and its LR scheduler `self.scheduler`;
    # these two defaults save and restore them. Methods with more state extend both via super().
    def state_dict(self) -> dict[str, Any]:
        """Everything beyond ctx.net needed to resume (optimisers, G, D, attention, RNG-free counters)."""
        state: dict[str, Any] = {}
        if getattr(self, "optimizer", None) is not None:
            state["optimizer"] = self.optimizer.state_dict()
        if getattr(self, "scheduler", None) is not None:
            state["scheduler"] = self.scheduler.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])
        if "scheduler" in state and getattr(self, "scheduler", None) is not None:
            self.scheduler.load_state_dict(state["scheduler"])

    # -- figures ---------------------------------------------------------------------------------------
    def artefacts(self) -> dict[str, Any] | None:
        """Tensors saved as artefacts.pt next to metrics.json (see docs/architecture.md)."""
        return None
