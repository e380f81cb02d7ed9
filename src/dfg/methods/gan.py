"""Feature-space GAN parts shared by DFG and DIFA+CMWGAN (method.md §2, §7): the generator G(z, y), the
WGAN-GP critic D(f), noise sampling and the gradient penalty.

The architecture follows the authors' model.py: G = Linear -> BatchNorm1d -> reshape to
(base, side, side) -> transposed convs (each but the last followed by BatchNorm2d and the activation)
-> Tanh -> BatchNorm2d; D = three bias-free Conv2d k5 s2 p2 (C -> 32 -> 64 -> 128), each followed by
the activation, then Linear(-> 1). The authors wrote the activation as `LeakyReLU(True)`, i.e. negative
slope 1 = identity; that is the faithful default (`activation_slope: 1.0`) and 0.2 is the natural fix.

With slope 1 the critic is affine in its input: D(f) = <w, f> + b. Two exact consequences (§7):
- its input gradient is the same w for every f, so the WGAN-GP penalty mean_i (||grad D(f_i)|| - 1)^2
  equals (||w|| - 1)^2, obtained from ONE probe instead of a double backward over the batch;
- mean_i D(f_i) = D(mean_i f_i), so the Wasserstein terms need D on one averaged feature per side.
A class-conditional (projection) critic is affine in f for each class, so the same holds per class:
w_y from one probe per class present, and mean_i D(f_i, y_i) = (1/n) sum_c n_c D(mean of class c, c),
D on at most K class means instead of n samples (DIFA's critics: 10 rows instead of 64).
`critic_loss` and `critic_mean` use these when `shortcut` is on and the critic is affine; otherwise the
plain computation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dfg import DfgError

#: The authors' gradients get `+ 1e-16` before the norm (train.py compute_gradient_penalty); kept so
#: both penalty paths return the authors' value to the last bit that float32 can hold.
GP_EPS = 1e-16


def activation(slope: float) -> nn.Module:
    """LeakyReLU(slope); slope 1 is the identity, so it is built as nn.Identity (same function, no
    elementwise pass forward or backward)."""
    return nn.Identity() if slope == 1.0 else nn.LeakyReLU(slope)


def transposed_out_side(side: int, kernel: int, stride: int, padding: int) -> int:
    """Output side of ConvTranspose2d (no output_padding, dilation 1)."""
    return (side - 1) * stride - 2 * padding + kernel


class FeatureGenerator(nn.Module):
    """G(z, y) -> a feature map of F's output shape, multiplied channel-wise by an attention row.

    `layers` are [out_channels, kernel, stride, padding] per transposed conv (params
    `generator_layers[backbone]`); their last out_channels and final side must equal F's feature shape."""

    def __init__(self, noise_dim: int, num_classes: int, base_channels: int, seed_side: int,
                 layers: Sequence[Sequence[int]], feature_shape: Sequence[int], slope: float,
                 conditional_input: bool = True) -> None:
        super().__init__()
        self.noise_dim = noise_dim
        self.num_classes = num_classes
        self.base_channels = base_channels
        self.seed_side = seed_side
        in_dim = noise_dim + (num_classes if conditional_input else 0)
        self.dense = nn.Sequential(nn.Linear(in_dim, base_channels * seed_side * seed_side),
                                   nn.BatchNorm1d(base_channels * seed_side * seed_side))
        blocks: list[nn.Module] = []
        ch, side = base_channels, seed_side
        for i, (out, k, s, p) in enumerate(layers):
            blocks.append(nn.ConvTranspose2d(ch, out, k, stride=s, padding=p, bias=False))
            if i < len(layers) - 1:
                blocks += [nn.BatchNorm2d(out), activation(slope)]
            ch, side = out, transposed_out_side(side, k, s, p)
        blocks += [nn.Tanh(), nn.BatchNorm2d(ch)]
        self.model = nn.Sequential(*blocks)
        if (ch, side, side) != tuple(feature_shape):
            raise DfgError(f"generator layers {list(map(list, layers))} produce ({ch}, {side}, {side}) but F "
                           f"outputs {tuple(feature_shape)}; fix generator_layers for this backbone in params.yaml")

    def forward(self, z: torch.Tensor, onehot: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.dense(torch.cat([z, onehot], dim=1) if onehot is not None else z)
        out = self.model(h.view(h.shape[0], self.base_channels, self.seed_side, self.seed_side))
        return out if mask is None else out * mask[:, :, None, None]


class FeatureCritic(nn.Module):
    """D(f): bias-free strided convs + activation, then Linear(-> 1). With `num_classes` it is a
    projection critic D(f, y) = Linear(phi(f)) + <E[y], phi(f)> (class-conditional, DIFA+CMWGAN)."""

    def __init__(self, feature_shape: Sequence[int], channels: Sequence[int], kernel: int, slope: float,
                 num_classes: int = 0) -> None:
        super().__init__()
        ch, side = feature_shape[0], feature_shape[1]
        layers: list[nn.Module] = []
        for out in channels:
            layers += [nn.Conv2d(ch, out, kernel, stride=2, padding=kernel // 2, bias=False), activation(slope)]
            ch, side = out, (side + 2 * (kernel // 2) - kernel) // 2 + 1
        self.conv = nn.Sequential(*layers)
        self.dense = nn.Linear(ch * side * side, 1)
        self.embed = nn.Embedding(num_classes, ch * side * side) if num_classes else None
        self.slope = slope

    @property
    def affine(self) -> bool:
        """True when D is an affine function of f (identity activations); see the module docstring."""
        return self.slope == 1.0

    def forward(self, f: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv(f).flatten(1)
        out = self.dense(h)
        if self.embed is not None:
            out = out + (self.embed(y) * h).sum(dim=1, keepdim=True)
        return out


# -- noise --------------------------------------------------------------------------------------------------
def sample_noise(batch: int, noise_dim: int, classes: torch.Tensor, gen: torch.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(z ~ U(-1, 1)^noise_dim, labels drawn uniformly from `classes`), on the generator's device
    (utils.z_sampler of the authors, with a seeded generator instead of global NumPy state)."""
    dev = classes.device
    z = torch.rand(batch, noise_dim, device=dev, generator=gen) * 2 - 1
    y = classes[torch.randint(0, classes.numel(), (batch,), device=dev, generator=gen)]
    return z, y


# -- gradient penalty ----------------------------------------------------------------------------------
def gradient_penalty_plain(critic: FeatureCritic, real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor,
                           y: torch.Tensor | None = None) -> torch.Tensor:
    """WGAN-GP: mean_i (||grad_f D(f_i)|| - 1)^2 on f_i = alpha_i real_i + (1 - alpha_i) fake_i, with a
    double backward (create_graph) so the penalty trains D. Works for any activation."""
    inter = (alpha * real + (1 - alpha) * fake).detach().requires_grad_(True)
    out = critic(inter, y)
    (grad,) = torch.autograd.grad(out.sum(), inter, create_graph=True)
    norms = (grad.flatten(1) + GP_EPS).norm(2, dim=1)
    return ((norms - 1) ** 2).mean()


def gradient_penalty_affine(critic: FeatureCritic, like: torch.Tensor, y: torch.Tensor | None = None,
                            fixed_shape: bool = False) -> torch.Tensor:
    """The same penalty for an affine critic: grad_f D = w (per class for a projection critic), so the
    penalty is mean_i (||w_{y_i}|| - 1)^2 from one probe per class present. Exact only when critic.affine.
    `fixed_shape`: one probe per class of the critic instead (no data-dependent shape, no host sync: what a
    recorded step needs); the same value up to float rounding."""
    if y is None:
        probe = torch.zeros((1, *like.shape[1:]), device=like.device, dtype=like.dtype, requires_grad=True)
        (grad,) = torch.autograd.grad(critic(probe).sum(), probe, create_graph=True)
        return ((grad.flatten(1) + GP_EPS).norm(2, dim=1) - 1).pow(2).squeeze(0)
    if fixed_shape:
        k = critic.embed.num_embeddings
        probe = torch.zeros((k, *like.shape[1:]), device=like.device, dtype=like.dtype, requires_grad=True)
        (grad,) = torch.autograd.grad(critic(probe, torch.arange(k, device=like.device)).sum(), probe,
                                      create_graph=True)
        return ((grad.flatten(1) + GP_EPS).norm(2, dim=1) - 1).pow(2)[y].mean()
    present, inverse = torch.unique(y, return_inverse=True)
    probe = torch.zeros((present.numel(), *like.shape[1:]), device=like.device, dtype=like.dtype,
                        requires_grad=True)
    (grad,) = torch.autograd.grad(critic(probe, present).sum(), probe, create_graph=True)
    per_class = ((grad.flatten(1) + GP_EPS).norm(2, dim=1) - 1).pow(2)
    return per_class[inverse].mean()


def class_mean_critic(critic: FeatureCritic, f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """mean_i D(f_i, y_i) of an affine conditional critic from its K class means (exact by linearity; the
    gradient to each f_i is w_{y_i} / n as in the plain mean). Plain when K >= n: no rows to save."""
    k, n = critic.embed.num_embeddings, f.shape[0]
    if k >= n:
        return critic(f, y).mean()
    counts = f.new_zeros(k).index_add_(0, y, f.new_ones(n))  # = bincount, without its host sync on CUDA
    sums = f.new_zeros((k, *f.shape[1:])).index_add(0, y, f)
    means = sums / counts.clamp(min=1).view(k, *([1] * (f.dim() - 1)))  # absent classes: weight 0 below
    out = critic(means, torch.arange(k, device=f.device)).squeeze(1)
    return (out * counts).sum() / n


def critic_loss(critic: FeatureCritic, real: torch.Tensor, fake: torch.Tensor, gp_weight: float,
                gen: torch.Generator, shortcut: bool, y_real: torch.Tensor | None = None,
                y_fake: torch.Tensor | None = None, fixed_shape: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(WGAN-GP critic loss -E[D(real)] + E[D(fake)] + gp_weight * GP, the GP value). `real` and `fake`
    carry no graph. alpha is drawn in both paths so the RNG stream does not depend on the path.
    For a conditional critic, interpolates take the real samples' labels (real and fake are paired
    by position with the same labels there). `fixed_shape`: see gradient_penalty_affine."""
    alpha = torch.rand((real.shape[0], 1, 1, 1), device=real.device, generator=gen)
    if shortcut and critic.affine:
        if y_real is None:
            both = critic(torch.stack([real.mean(0), fake.mean(0)]))
            w_dist = both[1, 0] - both[0, 0]
        else:
            w_dist = class_mean_critic(critic, fake, y_fake) - class_mean_critic(critic, real, y_real)
        gp = gradient_penalty_affine(critic, real, y_real, fixed_shape)
    else:
        n = real.shape[0]
        out = critic(torch.cat([real, fake]), None if y_real is None else torch.cat([y_real, y_fake]))
        w_dist = out[n:].mean() - out[:n].mean()
        gp = gradient_penalty_plain(critic, real, fake, alpha, y_real)
    return w_dist + gp_weight * gp, gp


def critic_mean(critic: FeatureCritic, f: torch.Tensor, shortcut: bool, y: torch.Tensor | None = None
                ) -> torch.Tensor:
    """E[D(f)] with gradients to f (generator / encoder side); one averaged probe (per class for a
    conditional critic) when exact."""
    if shortcut and critic.affine:
        if y is None:
            return critic(f.mean(0, keepdim=True)).squeeze()
        return class_mean_critic(critic, f, y)
    return critic(f, y).mean()
