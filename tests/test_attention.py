"""Channel ablation, class attention and channel weights (method.md §2), against the authors' naive
procedure (zero filter j's weight, rerun, restore) and hand-computed numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as nnf

from dfg.methods.attention import (
    ablation_losses,
    channel_weights,
    class_attention,
    classifier_layer_deltas,
    extractor_ablation,
    per_class_positions,
    threshold_attention,
)
from dfg.models import build_backbone


@pytest.fixture(scope="module")
def lenet() -> torch.nn.Module:
    torch.manual_seed(0)
    net = build_backbone("lenet5", 10)
    with torch.no_grad():
        net.F.conv1.bias.add_(0.3)  # a bias that matters: ablation keeps it, as the authors' code did
    return net.eval()


def _naive(net, conv, forward, x, y, reduction="none"):
    """The authors' loop: zero the filter's weight, rerun, restore."""
    base = nnf.cross_entropy(forward(x), y, reduction=reduction)
    out = []
    for j in range(conv.weight.shape[0]):
        keep = conv.weight[j].clone()
        with torch.no_grad():
            conv.weight[j] = 0
            out.append(nnf.cross_entropy(forward(x), y, reduction=reduction))
            conv.weight[j] = keep
    return base, torch.stack(out)


def test_batched_ablation_equals_zeroing_each_filter(lenet):
    x, y = torch.randn(7, 1, 32, 32), torch.randint(0, 10, (7,))
    with torch.no_grad():
        base_ref, abl_ref = _naive(lenet, lenet.F.conv1, lenet, x, y)
    for max_rows in (7 * 7, 20, 10_000):  # all replicas at once, several chunks, one replica per forward
        base, abl = ablation_losses(lenet, lenet.F.conv1, x, y, max_rows)
        assert torch.allclose(base, base_ref, atol=1e-5) and torch.allclose(abl, abl_ref, atol=1e-5)
    w = extractor_ablation(lenet, "F.conv1", x, y, 30)
    assert w.shape == (7, 6)
    assert torch.allclose(w, (base_ref[None] - abl_ref).T, atol=1e-5)  # base minus ablated


@pytest.mark.parametrize("max_rows", [30, 14, 4096])
def test_extractor_ablation_never_forwards_more_than_max_rows(lenet, max_rows):
    """ablation_max_rows bounds memory (ResNet-50 at 224 px: 11.4 MB a row): no forward is larger, and
    the result does not depend on it."""
    x, y = torch.randn(7, 1, 32, 32), torch.randint(0, 10, (7,))
    sizes = []
    handle = lenet.register_forward_pre_hook(lambda module, args: sizes.append(args[0].shape[0]))
    try:
        w = extractor_ablation(lenet, "F.conv1", x, y, max_rows)
    finally:
        handle.remove()
    assert max(sizes) <= max_rows and sum(sizes) >= 7 * 7  # base + 6 ablated replicas of 7 samples
    assert torch.allclose(w, extractor_ablation(lenet, "F.conv1", x, y, 10_000), atol=1e-5)


def test_classifier_deltas_equal_the_authors_batch_mean_procedure(lenet):
    batches = [(torch.randn(5, 1, 32, 32), torch.randint(0, 10, (5,))) for _ in range(3)]
    ref = []
    conv = lenet.C.conv2
    with torch.no_grad():
        for x, y in batches:
            base, abl = _naive(lenet, conv, lenet, x, y, reduction="mean")
            ref.append(abl - base)  # ablated minus base
    (got,) = classifier_layer_deltas(lenet, ["C.conv2"], batches, 64)
    assert got.shape == (16,)
    assert torch.allclose(got, torch.stack(ref).mean(0), atol=1e-5)


def test_attention_rows_sum_to_one_and_threshold_keeps_exactly_entries_above_t_over_c():
    torch.manual_seed(3)
    w = torch.randn(40, 6) * 2
    y = torch.arange(4).repeat(10)
    att = class_attention(w, y, 5)
    assert torch.allclose(att[:4].sum(1), torch.ones(4), atol=1e-6)
    assert torch.equal(att[4], torch.zeros(6))  # a class without samples
    # hand check of one row: mean of per-sample softmaxes
    assert torch.allclose(att[2], torch.softmax(w[y == 2].double(), 1).mean(0).float(), atol=1e-7)
    for t in (0.9, 0.95):
        kept = threshold_attention(att, t)
        mask = att >= t / 6
        assert torch.equal(kept != 0, mask & (att != 0))
        assert torch.equal(kept[mask], att[mask])  # kept entries keep their softmax value
    # exactly at the boundary (binary-exact numbers): C_F * A = t is kept, below is not
    edge = torch.tensor([[0.25, 0.1875, 0.5, 0.0625]])
    assert threshold_attention(edge, 1.0).tolist() == [[0.25, 0.0, 0.5, 0.0]]


def test_channel_weights_match_the_numpy_formula():
    scores = torch.tensor([0.1, -0.4, 2.0, 0.3])
    s = scores.numpy().astype(np.float64)
    z = (s - s.mean()) / s.std()
    ref = np.exp(z / 5) / np.exp(z / 5).sum()
    assert np.allclose(channel_weights(scores, 5.0).numpy(), ref, atol=1e-7)
    assert torch.allclose(channel_weights(torch.ones(3), 5.0), torch.full((3,), 1 / 3))  # zero spread


def test_per_class_positions_are_seeded_and_capped():
    labels = torch.tensor([0] * 30 + [1] * 4 + [2] * 12)
    a = per_class_positions(labels, 3, 10, torch.Generator().manual_seed(1))
    b = per_class_positions(labels, 3, 10, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert torch.bincount(labels[a], minlength=3).tolist() == [10, 4, 10]
    assert len(set(a.tolist())) == a.numel()
