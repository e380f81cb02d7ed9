"""cRT, classifier re-training (Kang et al. 2020): from the fine-tuned model of the same task and seed,
freeze F and the body of C, re-initialise the last linear layer and retrain it alone with
class-balanced sampling (method.md §5)."""

from __future__ import annotations

import torch
import torch.nn.functional as Fn
from torch import nn

from dfg.methods import METHODS
from dfg.methods.base import Logs
from dfg.methods.longtail import FrozenBodyMethod, penultimate


@METHODS.register("crt")
class CRT(FrozenBodyMethod):
    """hp: step_fraction (retraining steps as a share of train.steps), lr_scale (× the backbone's lr)."""

    init_from_run = "finetune"
    label = "cRT"

    def trained_module(self) -> nn.Module:
        return self.ctx.net.last_fc

    def setup(self) -> None:
        self.ctx.net.reset_head()  # torch's RNG, seeded by the loop from the run's seed
        self.freeze()
        super().setup()
        self.ctx.data.train.set_class_weights(torch.ones(self.ctx.data.num_classes))

    def step_body(self, step: int, inputs: tuple[torch.Tensor, ...]) -> Logs:
        x, y = inputs
        self.set_modes()
        head = self.ctx.net.last_fc
        with self.ctx.autocast():
            feats = penultimate(self.ctx.net, head, x)
            logits = head(feats)
        loss = Fn.cross_entropy(logits.float(), y)
        self.optimize(loss)
        return {"loss": loss.detach()}
