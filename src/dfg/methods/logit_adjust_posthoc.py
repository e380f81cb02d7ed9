"""Post-hoc logit adjustment (Menon et al. 2021): the plain fine-tuned model of the same task and seed,
predicting argmax(z − τ·log π). No training step: the adjustment is a constant logit bias saved in the
checkpoint and added at evaluation (method.md §5)."""

from __future__ import annotations

import torch

from dfg.methods import METHODS
from dfg.methods.base import Logs, Method
from dfg.methods.losses import posthoc_logit_bias


@METHODS.register("logit_adjust_posthoc")
class LogitAdjustPosthoc(Method):
    """hp: tau (τ)."""

    needs_source = True
    init_from_run = "finetune"
    label = "Logit adj. (post-hoc)"
    addition = True

    def steps(self) -> int:
        return 0

    def train_step(self, step: int) -> Logs:
        """Nothing to train: only a `--steps N` debugging override makes the loop call this."""
        return {}

    def logit_bias(self) -> torch.Tensor:
        return posthoc_logit_bias(torch.as_tensor(self.ctx.data.class_counts), float(self.ctx.hp["tau"]))
