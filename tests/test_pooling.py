"""MaxPool2x2 (LeNet-5's pools): bit-identical to nn.MaxPool2d(2) in every path, fast path only where exact."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as nnf
from torch import nn

from dfg.models import build_backbone
from dfg.models.pooling import MaxPool2x2, max_pool_2x2


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("kind", ["ties", "normal", "relu"])
def test_values_identical_to_torch_including_ties(dtype, kind):
    g = torch.Generator().manual_seed(3)
    shape = (8, 6, 28, 28)
    if kind == "ties":  # three values only: most windows hold a tie
        x = torch.randint(0, 3, shape, generator=g).to(dtype)
    else:
        x = torch.randn(shape, generator=g).to(dtype)
        x = x.relu() if kind == "relu" else x
    with torch.no_grad():
        ours, ref = MaxPool2x2()(x), nnf.max_pool2d(x, 2)
    assert ours.shape == (8, 6, 14, 14) and ours.dtype == dtype
    assert torch.equal(ours, ref)
    assert torch.equal(max_pool_2x2(x), ref)


def test_nan_propagates_like_torch():
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 1, 2] = float("nan")
    with torch.no_grad():
        out = MaxPool2x2()(x)
    assert torch.isnan(out[0, 0, 0, 1]) and torch.isnan(nnf.max_pool2d(x, 2)[0, 0, 0, 1])
    assert int(torch.isnan(out).sum()) == 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gradients_identical_to_torch_including_ties(dtype):
    """With a gradient, ties go where torch's kernel sends them (the first maximum of each window)."""
    x = torch.ones(1, 1, 2, 2, dtype=dtype, requires_grad=True)  # one window, four tied inputs
    MaxPool2x2()(x).sum().backward()
    assert x.grad.flatten().tolist() == [1.0, 0.0, 0.0, 0.0]
    for order in ([0, 1, 1, 0], [0, 0, 1, 1], [1, 0, 0, 1], [0, 1, 0, 1]):  # every pair of tied winners
        x = torch.tensor(order, dtype=dtype).view(1, 1, 2, 2).requires_grad_()
        MaxPool2x2()(x).sum().backward()
        first = order.index(1)
        assert x.grad.flatten().tolist() == [1.0 if i == first else 0.0 for i in range(4)]
    g = torch.Generator().manual_seed(5)
    for kind in ("ties", "normal"):
        x2 = (torch.randint(0, 3, (4, 6, 28, 28), generator=g).float() if kind == "ties"
              else torch.randn(4, 6, 28, 28, generator=g)).to(dtype)
        a, b = x2.clone().requires_grad_(), x2.clone().requires_grad_()
        gout = torch.randn(4, 6, 14, 14, generator=g).to(dtype)
        out_a, out_b = MaxPool2x2()(a), nnf.max_pool2d(b, 2)
        out_a.backward(gout)
        out_b.backward(gout)
        assert torch.equal(out_a, out_b) and torch.equal(a.grad, b.grad)


def test_double_backward_identical_to_torch():
    """A penalty on the input gradient (as a WGAN-GP critic would put through C) trains the same."""
    g = torch.Generator().manual_seed(7)
    x = torch.randint(0, 3, (2, 3, 8, 8), generator=g).float()
    w = torch.randn(2, 3, 4, 4, generator=g)
    grads = []
    for pool in (MaxPool2x2(), nn.MaxPool2d(2)):
        xi = x.clone().requires_grad_()
        y = pool(xi * 2.0)
        (gx,) = torch.autograd.grad((y.pow(2) * w).sum(), xi, create_graph=True)  # depends on x
        gx.pow(2).sum().backward()
        grads.append((gx.detach(), xi.grad))
    assert torch.equal(grads[0][0], grads[1][0]) and torch.equal(grads[0][1], grads[1][1])


def test_odd_sizes_fall_back_to_torch():
    x = torch.randn(2, 3, 7, 9)
    with torch.no_grad():
        out = MaxPool2x2()(x)
    assert out.shape == (2, 3, 3, 4) and torch.equal(out, nnf.max_pool2d(x, 2))


def test_lenet5_forward_and_state_dict_unchanged():
    """LeNet-5 with MaxPool2x2 gives what it gave with nn.MaxPool2d(2), and checkpoints have the same keys."""
    torch.manual_seed(0)
    net = build_backbone("lenet5", 10).eval()
    assert isinstance(net.F.pool1, MaxPool2x2) and isinstance(net.C.pool2, MaxPool2x2)
    ref = build_backbone("lenet5", 10).eval()
    ref.F.pool1, ref.C.pool2 = nn.MaxPool2d(2), nn.MaxPool2d(2)
    ref.load_state_dict(net.state_dict())
    assert list(ref.state_dict()) == list(net.state_dict())
    x = torch.randn(64, 1, 32, 32)
    x[:, :, :4] = -1.0  # an empty border, as F-MNIST's background: tied conv1 outputs
    with torch.no_grad():
        assert torch.equal(net(x), ref(x))
