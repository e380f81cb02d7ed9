"""2x2 max pooling with PyTorch's exact numbers and gradients, faster on the CPU.

torch's CPU max_pool2d kernel is slow on small images: without indices (inference), LeNet-5's two pools
took 44 of the 75 ms of a 512-image forward pass (one thread), so the test evaluation every 100 steps
of a 40 000-step run cost as much as a third of the run; with indices (training), they were 13 % of an
ERM step. Four strided slices and three `torch.maximum` compute the same maxima (max is exact: the
values are bit-identical, ties included), about ten times faster without indices.

With a gradient, the indices are computed from the same slices, following torch's rule for ties (the
first maximum of the window in row-major order gets the whole gradient: F-MNIST's empty background
makes tied conv1 outputs common), and the backward is torch's own max_pool2d_with_indices_backward on
them. Gradients are therefore bit-identical, and whole training runs too (tests/test_pooling.py; 13
methods x 300 steps compared on F-MNIST: metrics, curves and weights identical).

Used only where it is exact: CPU tensors, kernel 2, stride 2, no padding or dilation, even height and
width. Anything else (CUDA included, where cuDNN's pooling is fast) takes nn.MaxPool2d's path.
"""

from __future__ import annotations

import torch
from torch import nn


def _quarters(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The four inputs of every 2x2 window, in the row-major order torch's kernel visits them."""
    return x[..., 0::2, 0::2], x[..., 0::2, 1::2], x[..., 1::2, 0::2], x[..., 1::2, 1::2]


_WINDOW_STARTS: dict[tuple[int, int], torch.Tensor] = {}


def _window_starts(h: int, w: int) -> torch.Tensor:
    """[H/2, W/2] flat index (within an H x W plane) of each window's top-left input."""
    if (h, w) not in _WINDOW_STARTS:
        _WINDOW_STARTS[(h, w)] = (torch.arange(h // 2).view(-1, 1) * (2 * w) + torch.arange(w // 2).view(1, -1) * 2)
    return _WINDOW_STARTS[(h, w)]


class _MaxPool2x2(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        a, b, c, d = _quarters(x)
        top, bottom = torch.maximum(a, b), torch.maximum(c, d)
        out = torch.maximum(top, bottom)
        # torch's choice: the first maximum in the order a, b, c, d (the top row wins a tie between rows).
        w = x.shape[-1]
        offset = torch.where(top >= bottom, (a < b).long(), (c < d).long() + w)
        ctx.save_for_backward(x, _window_starts(x.shape[-2], w) + offset)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        x, indices = ctx.saved_tensors
        return torch.ops.aten.max_pool2d_with_indices_backward(grad, x, [2, 2], [2, 2], [0, 0], [1, 1], False,
                                                               indices)


def max_pool_2x2(x: torch.Tensor) -> torch.Tensor:
    """torch.nn.functional.max_pool2d(x, 2) for a tensor [N, C, H, W] with even H and W."""
    if x.requires_grad and torch.is_grad_enabled():
        return _MaxPool2x2.apply(x)
    a, b, c, d = _quarters(x)
    return torch.maximum(torch.maximum(a, b), torch.maximum(c, d))


class MaxPool2x2(nn.MaxPool2d):
    """nn.MaxPool2d(2) with the fast path above (no parameters, no buffers: state dicts are unchanged)."""

    def __init__(self) -> None:
        super().__init__(kernel_size=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and x.dim() == 4 and x.shape[-1] % 2 == 0 and x.shape[-2] % 2 == 0:
            return max_pool_2x2(x)
        return super().forward(x)
