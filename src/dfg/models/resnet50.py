"""ResNet-50 (source: torchvision's ImageNet weights), split after layer1 (method.md §1).

Module names keep torchvision's (F.conv1, F.layer1, C.layer2, ..., C.fc) so an ImageNet state dict maps
onto F and C by prefix; see `imagenet_to_split`. The FC head is new on every target task."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from dfg.models.base import BACKBONES, BackboneInfo, SplitNet

INFO = BackboneInfo(
    input_size=224,
    in_channels=3,
    feature_shape=(256, 56, 56),
    attention_conv="F.layer1.2.conv3",
    hook_layers=("C.layer2.3.conv3", "C.layer3.5.conv3", "C.layer4.2.conv3"),
    last_fc="C.fc",
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    large_images=True,
)

F_PARTS = ("conv1", "bn1", "relu", "maxpool", "layer1")
C_PARTS = ("layer2", "layer3", "layer4", "avgpool")


@BACKBONES.register("resnet50")
def build(num_classes: int) -> SplitNet:
    from torchvision.models import (
        resnet50,  # here, not at import: torchvision.models loads torch._dynamo (seconds)
    )

    net = resnet50(weights=None)
    F = nn.Sequential(OrderedDict((k, getattr(net, k)) for k in F_PARTS))
    C = nn.Sequential(
        OrderedDict([*((k, getattr(net, k)) for k in C_PARTS), ("flatten", nn.Flatten()),
                     ("fc", nn.Linear(2048, num_classes))])
    )
    return SplitNet(F, C, INFO, "resnet50")


def imagenet_to_split(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename torchvision resnet50 keys ('layer2.0.conv1.weight') to SplitNet keys ('C.layer2.0...')."""
    out = {}
    for key, value in state.items():
        top = key.split(".", 1)[0]
        prefix = "F." if top in F_PARTS else "C."
        out[prefix + key] = value
    return out
