"""Losses of the long-tail baselines (method.md §5), as plain functions of logits, labels and class counts.

Kept free of the training loop so that each formula can be checked on hand-computed numbers
(tests/test_losses.py). Notation: n_c = training count of class c, π_c = n_c / N, z = logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as Fn
from torch import nn

from dfg import DfgError


def _counts(class_counts: torch.Tensor | list[int]) -> torch.Tensor:
    counts = torch.as_tensor(class_counts, dtype=torch.float64)
    if counts.ndim != 1 or bool((counts <= 0).any()):
        raise DfgError(
            f"class counts must be a 1-D list of positive numbers, got {counts.tolist()}; "
            "every class needs at least one training sample (check the task's split block)"
        )
    return counts


def class_balanced_weights(class_counts: torch.Tensor | list[int], beta: float) -> torch.Tensor:
    """Cui et al. 2019: w_c = (1 − β) / (1 − β^{n_c}) (the inverse "effective number" of samples),
    normalised so that the weights sum to the number of classes C. β = 0 gives uniform weights, β → 1
    inverse-frequency weights. Returned as float32."""
    if not 0.0 <= beta < 1.0:
        raise DfgError(f"class-balanced beta must lie in [0, 1), got {beta}; fix the method's `beta`")
    counts = _counts(class_counts)
    effective = 1.0 - torch.pow(torch.tensor(beta, dtype=torch.float64), counts)
    weights = (1.0 - beta) / effective
    return (weights * (len(counts) / weights.sum())).float()


def focal_loss(
    logits: torch.Tensor, target: torch.Tensor, gamma: float, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Softmax focal loss (Lin et al. 2017), optionally class-weighted:
    mean_i w_{y_i} · (1 − p_{y_i})^γ · (−log p_{y_i}), with p the softmax of the logits.
    γ = 0 and no weights is plain cross-entropy. The batch mean is unnormalised by the weights (the
    class-balanced weights already average about 1)."""
    log_p = Fn.log_softmax(logits.float(), dim=1).gather(1, target[:, None]).squeeze(1)
    modulating = (1.0 - log_p.exp()).clamp_min(0.0).pow(gamma)
    loss = -modulating * log_p
    if weight is not None:
        loss = loss * weight.to(loss.device)[target]
    return loss.mean()


def ldam_margins(class_counts: torch.Tensor | list[int], max_margin: float) -> torch.Tensor:
    """Cao et al. 2019: Δ_c ∝ n_c^(−1/4), scaled so that the rarest class gets `max_margin`."""
    counts = _counts(class_counts)
    raw = counts.pow(-0.25)
    return (raw * (max_margin / raw.max())).float()


def one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """float32 [n, num_classes] one-hot rows of int labels: F.one_hot's values, from a comparison, so it
    never reads the labels on the host (a recorded CUDA step may not)."""
    return (labels.unsqueeze(1) == torch.arange(num_classes, device=labels.device)).float()


def ldam_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    margins: torch.Tensor,
    scale: float,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """LDAM on scaled cosine logits z = s·cos θ (what `CosineLinear` outputs): the true class's logit is
    lowered by s·Δ_y, then (optionally class-weighted) cross-entropy. Equal to the paper's
    CE(s·(cos θ − Δ_y·onehot)) because the head already applies s."""
    logits = logits.float()
    shift = one_hot(target, logits.shape[1]) * (scale * margins.to(logits.device))[target, None]
    w = weight.to(logits.device) if weight is not None else None
    return Fn.cross_entropy(logits - shift, target, weight=w)


def log_prior(class_counts: torch.Tensor | list[int]) -> torch.Tensor:
    """log π_c = log(n_c / N), float32."""
    counts = _counts(class_counts)
    return (counts / counts.sum()).log().float()


def logit_adjusted_loss(
    logits: torch.Tensor, target: torch.Tensor, class_counts: torch.Tensor | list[int], tau: float
) -> torch.Tensor:
    """Balanced Softmax (Ren et al. 2020) / logit-adjusted loss (Menon et al. 2021): CE(z + τ·log π).
    With τ = 1 it is Balanced Softmax (adding log n_c instead of log π_c differs by a constant that
    the softmax cancels). Test-time prediction uses the raw z."""
    return shifted_cross_entropy(logits, target, logit_shift(class_counts, tau).to(logits.device))


def logit_shift(class_counts: torch.Tensor | list[int], tau: float) -> torch.Tensor:
    """τ·log π_c, the training-time logit shift of the logit-adjusted loss (float32 [K])."""
    return tau * log_prior(class_counts)


def shifted_cross_entropy(logits: torch.Tensor, target: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """CE(z + shift) with a precomputed shift on the logits' device (logit_adjusted_loss)."""
    return Fn.cross_entropy(logits.float() + shift, target)


def posthoc_logit_bias(class_counts: torch.Tensor | list[int], tau: float) -> torch.Tensor:
    """Post-hoc logit adjustment (Menon et al. 2021): predict argmax(z − τ·log π). Returned as the
    constant bias the evaluation adds to the logits."""
    return -tau * log_prior(class_counts)


def deferred_switch_step(total_steps: int, fraction: float) -> int:
    """The first step of the last `fraction` of training (DRW, DRS): total − round(fraction·total).
    Rounding the length of the deferred phase (not the switch point) keeps e.g. 20 % of 300 steps = 60
    exactly, free of float error in 0.8·300."""
    if not 0.0 <= fraction <= 1.0:
        raise DfgError(f"deferred fraction must lie in [0, 1], got {fraction}; fix the method's parameter")
    return total_steps - round(fraction * total_steps)


class CosineLinear(nn.Linear):
    """LDAM's normalised head: s · ⟨x/‖x‖, w_c/‖w_c‖⟩, no bias. A subclass of nn.Linear with the same
    weight shape [K, D], so source weights of a plain head load into it and `SplitNet.last_fc` still
    finds a linear layer."""

    def __init__(self, in_features: int, out_features: int, scale: float) -> None:
        super().__init__(in_features, out_features, bias=False)
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * Fn.linear(Fn.normalize(x, dim=1), Fn.normalize(self.weight, dim=1))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, scale={self.scale}"


def remix_label_weight(
    lam: float, counts_i: torch.Tensor, counts_j: torch.Tensor, kappa: float, tau: float
) -> torch.Tensor:
    """Remix (Chou et al. 2020) label weight λ_y of sample i in the mix λ·x_i + (1 − λ)·x_j:
    0 if n_i/n_j ≥ κ and λ < τ (the mixed image leans to the minority sample j: all label to j);
    1 if n_i/n_j ≤ 1/κ and 1 − λ < τ (symmetrically all label to i); λ otherwise (plain mixup)."""
    ratio = counts_i.double() / counts_j.double()
    out = torch.full_like(ratio, float(lam), dtype=torch.float32)
    out[(ratio >= kappa) & (lam < tau)] = 0.0
    out[(ratio <= 1.0 / kappa) & ((1.0 - lam) < tau)] = 1.0
    return out


def soft_pair_cross_entropy(
    logits: torch.Tensor, y_i: torch.Tensor, y_j: torch.Tensor, w_i: torch.Tensor
) -> torch.Tensor:
    """mean_k [w_k · CE(z_k, y_i,k) + (1 − w_k) · CE(z_k, y_j,k)]: the loss of mixup / Remix targets."""
    ce_i = Fn.cross_entropy(logits.float(), y_i, reduction="none")
    ce_j = Fn.cross_entropy(logits.float(), y_j, reduction="none")
    w = w_i.to(ce_i.device)
    return (w * ce_i + (1.0 - w) * ce_j).mean()
