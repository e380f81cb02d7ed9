"""CB-Focal (Cui et al. 2019): focal loss weighted by the inverse effective number of samples per class
(method.md §5). Fine-tunes the whole network from the source model."""

from __future__ import annotations

import torch

from dfg.methods import METHODS
from dfg.methods.longtail import SupervisedMethod
from dfg.methods.losses import class_balanced_weights, focal_loss


@METHODS.register("cb_focal")
class CBFocal(SupervisedMethod):
    """hp: beta (effective-number β), gamma (focal exponent γ)."""

    label = "CB-Focal"

    def setup(self) -> None:
        super().setup()
        self.weights = class_balanced_weights(self.class_counts, float(self.ctx.hp["beta"])).to(self.ctx.device)

    def loss(self, logits: torch.Tensor, y: torch.Tensor, step: int) -> torch.Tensor:
        return focal_loss(logits, y, float(self.ctx.hp["gamma"]), self.weights)
