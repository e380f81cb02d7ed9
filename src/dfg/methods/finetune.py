"""FINE-TUNING (method.md §3): the whole network, started from the task's source model, trained with
plain cross-entropy on the imbalanced target split. Also the CE step ORIGINAL and `dfg pretrain` reuse."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as nnf

from dfg.methods import METHODS
from dfg.methods.base import Method


class CrossEntropyMethod(Method):
    """One optimiser over all of F and C (train.optimizer[backbone]), one CE step per training step."""

    def setup(self) -> None:
        self.optimizer = self.ctx.make_optimizer(self.ctx.net.parameters())
        self.scheduler = self.ctx.make_scheduler(self.optimizer)

    def capture_key(self, step: int) -> str:
        return "ce"

    def step_inputs(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.ctx.data.train.next()

    def step_body(self, step: int, inputs: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        x, y = inputs
        with self.ctx.autocast():
            logits = self.ctx.net(x)
        loss = nnf.cross_entropy(logits.float(), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss_ce": loss.detach()}  # a tensor: the loop sums it without a per-step host sync

    def step_after(self, step: int) -> None:
        if self.scheduler is not None:
            self.scheduler.step()


@METHODS.register("finetune")
class FineTune(CrossEntropyMethod):
    needs_source: ClassVar[bool] = True
    label: ClassVar[str] = "FINE-TUNING"


