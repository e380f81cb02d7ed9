"""DELTA-style regularisers: Omega on a hand-computed two-channel case, Omega_fc, and the hook taps."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from dfg.methods.regularizers import BehaviourRegularizer, LayerTap, fc_l2, weighted_feature_distance
from dfg.models import BACKBONES, build_backbone


def test_omega_two_channel_case_by_hand():
    # one sample, C = 2 channels of 2 x 2; source all zeros; weights 0.25 / 0.75
    t = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 0.0], [0.0, 1.0]]]], requires_grad=True)
    s = torch.zeros(1, 2, 2, 2, requires_grad=True)
    w = torch.tensor([0.25, 0.75])
    omega = weighted_feature_distance(t, s, w)
    # 1/2 * C * sum_c w_c ||t_c - s_c||^2 / (H W) = 0.5 * 2 * (0.25 * 30 + 0.75 * 1) / 4
    assert omega.item() == pytest.approx(2.0625)
    omega.backward()
    assert s.grad is None  # the source is detached
    # d/dt = C * w_c * (t - s) / (H W)
    assert torch.allclose(t.grad[0, 0], 2 * 0.25 * t.detach()[0, 0] / 4)
    assert torch.allclose(t.grad[0, 1], 2 * 0.75 * t.detach()[0, 1] / 4)


def test_omega_sums_over_the_batch():
    t = torch.ones(3, 2, 1, 1)
    s = torch.zeros(3, 2, 1, 1)
    # per sample: 0.5 * 2 * (0.5 * 1 + 0.5 * 1) / 1 = 1
    assert weighted_feature_distance(t, s, torch.tensor([0.5, 0.5])).item() == pytest.approx(3.0)


def test_omega_fc_is_half_the_squared_norm_of_weight_and_bias():
    fc = nn.Linear(2, 2)
    with torch.no_grad():
        fc.weight.copy_(torch.tensor([[1.0, 2.0], [0.0, -1.0]]))
        fc.bias.copy_(torch.tensor([3.0, 0.0]))
    assert fc_l2(fc).item() == pytest.approx(0.5 * 6 + 0.5 * 9)


def test_tap_records_only_while_armed_and_stops_after_the_last_layer():
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    calls = []
    net[2].register_forward_hook(lambda m, i, o: calls.append(1))
    tap = LayerTap(net, ["0"], stop_after_last=True)
    x = torch.randn(5, 3)
    net(x)
    assert calls == [1] and tap.outputs == {}
    outs, result = tap.capture(lambda: net(x))
    assert result is None and calls == [1]  # the layers after the tapped one did not run
    assert torch.equal(outs[0], net[0](x))
    with pytest.raises(KeyError):
        LayerTap(net, ["nope"])


def test_behaviour_regularizer_is_zero_at_the_source_and_positive_after_a_change():
    torch.manual_seed(0)
    net = build_backbone("lenet5", 10)
    src = build_backbone("lenet5", 10)
    src.load_state_dict(net.state_dict())
    src.eval()
    info = net.info
    reg = BehaviourRegularizer(net, src, info.omega_c_taps, info.last_fc, torch.full((6,), 1 / 6),
                               [torch.full((16,), 1 / 16)])
    x = torch.randn(4, 1, 32, 32)
    sf, sh = reg.source_maps(x)
    f = net.F(x)
    logits, hooks = reg.classify(f)
    assert logits.shape == (4, 10) and hooks[0].shape == (4, 16, 10, 10)
    assert reg.omega_e(f, sf).item() == 0.0 and reg.omega_c(hooks, sh).item() == 0.0
    with torch.no_grad():
        net.C.conv2.weight.add_(0.1)
    logits, hooks = reg.classify(net.F(x))
    assert reg.omega_c(hooks, sh).item() > 0
    # hook rows beyond the source batch (generated features in DFG's step 5) are ignored
    logits, hooks2 = reg.classify(torch.cat([net.F(x), torch.randn(4, 6, 14, 14)]))
    assert reg.omega_c(hooks2, sh).item() == pytest.approx(reg.omega_c(hooks, sh).item(), rel=1e-6)


# The authors' hook kept the conv's output tensor, which an in-place ReLU(True) then overwrote (LeNet-5
# conv2, VGG-16 conv5_3): Omega_C compares post-ReLU maps on both networks. ResNet-50's conv3 feeds bn3:
# raw on both sides.
POST_ACTIVATION = {"lenet5": True, "vgg16": True, "resnet50": False}


@pytest.mark.parametrize("name", BACKBONES.names())
def test_omega_c_is_exactly_zero_at_a_copy_of_the_source_and_compares_what_the_authors_hooked(name):
    torch.manual_seed(0)
    net = build_backbone(name, 10).eval()
    src = copy.deepcopy(net).eval()
    info = net.info
    taps = info.omega_c_taps
    reg = BehaviourRegularizer(net, src, taps, info.last_fc, torch.full((info.feature_shape[0],), 1.0),
                               [torch.ones(net.get_submodule(h).out_channels) for h in info.hook_layers])
    side = min(info.input_size, 64)  # ResNet-50 pools adaptively: 64 px runs every layer, cheaply
    x = torch.randn(2, info.in_channels, side, side)
    src_feats, src_hooks = reg.source_maps(x)
    feats = net.F(x)
    _, hooks = reg.classify(feats)
    assert len(hooks) == len(src_hooks) == len(info.hook_layers)
    assert reg.omega_c(hooks, src_hooks).item() == 0.0
    assert reg.omega_e(feats, src_feats).item() == 0.0
    for t, s in zip(hooks, src_hooks, strict=True):
        assert torch.equal(t, s)
        assert (bool((s >= 0).all()) and bool((t >= 0).all())) == POST_ACTIVATION[name]
        assert bool((s > 0).any())  # not an all-zero map
    # each tap holds its hook conv's channels, so Omega_C's weights (that conv's ablation) still fit it
    for conv_name, tap, t in zip(info.hook_layers, taps, hooks, strict=True):
        assert t.shape[1] == net.get_submodule(conv_name).out_channels
        assert isinstance(net.get_submodule(tap), nn.ReLU) == POST_ACTIVATION[name]
    with torch.no_grad():  # and it moves when C changes
        net.get_submodule(info.hook_layers[-1]).weight.mul_(1.5)
    _, hooks = reg.classify(net.F(x))
    assert reg.omega_c(hooks, src_hooks).item() > 0
