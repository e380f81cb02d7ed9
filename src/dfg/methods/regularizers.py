"""DELTA-style behaviour regularisers (method.md §2 "Regularisers"; Li et al., ICLR 2019).

For feature maps FM (B x C x H x W) of the target and the (frozen) source network and channel weights w:
    Omega = 1/2 * sum_batch sum_c C * w_c * ||FM_t,c - FM_s,c||^2 / (H * W),   source detached
(the authors' extractor_att_fea_map / reg_att_fea_map). Omega_E applies it to F's output, Omega_C to the
backbone's `omega_c_taps` inside C (the hook convs' outputs, or the in-place ReLU after them where the
authors' hooked tensor was overwritten by one: BackboneInfo.omega_c_outputs), Omega_fc = 1/2 ||last FC weight||^2 + 1/2 ||last FC bias||^2 (reg_classifier).

Hook outputs are captured by forward hooks that record only while a `LayerTap` is armed, so evaluation
and the other forwards of a step pay nothing; on the frozen source network the tap can also stop the
forward right after the last hook layer (nothing after it is needed for the regulariser).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def weighted_feature_distance(target: torch.Tensor, source: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """1/2 sum_b sum_c C w_c ||t_bc - s_bc||^2 / (H W); `source` is detached here. 2-D maps (B x C) are
    treated as H = W = 1."""
    if target.dim() == 2:
        target, source = target[:, :, None], source[:, :, None]
    diff = target.flatten(2) - source.detach().flatten(2)  # B x C x HW
    c, hw = diff.shape[1], diff.shape[2]
    per_channel = diff.pow(2).sum(dim=2)  # B x C
    return 0.5 * (per_channel * weights.to(per_channel.dtype)).sum() * c / hw


def fc_l2(layer: nn.Linear) -> torch.Tensor:
    """Omega_fc: 1/2 ||W||^2 + 1/2 ||b||^2 of the last linear layer."""
    out = 0.5 * layer.weight.pow(2).sum()
    if layer.bias is not None:
        out = out + 0.5 * layer.bias.pow(2).sum()
    return out


class _StopForward(Exception):
    """Raised by a tap after the last layer it needs: the rest of the forward is skipped."""


class LayerTap:
    """Forward hooks on named modules of `net` that record their outputs while armed.

    `tap.capture(fn)` runs fn() with the tap armed and returns the outputs in `names` order. With
    `stop_after_last`, the forward ends once the last named layer ran (for the frozen source network,
    whose logits the regulariser never uses)."""

    def __init__(self, net: nn.Module, names: Sequence[str], stop_after_last: bool = False) -> None:
        self.names = list(names)
        self.outputs: dict[str, torch.Tensor] = {}
        self.armed = False
        self.stop_after_last = stop_after_last
        self._handles = []
        modules = dict(net.named_modules())
        missing = [n for n in self.names if n not in modules]
        if missing:
            raise KeyError(f"hook layers not found in the network: {missing}")
        for name in self.names:
            self._handles.append(modules[name].register_forward_hook(self._hook(name)))

    def _hook(self, name: str):
        def hook(module: nn.Module, inputs, output):
            if not self.armed or name in self.outputs:  # first call only: the real batch's forward
                return
            self.outputs[name] = output
            if self.stop_after_last and len(self.outputs) == len(self.names):
                raise _StopForward
            return

        return hook

    def capture(self, fn) -> tuple[list[torch.Tensor], object]:
        """(hooked outputs in order, fn's return value or None when the forward was cut short)."""
        self.outputs = {}
        self.armed = True
        result = None
        try:
            result = fn()
        except _StopForward:
            pass
        finally:
            self.armed = False
        outs = [self.outputs[n] for n in self.names]
        self.outputs = {}
        return outs, result

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


def hook_names_in_C(taps: Sequence[str]) -> list[str]:
    """SplitNet paths ('C.relu2') -> paths inside net.C ('relu2')."""
    out = []
    for name in taps:
        if not name.startswith("C."):
            raise ValueError(f"hook layer {name!r} is not inside C; Omega_C regularises layers of the classifier")
        out.append(name[2:])
    return out


class BehaviourRegularizer:
    """Omega_E, Omega_C and Omega_fc of one target SplitNet against its frozen source copy.

    Usage per step: `src = reg.source_maps(x)` (no grad; F_s(x) and the source hook outputs), then
    `feats, logits, hooks = reg.target_forward(F_t_features)`; `reg.omega_e(feats, src)`,
    `reg.omega_c(hooks, src)`, `reg.omega_fc()`. The source maps of one batch can be reused for every
    update on that batch in the same step (the source never changes)."""

    def __init__(self, net: nn.Module, source_net: nn.Module, taps: Sequence[str], last_fc: str,
                 extractor_weights: torch.Tensor, classifier_weights: Sequence[torch.Tensor]) -> None:
        """`taps`: the modules whose outputs Omega_C compares (BackboneInfo.omega_c_taps), one channel-weight
        vector each."""
        self.net = net
        self.source_net = source_net
        inner = hook_names_in_C(taps)
        self.target_tap = LayerTap(net.C, inner)
        self.source_tap = LayerTap(source_net.C, inner, stop_after_last=True)
        self.last_fc: nn.Linear = net.get_submodule(last_fc)
        self.extractor_weights = extractor_weights
        self.classifier_weights = list(classifier_weights)
        if len(self.classifier_weights) != len(inner):
            raise ValueError("one channel-weight vector per hook layer is needed")

    @torch.no_grad()
    def source_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats = self.source_net.F(x)
        hooks, _ = self.source_tap.capture(lambda: self.source_net.C(feats))
        return feats, hooks

    def classify(self, feats: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """logits = C_t(feats) and the hook outputs of this forward (the first rows are what Omega_C
        compares with the source maps; rows beyond the source batch are ignored)."""
        hooks, logits = self.target_tap.capture(lambda: self.net.C(feats))
        return logits, hooks

    def omega_e(self, feats_t: torch.Tensor, feats_s: torch.Tensor) -> torch.Tensor:
        return weighted_feature_distance(feats_t, feats_s, self.extractor_weights)

    def omega_c(self, hooks_t: Sequence[torch.Tensor], hooks_s: Sequence[torch.Tensor]) -> torch.Tensor:
        total = hooks_t[0].new_zeros(())
        for t, s, w in zip(hooks_t, hooks_s, self.classifier_weights, strict=True):
            total = total + weighted_feature_distance(t[: s.shape[0]], s, w)
        return total

    def omega_fc(self) -> torch.Tensor:
        return fc_l2(self.last_fc)
