"""Every registered backbone: F/C shapes and facts, and C(F(x)) equal to an unsplit reference network
with the same weights (torchvision's VGG-16 / ResNet-50, a hand-written LeNet-5)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as nnf
from torch import nn
from torchvision.models import resnet50, vgg16

from dfg.models import BACKBONES, build_backbone, load_source_weights
from dfg.models.resnet50 import imagenet_to_split

K = 7


@pytest.mark.parametrize("name", BACKBONES.names())
def test_split_shapes_and_facts(name):
    torch.manual_seed(0)
    net = build_backbone(name, K).eval()
    info = net.info
    x = torch.randn(2, info.in_channels, info.input_size, info.input_size)
    with torch.no_grad():
        f = net.F(x)
        out = net.C(f)
    assert tuple(f.shape) == (2, *info.feature_shape)
    assert tuple(out.shape) == (2, K)
    assert torch.equal(out, net(x))
    assert isinstance(net.last_fc, nn.Linear) and net.last_fc.out_features == K
    conv = net.get_submodule(info.attention_conv)
    assert isinstance(conv, nn.Conv2d) and conv.out_channels == info.feature_shape[0]
    assert info.attention_conv.startswith("F.")
    for layer in info.hook_layers:  # Ω_C regularises conv outputs inside C (method.md §2)
        assert layer.startswith("C.") and isinstance(net.get_submodule(layer), nn.Conv2d)


def lenet_reference(net, x):
    """LeNet-5 written out with functional ops on the SplitNet's own parameters."""
    p = dict(net.named_parameters())
    h = nnf.max_pool2d(nnf.relu(nnf.conv2d(x, p["F.conv1.weight"], p["F.conv1.bias"])), 2)
    h = nnf.max_pool2d(nnf.relu(nnf.conv2d(h, p["C.conv2.weight"], p["C.conv2.bias"])), 2).flatten(1)
    h = nnf.relu(nnf.linear(h, p["C.fc1.weight"], p["C.fc1.bias"]))
    h = nnf.relu(nnf.linear(h, p["C.fc2.weight"], p["C.fc2.bias"]))
    return nnf.linear(h, p["C.fc3.weight"], p["C.fc3.bias"])


def test_lenet5_equals_unsplit_reference():
    torch.manual_seed(1)
    net = build_backbone("lenet5", K).eval()
    x = torch.randn(4, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net.C(net.F(x)), lenet_reference(net, x))


def test_vgg16_equals_torchvision_vgg16_with_cifar_head():
    torch.manual_seed(2)
    net = build_backbone("vgg16", K).eval()
    ref = vgg16(weights=None)
    ref.classifier = nn.Sequential(nn.Linear(25088, 4096), nn.ReLU(), nn.Dropout(), nn.Linear(4096, 512), nn.ReLU(),
                                   nn.Dropout(), nn.Linear(512, K))
    state = {}
    for key, value in net.state_dict().items():
        part, rest = key.split(".", 1)
        if part == "F":
            state[f"features.{rest}"] = value
        elif rest.startswith("body."):  # Sequential slicing keeps torchvision's indices as names
            state[rest.replace("body.", "features.", 1)] = value
        else:
            state[rest.replace("head.", "classifier.", 1)] = value
    ref.load_state_dict(state)  # strict: every tensor of torchvision's VGG-16 has its counterpart
    ref.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net.C(net.F(x)), ref(x))


def test_vgg16_hook_is_conv5_3():
    net = build_backbone("vgg16", K)
    convs = [name for name, m in net.C.named_modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 11 and f"C.{convs[-1]}" == net.info.hook_layers[0] == "C.body.28"


def test_resnet50_equals_torchvision_resnet50():
    torch.manual_seed(3)
    ref = resnet50(weights=None, num_classes=K).eval()
    net = build_backbone("resnet50", K)
    net.load_state_dict(imagenet_to_split(ref.state_dict()))  # strict: names map one to one
    net.eval()
    x = torch.randn(2, 3, 64, 64)  # any size: adaptive pooling; 224 is covered by the shape test
    with torch.no_grad():
        torch.testing.assert_close(net.C(net.F(x)), ref(x))


def test_load_source_weights_keeps_a_head_of_other_shape_at_init():
    torch.manual_seed(4)
    source = build_backbone("lenet5", 10)
    target = build_backbone("lenet5", K)
    head_before = target.last_fc.weight.detach().clone()
    skipped = load_source_weights(target, source.state_dict())
    assert skipped == ["C.fc3.weight", "C.fc3.bias"]
    assert torch.equal(target.F.conv1.weight, source.F.conv1.weight)
    assert torch.equal(target.C.fc2.weight, source.C.fc2.weight)
    assert torch.equal(target.last_fc.weight, head_before)


def test_reset_head_changes_only_the_last_layer():
    torch.manual_seed(5)
    net = build_backbone("lenet5", K)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.reset_head()
    changed = {k for k, v in net.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"C.fc3.weight", "C.fc3.bias"}
