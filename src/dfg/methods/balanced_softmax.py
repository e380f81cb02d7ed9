"""Balanced Softmax / logit-adjusted loss (Ren et al. 2020; Menon et al. 2021): CE(z + τ·log π) during
training, raw logits at test time (method.md §5). Fine-tunes the whole network from the source model."""

from __future__ import annotations

import torch

from dfg.methods import METHODS
from dfg.methods.longtail import SupervisedMethod
from dfg.methods.losses import logit_shift, shifted_cross_entropy


@METHODS.register("balanced_softmax")
class BalancedSoftmax(SupervisedMethod):
    """hp: tau (τ = 1 is Balanced Softmax)."""

    label = "Balanced Softmax"

    def setup(self) -> None:
        super().setup()
        # τ·log π on the device once (a capturable step copies nothing from the host)
        self.shift = logit_shift(self.class_counts, float(self.ctx.hp["tau"])).to(self.ctx.device)

    def loss(self, logits: torch.Tensor, y: torch.Tensor, step: int) -> torch.Tensor:
        return shifted_cross_entropy(logits, y, self.shift)
