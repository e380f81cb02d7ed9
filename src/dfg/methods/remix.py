"""Remix (Chou et al. 2020): mixup (λ ~ Beta(α, α), one λ per batch, partner = a seeded permutation of
the batch) whose label weight goes wholly to the minority sample when the pair's count ratio is at least
κ and the majority sample's share of the image is below τ (method.md §5). Fine-tunes from the source."""

from __future__ import annotations

import numpy as np
import torch

from dfg.methods import METHODS
from dfg.methods.base import Logs
from dfg.methods.longtail import SupervisedMethod, step_generator
from dfg.methods.losses import remix_label_weight, soft_pair_cross_entropy
from dfg.runtime import derive_seed


@METHODS.register("remix")
class Remix(SupervisedMethod):
    """hp: kappa (κ, count ratio), tau (τ, share threshold), alpha (mixup Beta(α, α))."""

    label = "Remix"

    def mixing(self, step: int, batch: int) -> tuple[float, torch.Tensor]:
        """(λ, partner permutation) of `step`, a function of (seed, step) only (resume-exact)."""
        alpha = float(self.ctx.hp["alpha"])
        lam = float(np.random.default_rng(derive_seed(self.ctx.seed, "remix-lambda", step)).beta(alpha, alpha))
        perm = torch.randperm(batch, generator=step_generator(self.ctx.seed, "remix-perm", step))
        return lam, perm

    def step_inputs(self, step: int) -> tuple[torch.Tensor, ...]:
        """The mixed batch and its targets, drawn and mixed on the host side (λ and the partners come from
        per-step generators): (λ·x + (1 − λ)·x[perm], y, y[perm], label weights, λ as a float64 0-dim tensor)."""
        x, y = self.ctx.data.train.next()
        lam, perm = self.mixing(step, int(y.numel()))
        perm = perm.to(x.device)
        y_j = y[perm]
        counts = self.class_counts.to(y.device).double()
        w_i = remix_label_weight(lam, counts[y], counts[y_j], float(self.ctx.hp["kappa"]), float(self.ctx.hp["tau"]))
        mixed = lam * x + (1.0 - lam) * x[perm]
        return mixed, y, y_j, w_i, torch.tensor(lam, dtype=torch.float64, device=x.device)

    def step_body(self, step: int, inputs: tuple[torch.Tensor, ...]) -> Logs:
        mixed, y, y_j, w_i, lam = inputs
        loss = soft_pair_cross_entropy(self.forward(mixed), y, y_j, w_i)
        self.optimize(loss)
        return {"loss": loss.detach(), "lambda": lam}
