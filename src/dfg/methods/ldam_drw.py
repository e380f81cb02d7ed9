"""LDAM-DRW (Cao et al. 2019): label-distribution-aware margins Δ_c ∝ n_c^(−1/4) on a cosine head scaled
by s, with deferred re-weighting: class-balanced weights switch on for the last `drw_fraction` of the
steps (method.md §5). Fine-tunes the whole network from the source model."""

from __future__ import annotations

import torch

from dfg.methods import METHODS
from dfg.methods.longtail import SupervisedMethod
from dfg.methods.losses import (
    CosineLinear,
    class_balanced_weights,
    deferred_switch_step,
    ldam_loss,
    ldam_margins,
)
from dfg.models.base import SplitNet


@METHODS.register("ldam_drw")
class LDAMDRW(SupervisedMethod):
    """hp: max_margin, scale (s), drw_beta (β of the deferred class-balanced weights), drw_fraction."""

    label = "LDAM-DRW"

    @classmethod
    def adapt_net(cls, net: SplitNet, hp: dict) -> SplitNet:
        """Replace the last linear layer by a cosine head of the same weight shape (the source head's
        weights still load into it; its bias is dropped, as LDAM's normalised head has none)."""
        old = net.last_fc
        net.set_submodule(net.info.last_fc, CosineLinear(old.in_features, old.out_features, float(hp["scale"])))
        return net

    def setup(self) -> None:
        super().setup()
        hp = self.ctx.hp
        self.margins = ldam_margins(self.class_counts, float(hp["max_margin"])).to(self.ctx.device)
        self.drw_weights = class_balanced_weights(self.class_counts, float(hp["drw_beta"])).to(self.ctx.device)
        self.drw_step = deferred_switch_step(self.run_steps(), float(hp["drw_fraction"]))

    def class_weights_at(self, step: int) -> torch.Tensor | None:
        """None (plain LDAM) before the DRW step, the class-balanced weights from it on."""
        return self.drw_weights if step >= self.drw_step else None

    def loss_phase(self, step: int) -> bool:
        """Before (False) or from (True) the DRW step: the loss's two forms, recorded apart."""
        return step >= self.drw_step

    def loss(self, logits: torch.Tensor, y: torch.Tensor, step: int) -> torch.Tensor:
        return ldam_loss(logits, y, self.margins, float(self.ctx.hp["scale"]), self.class_weights_at(step))
