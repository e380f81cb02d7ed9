"""The F/C split shared by every backbone, and the backbone registry."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from torch import nn

from dfg.models import BACKBONES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackboneInfo:
    """Facts about a backbone that methods and the trainer look up instead of testing its name."""

    input_size: int  # square input side in pixels
    in_channels: int  # 1 (grayscale) or 3
    feature_shape: tuple[int, int, int]  # shape of F(x) for one sample (C, H, W)
    attention_conv: str  # module path (in the SplitNet) of the conv whose output channels are F's channels
    hook_layers: tuple[str, ...]  # convs inside C whose channels Ω_C weighs (their filters are ablated)
    last_fc: str  # module path of the final linear layer (Ω_fc, cRT, new heads)
    # What Ω_C compares, one module per hook layer: the module whose OUTPUT is captured on the target and
    # on the source alike. The authors hook the conv, but where an in-place ReLU(True) follows it (LeNet-5
    # conv2, VGG-16 conv5_3) the tensor their hook keeps is overwritten by it, so they compare post-ReLU
    # maps; those backbones name the ReLU here. Empty: the hook convs' own outputs (ResNet-50's conv3,
    # followed by bn3, is raw in their code too).
    omega_c_outputs: tuple[str, ...] = ()
    mean: tuple[float, ...] = (0.5,)  # normalisation used everywhere in the protocol (method.md §4)
    std: tuple[float, ...] = (0.5,)
    large_images: bool = False  # True: 224 px data through a DataLoader instead of on-device tensors
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.omega_c_outputs and len(self.omega_c_outputs) != len(self.hook_layers):
            raise ValueError("omega_c_outputs needs one module per hook layer")

    @property
    def omega_c_taps(self) -> tuple[str, ...]:
        """Module paths inside C whose outputs Ω_C compares (target and source captured the same way)."""
        return self.omega_c_outputs or self.hook_layers


class SplitNet(nn.Module):
    """A classifier written as C(F(x)), with the backbone's facts attached."""

    def __init__(self, F: nn.Module, C: nn.Module, info: BackboneInfo, name: str) -> None:
        super().__init__()
        self.F = F
        self.C = C
        self.info = info
        self.backbone = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.C(self.F(x))

    @property
    def last_fc(self) -> nn.Linear:
        return self.get_submodule(self.info.last_fc)

    def reset_head(self) -> None:
        """Re-initialise the last linear layer (same shape)."""
        self.last_fc.reset_parameters()


def build_backbone(name: str, num_classes: int) -> SplitNet:
    return BACKBONES.get(name)(num_classes)


def load_source_weights(net: SplitNet, state: dict[str, torch.Tensor]) -> list[str]:
    """Copy every parameter/buffer of `state` whose name and shape match; return the names left at init
    (e.g. a head of a different number of classes)."""
    own = net.state_dict()
    loaded, skipped = {}, []
    for key, value in own.items():
        src = state.get(key)
        if src is not None and src.shape == value.shape:
            loaded[key] = src
        else:
            skipped.append(key)
    net.load_state_dict(loaded, strict=False)
    if skipped:
        log.info("source weights: %d tensors kept at initialisation: %s", len(skipped), ", ".join(skipped))
    return skipped
