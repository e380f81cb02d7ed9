"""Feature GAN parts: generator shapes and masking, the critic, and the WGAN-GP penalty (analytic value of
a linear critic; the affine shortcut against the plain double backward, values and gradients)."""

from __future__ import annotations

import pytest
import torch

from dfg import DfgError
from dfg.config import load_params
from dfg.methods.gan import (
    FeatureCritic,
    FeatureGenerator,
    critic_loss,
    critic_mean,
    gradient_penalty_affine,
    gradient_penalty_plain,
    transposed_out_side,
)
from dfg.models import lenet5, resnet50, vgg16

INFOS = {"lenet5": lenet5.INFO, "vgg16": vgg16.INFO, "resnet50": resnet50.INFO}

SHAPE = (6, 14, 14)  # LeNet-5's F output


@pytest.fixture(scope="module")
def hp() -> dict:
    return load_params(semantic=False)["methods"]["dfg"]


@pytest.mark.parametrize("backbone", ["lenet5", "vgg16", "resnet50"])
def test_generator_layers_end_at_each_backbones_feature_shape(hp, backbone):
    shape = INFOS[backbone].feature_shape
    side, ch = hp["generator_seed_side"], hp["generator_channels"][backbone]
    for out, k, s, p in hp["generator_layers"][backbone]:
        side, ch = transposed_out_side(side, k, s, p), out
    assert (ch, side, side) == tuple(shape)


@pytest.mark.parametrize("backbone", ["lenet5", "vgg16"])
def test_generator_output_shape_and_attention_mask(hp, backbone):
    shape = INFOS[backbone].feature_shape
    g = FeatureGenerator(hp["noise_dim"][backbone], 10, hp["generator_channels"][backbone], hp["generator_seed_side"],
                         hp["generator_layers"][backbone], shape, slope=1.0)
    z = torch.rand(4, hp["noise_dim"][backbone]) * 2 - 1
    onehot = torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 3]), 10).float()
    mask = torch.ones(4, shape[0])
    mask[:, 0] = 0.0
    mask[1, 1] = 0.5
    out = g(z, onehot, mask)
    assert out.shape == (4, *shape)
    assert torch.count_nonzero(out[:, 0]) == 0
    full = g.model(g.dense(torch.cat([z, onehot], 1)).view(4, g.base_channels, g.seed_side, g.seed_side))
    # BatchNorm in train mode normalises per batch: the same batch twice gives the same output
    assert torch.allclose(out[1, 1], 0.5 * full[1, 1], atol=1e-6)


def test_generator_with_wrong_layers_is_a_clear_error():
    with pytest.raises(DfgError, match="generator_layers"):
        FeatureGenerator(100, 10, 128, 4, [[6, 3, 1, 0]], SHAPE, slope=1.0)


def test_critic_architecture_matches_the_authors():
    d = FeatureCritic(SHAPE, [32, 64, 128], 5, slope=1.0)
    convs = [m for m in d.conv if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding, c.bias) for c in convs] == [
        (6, 32, (5, 5), (2, 2), (2, 2), None), (32, 64, (5, 5), (2, 2), (2, 2), None),
        (64, 128, (5, 5), (2, 2), (2, 2), None)]
    assert d.dense.in_features == 128 * 2 * 2  # 14 -> 7 -> 4 -> 2, as the authors' Linear(128 * 2 * 2, 1)
    assert FeatureCritic((256, 56, 56), [32, 64, 128], 5, 1.0).dense.in_features == 128 * 7 * 7
    assert d.affine and not FeatureCritic(SHAPE, [32, 64, 128], 5, slope=0.2).affine


def _linear_direction(d: FeatureCritic) -> torch.Tensor:
    """w of D(f) = <w, f> + b by forward passes only: w_k = D(e_k) - D(0) (exact for an affine map)."""
    n = SHAPE[0] * SHAPE[1] * SHAPE[2]
    with torch.no_grad():
        basis = torch.eye(n, dtype=torch.float64).view(n, *SHAPE)
        d64 = d.double()
        w = (d64(basis) - d64(torch.zeros(1, *SHAPE, dtype=torch.float64))).flatten()
        d.float()
    return w


def test_gradient_penalty_of_a_linear_critic_equals_its_analytic_value():
    torch.manual_seed(0)
    d = FeatureCritic(SHAPE, [32, 64, 128], 5, slope=1.0)
    w = _linear_direction(d)
    analytic = (w.norm() - 1) ** 2
    real, fake = torch.randn(8, *SHAPE), torch.randn(8, *SHAPE)
    alpha = torch.rand(8, 1, 1, 1)
    plain = gradient_penalty_plain(d, real, fake, alpha)
    shortcut = gradient_penalty_affine(d, real)
    assert float(analytic) > 0.01  # not a trivially zero case
    assert plain.item() == pytest.approx(analytic.item(), rel=1e-4)
    assert shortcut.item() == pytest.approx(analytic.item(), rel=1e-4)


def _grads(d: FeatureCritic, loss: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, list(d.parameters()), allow_unused=False))


@pytest.mark.parametrize(("conditional", "labels"), [(False, None), (True, "same"), (True, "different"),
                                                     (True, "fewer rows than classes")])
def test_affine_shortcut_equals_the_double_backward_path(conditional, labels):
    """Also for the class-conditional critic, whose Wasserstein terms run on class means (some classes
    absent, real and fake labelled differently, or a batch smaller than the class count: plain mean)."""
    torch.manual_seed(1)
    d = FeatureCritic(SHAPE, [32, 64, 128], 5, slope=1.0, num_classes=10 if conditional else 0)
    n = 6 if labels == "fewer rows than classes" else 16
    real, fake = torch.randn(n, *SHAPE), torch.randn(n, *SHAPE) * 0.5 + 0.3
    y = torch.randint(0, 7, (n,)) if conditional else None  # classes 7-9 absent
    y_fake = torch.randint(0, 10, (n,)) if labels == "different" else y
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    loss_fast, gp_fast = critic_loss(d, real, fake, 10.0, g1, shortcut=True, y_real=y, y_fake=y_fake)
    loss_plain, gp_plain = critic_loss(d, real, fake, 10.0, g2, shortcut=False, y_real=y, y_fake=y_fake)
    assert gp_fast.item() == pytest.approx(gp_plain.item(), rel=1e-4)
    assert loss_fast.item() == pytest.approx(loss_plain.item(), rel=1e-4, abs=1e-5)
    for a, b in zip(_grads(d, loss_fast), _grads(d, loss_plain), strict=True):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-6)
    assert g1.get_state().equal(g2.get_state())  # both paths draw the same random numbers
    # the generator side: E[D(f)] on the mean feature, gradients to f equal
    f1, f2 = fake.clone().requires_grad_(True), fake.clone().requires_grad_(True)
    m1, m2 = critic_mean(d, f1, shortcut=True, y=y_fake), critic_mean(d, f2, shortcut=False, y=y_fake)
    assert m1.item() == pytest.approx(m2.item(), rel=1e-4, abs=1e-6)
    m1.backward()
    m2.backward()
    assert torch.allclose(f1.grad, f2.grad, rtol=1e-4, atol=1e-8)


def test_nonlinear_critic_never_takes_the_shortcut():
    torch.manual_seed(2)
    d = FeatureCritic(SHAPE, [32, 64, 128], 5, slope=0.2)
    real, fake = torch.randn(8, *SHAPE), torch.randn(8, *SHAPE)
    a, _ = critic_loss(d, real, fake, 10.0, torch.Generator().manual_seed(0), shortcut=True)
    b, _ = critic_loss(d, real, fake, 10.0, torch.Generator().manual_seed(0), shortcut=False)
    assert a.item() == b.item()
    # and there the per-sample input gradients differ, so the shortcut would be wrong
    f = torch.randn(4, *SHAPE, requires_grad=True)
    (g,) = torch.autograd.grad(d(f).sum(), f)
    assert not torch.allclose(g[0], g[1])
