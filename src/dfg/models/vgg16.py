"""VGG-16 without batch norm (source: CIFAR-10), CIFAR head 25088->4096->512->K, split after
conv1_1, conv1_2, pool (method.md §1). Layers come from torchvision's vgg16 definition."""

from __future__ import annotations

from torch import nn

from dfg.models.base import BACKBONES, BackboneInfo, SplitNet

INFO = BackboneInfo(
    input_size=32,
    in_channels=3,
    feature_shape=(64, 16, 16),
    attention_conv="F.2",  # conv1_2
    hook_layers=("C.body.28",),  # conv5_3 = torchvision features[28]; slicing keeps the indices as names
    last_fc="C.head.6",
    # post-ReLU conv5_3 (torchvision's in-place ReLU, features[29]) on the target and the source alike; the
    # source's forward stops right after it
    omega_c_outputs=("C.body.29",),
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
)


@BACKBONES.register("vgg16")
def build(num_classes: int) -> SplitNet:
    from torchvision.models import (
        vgg16,  # here, not at import: torchvision.models loads torch._dynamo (seconds)
    )

    features = vgg16(weights=None).features  # 31 modules: 13 convs + ReLUs + 5 max-pools
    F = features[:5]
    C = nn.Sequential()
    C.add_module("body", features[5:])
    C.add_module("pool", nn.AdaptiveAvgPool2d((7, 7)))
    C.add_module("flatten", nn.Flatten())
    C.add_module(
        "head",
        nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(),
            nn.Dropout(),
            nn.Linear(4096, 512),
            nn.ReLU(),
            nn.Dropout(),
            nn.Linear(512, num_classes),
        ),
    )
    return SplitNet(F, C, INFO, "vgg16")
