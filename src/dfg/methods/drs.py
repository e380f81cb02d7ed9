"""DRS, deferred re-sampling (Cao et al. 2019): plain cross-entropy, with class-balanced sampling from the
batch source for the last `fraction` of the steps (method.md §5). Fine-tunes from the source model."""

from __future__ import annotations

import torch

from dfg.methods import METHODS
from dfg.methods.longtail import SupervisedMethod
from dfg.methods.losses import deferred_switch_step


@METHODS.register("drs")
class DRS(SupervisedMethod):
    """hp: fraction (share of the steps, at the end, drawn class-balanced)."""

    label = "DRS"

    def setup(self) -> None:
        super().setup()
        self.switch_step = deferred_switch_step(self.run_steps(), float(self.ctx.hp["fraction"]))
        self._balanced = False

    def before_batch(self, step: int) -> None:
        # Checked every step rather than once, so a run resumed after the switch is balanced too.
        if step >= self.switch_step and not self._balanced:
            self.ctx.data.train.set_class_weights(torch.ones(self.ctx.data.num_classes))
            self._balanced = True
