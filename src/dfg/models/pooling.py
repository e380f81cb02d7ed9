"""2x2 max pooling with PyTorch's exact numbers, ten times faster on the CPU where no gradient is needed.

torch's CPU max_pool2d kernel is slow on small images when it runs without indices (inference): LeNet-5's
two pools took 44 of the 75 ms of a 512-image forward pass (one thread), so the test evaluation every
100 steps of a 40 000-step run cost as much as a third of the run. Four strided slices and three
`torch.maximum` compute the same maxima (max is exact: the values are bit-identical, ties included).

The fast path is taken only where it is exact and faster: a CPU tensor that needs no gradient (evaluation,
frozen source networks, frozen feature extractors), kernel 2, stride 2, no padding, even height and width.
With a gradient, torch's kernel runs: its backward is cheap and decides which of tied inputs receives
the gradient, and a re-implementation of that was measured slower than the kernel it replaced. CUDA
always takes torch's path (cuDNN's pooling is fast).
"""

from __future__ import annotations

import torch
from torch import nn


def max_pool_2x2(x: torch.Tensor) -> torch.Tensor:
    """torch.nn.functional.max_pool2d(x, 2) for a tensor [..., H, W] with even H and W (values only)."""
    a, b = x[..., 0::2, 0::2], x[..., 0::2, 1::2]
    c, d = x[..., 1::2, 0::2], x[..., 1::2, 1::2]
    return torch.maximum(torch.maximum(a, b), torch.maximum(c, d))


class MaxPool2x2(nn.MaxPool2d):
    """nn.MaxPool2d(2) with the fast path above (no parameters, no buffers: state dicts are unchanged)."""

    def __init__(self) -> None:
        super().__init__(kernel_size=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.device.type == "cpu" and x.dim() == 4 and x.shape[-1] % 2 == 0 and x.shape[-2] % 2 == 0
                and not (x.requires_grad and torch.is_grad_enabled())):
            return max_pool_2x2(x)
        return super().forward(x)
