"""Shared pieces of the long-tail baselines (method.md §5): a whole-network supervised step with a
pluggable loss, classifier retraining on a frozen body, per-step seeded randomness.

The baselines differ from FINE-TUNING only in the loss (CB-Focal, LDAM-DRW, Balanced Softmax), the
sampling (DRS, cRT), the inputs (Remix) or which part trains (cRT, SMOTE); this module holds what they
share so each method file states only its difference.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

import torch
import torch.nn.functional as Fn
from torch import nn

from dfg.methods.base import Logs, Method
from dfg.runtime import derive_seed


def step_generator(seed: int, stream: str, step: int) -> torch.Generator:
    """A CPU generator seeded from (run seed, stream, step): the draws of step k do not depend on
    earlier steps, so a resumed run repeats them exactly without any saved RNG state."""
    gen = torch.Generator()
    gen.manual_seed(derive_seed(seed, stream, step))
    return gen


def fraction_of_steps(total_steps: int, fraction: float) -> int:
    """round(fraction · total) steps, at least 1 (a method's own shorter schedule, e.g. cRT)."""
    return max(1, round(fraction * total_steps))


@torch.no_grad()
def penultimate(net: nn.Module, last_fc: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The input of the network's last linear layer for x: captured with a forward hook, so it works for
    every backbone without knowing what sits between F and the head."""
    captured: list[torch.Tensor] = []
    handle = last_fc.register_forward_hook(lambda _m, inputs, _out: captured.append(inputs[0]))
    try:
        net(x)
    finally:
        handle.remove()
    return captured[0].detach()


class SupervisedMethod(Method):
    """Train the whole network on batches of the shared batch source with `self.loss(logits, y, step)`.

    Subclasses override `loss` (and `before_batch` for sampling changes). The optimiser is the backbone's
    F/C optimiser from params (train.optimizer), its scheduler stepped once per step."""

    needs_source = True
    addition = True

    def trainable_parameters(self) -> Iterable[nn.Parameter]:
        return self.ctx.net.parameters()

    def setup(self) -> None:
        self.optimizer = self.ctx.make_optimizer(list(self.trainable_parameters()))
        scale = self.lr_scale()
        if scale != 1.0:
            for group in self.optimizer.param_groups:  # before the scheduler records its initial lr
                group["lr"] *= scale
        self.scheduler = self.ctx.make_scheduler(self.optimizer)

    def lr_scale(self) -> float:
        """Factor on the backbone optimiser's lr (train.optimizer); whole-network methods keep it."""
        return 1.0

    def run_steps(self) -> int:
        """The steps this run really takes: the loop's count (a --steps override included) once it is
        known, else steps(). Deferred switches (DRW, DRS) are placed against it."""
        return int(self.ctx.extras.get("method_steps", self.steps()))

    @property
    def class_counts(self) -> torch.Tensor:
        return torch.as_tensor(self.ctx.data.class_counts)

    def before_batch(self, step: int) -> None:
        """Hook before the batch of `step` is drawn (DRS switches sampling here)."""

    def loss(self, logits: torch.Tensor, y: torch.Tensor, step: int) -> torch.Tensor:
        return Fn.cross_entropy(logits.float(), y)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.ctx.net.train()
        with self.ctx.autocast():
            return self.ctx.net(x)

    def optimize(self, loss: torch.Tensor) -> None:
        """Backward and optimiser step (device work only)."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def update(self, loss: torch.Tensor) -> None:
        """optimize, then the scheduler's step (for methods with their own train_step)."""
        self.optimize(loss)
        if self.scheduler is not None:
            self.scheduler.step()

    # -- the step, in the parts dfg.capture records ------------------------------------------------------
    def loss_phase(self, step: int) -> Hashable:
        """What `loss(..., step)` reads of the step (LDAM-DRW: before or after its deferred re-weighting)."""
        return 0

    def capture_key(self, step: int) -> Hashable | None:
        return ("loss", self.loss_phase(step))

    def step_inputs(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.before_batch(step)
        return self.ctx.data.train.next()

    def step_body(self, step: int, inputs: tuple[torch.Tensor, ...]) -> Logs:
        x, y = inputs
        loss = self.loss(self.forward(x), y, step)
        self.optimize(loss)
        return {"loss": loss.detach()}

    def step_after(self, step: int) -> None:
        if self.scheduler is not None:
            self.scheduler.step()


class FrozenBodyMethod(SupervisedMethod):
    """Retrain only part of the network (cRT: the last linear layer; SMOTE: C) on top of a frozen part
    that is kept in eval mode, so neither its parameters nor its buffers (BN statistics) move.
    Runs for `step_fraction` of train.steps (method param)."""

    def trained_module(self) -> nn.Module:
        raise NotImplementedError

    def trainable_parameters(self) -> Iterable[nn.Parameter]:
        return self.trained_module().parameters()

    def steps(self) -> int:
        return fraction_of_steps(self.ctx.total_steps, float(self.ctx.hp["step_fraction"]))

    def lr_scale(self) -> float:
        return float(self.ctx.hp["lr_scale"])

    def freeze(self) -> None:
        trained = {id(p) for p in self.trained_module().parameters()}
        for p in self.ctx.net.parameters():
            p.requires_grad_(id(p) in trained)

    def set_modes(self) -> None:
        """Everything in eval mode, then the trained module in train mode (dropout inside VGG's C)."""
        self.ctx.net.eval()
        self.trained_module().train()
