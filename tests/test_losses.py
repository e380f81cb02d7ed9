"""The long-tail losses of method.md §5 on hand-computed numbers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as Fn

from dfg import DfgError
from dfg.methods import losses

COUNTS = [100, 10, 1]


def test_class_balanced_weights_hand_computed_and_sum_to_num_classes():
    beta = 0.9
    raw = [(1 - beta) / (1 - beta**n) for n in COUNTS]  # ≈ 0.1000027, 0.153535, 1
    expected = [r * 3 / sum(raw) for r in raw]
    w = losses.class_balanced_weights(COUNTS, beta)
    assert w.dtype == torch.float32
    assert w.tolist() == pytest.approx(expected, rel=1e-6)
    assert raw[1] == pytest.approx(0.1 / (1 - 0.3486784401), rel=1e-9)
    assert float(w.sum()) == pytest.approx(3.0, abs=1e-6)
    # n = 1 -> (1-β)/(1-β) = 1 exactly: the rarest class's raw weight is 1, the others below it.
    assert raw[2] == pytest.approx(1.0)
    assert w[2] > w[1] > w[0]


def test_class_balanced_weights_limits():
    assert losses.class_balanced_weights(COUNTS, 0.0).tolist() == pytest.approx([1.0, 1.0, 1.0])
    # β -> 1: inverse frequency, normalised to sum C.
    inv = [1 / n for n in COUNTS]
    w = losses.class_balanced_weights(COUNTS, 0.999999)
    assert w.tolist() == pytest.approx([v * 3 / sum(inv) for v in inv], rel=1e-3)
    with pytest.raises(DfgError):
        losses.class_balanced_weights(COUNTS, 1.0)
    with pytest.raises(DfgError):
        losses.class_balanced_weights([5, 0], 0.9)


def test_focal_loss_hand_computed():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    y = torch.tensor([0, 2])
    p0 = math.exp(2) / (math.exp(2) + 2)
    p1 = 1 / (2 + math.e)
    gamma = 0.5
    per = [-(1 - p0) ** gamma * math.log(p0), -(1 - p1) ** gamma * math.log(p1)]
    assert float(losses.focal_loss(logits, y, gamma)) == pytest.approx(sum(per) / 2, rel=1e-6)
    w = torch.tensor([2.0, 0.5, 0.5])
    assert float(losses.focal_loss(logits, y, gamma, w)) == pytest.approx((2 * per[0] + 0.5 * per[1]) / 2, rel=1e-6)
    # γ = 0 without weights is cross-entropy.
    assert float(losses.focal_loss(logits, y, 0.0)) == pytest.approx(float(Fn.cross_entropy(logits, y)), rel=1e-6)


def test_ldam_margins_proportional_to_n_pow_minus_quarter_with_max_half():
    counts = [10000, 625, 16, 1]  # n^(-1/4) = 0.1, 0.2, 0.5, 1
    m = losses.ldam_margins(counts, 0.5)
    assert m.tolist() == pytest.approx([0.05, 0.1, 0.25, 0.5], rel=1e-6)
    assert float(m.max()) == pytest.approx(0.5)


def test_ldam_loss_hand_computed():
    s = 30.0
    cos = torch.tensor([[0.2, 0.1], [0.0, 0.3]])
    logits = s * cos
    y = torch.tensor([0, 1])
    m = torch.tensor([0.1, 0.5])
    # sample 0: [30*(0.2-0.1), 3] = [3, 3] -> CE = log 2 ; sample 1: [0, 30*(0.3-0.5)] = [0, -6]
    ce0 = math.log(2)
    ce1 = 6.0 + math.log(1.0 + math.exp(-6.0))  # -z_y + logsumexp(z) with z_y = -6
    assert float(losses.ldam_loss(logits, y, m, s)) == pytest.approx((ce0 + ce1) / 2, rel=1e-6)
    w = torch.tensor([1.0, 3.0])  # weighted CE normalises by the sum of the weights of the targets
    assert float(losses.ldam_loss(logits, y, m, s, w)) == pytest.approx((ce0 + 3 * ce1) / 4, rel=1e-6)


def test_cosine_linear_is_scaled_cosine():
    head = losses.CosineLinear(2, 2, scale=30.0)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[2.0, 0.0], [1.0, 1.0]]))
    out = head(torch.tensor([[3.0, 4.0]]))
    assert out.tolist()[0] == pytest.approx([30 * 0.6, 30 * 7 / (5 * math.sqrt(2))], rel=1e-6)
    assert isinstance(head, torch.nn.Linear) and head.bias is None


def test_balanced_softmax_equals_ce_on_logits_plus_log_prior():
    counts = [60, 30, 10]
    logits = torch.tensor([[1.0, 0.5, -1.0], [0.0, 0.0, 0.0]])
    y = torch.tensor([2, 1])
    shifted = logits + torch.log(torch.tensor([0.6, 0.3, 0.1]))
    expected = float(Fn.cross_entropy(shifted, y))
    assert float(losses.logit_adjusted_loss(logits, y, counts, 1.0)) == pytest.approx(expected, rel=1e-6)
    # hand value of the second sample: -log 0.3 (uniform logits -> softmax = prior)
    per1 = float(Fn.cross_entropy(shifted[1:], y[1:]))
    assert per1 == pytest.approx(-math.log(0.3), rel=1e-6)
    # log n_c instead of log π_c gives the same loss (Balanced Softmax as Ren et al. write it)
    alt = float(Fn.cross_entropy(logits + torch.log(torch.tensor([60.0, 30.0, 10.0])), y))
    assert alt == pytest.approx(expected, rel=1e-6)


def test_posthoc_bias_is_minus_tau_log_prior():
    b = losses.posthoc_logit_bias([75, 25], tau=2.0)
    assert b.tolist() == pytest.approx([-2 * math.log(0.75), -2 * math.log(0.25)], rel=1e-6)


@pytest.mark.parametrize(("total", "fraction", "expected"), [(300, 0.2, 240), (100, 0.2, 80), (10, 0.0, 10),
                                                             (7, 1.0, 0), (1000, 0.25, 750)])
def test_deferred_switch_step(total, fraction, expected):
    assert losses.deferred_switch_step(total, fraction) == expected


def test_remix_label_weight_rules():
    n_i = torch.tensor([300.0, 10.0, 100.0, 300.0])
    n_j = torch.tensor([10.0, 300.0, 100.0, 10.0])
    kappa, tau = 3.0, 0.5
    # λ = 0.3 < τ: pair 0 (i majority, ratio 30 ≥ κ) -> 0; pair 1 (ratio 1/30 ≤ 1/κ, 1-λ = 0.7 ≥ τ) -> λ
    w = losses.remix_label_weight(0.3, n_i, n_j, kappa, tau)
    assert w.tolist() == pytest.approx([0.0, 0.3, 0.3, 0.0])
    # λ = 0.8: 1-λ = 0.2 < τ: pair 1 (i minority) -> 1; pair 0 (λ ≥ τ) -> λ
    w = losses.remix_label_weight(0.8, n_i, n_j, kappa, tau)
    assert w.tolist() == pytest.approx([0.8, 1.0, 0.8, 0.8])


def test_soft_pair_cross_entropy_hand_computed():
    logits = torch.tensor([[0.0, math.log(3.0)]])  # softmax = [0.25, 0.75]
    v = losses.soft_pair_cross_entropy(logits, torch.tensor([0]), torch.tensor([1]), torch.tensor([0.4]))
    assert float(v) == pytest.approx(0.4 * -math.log(0.25) + 0.6 * -math.log(0.75), rel=1e-6)


def test_one_hot_from_a_comparison_equals_torch_one_hot():
    y = torch.tensor([2, 0, 3, 3, 1])
    got = losses.one_hot(y, 5)
    assert got.dtype == torch.float32 and got.tolist()[0] == [0.0, 0.0, 1.0, 0.0, 0.0]
    assert torch.equal(got, Fn.one_hot(y, 5).float())
