"""LeNet-5 (source: EMNIST-digits or synthdigits), split after conv1+pool (method.md §1)."""

from __future__ import annotations

from torch import nn

from dfg.models.base import BACKBONES, BackboneInfo, SplitNet
from dfg.models.pooling import MaxPool2x2

INFO = BackboneInfo(
    input_size=32,
    in_channels=1,
    feature_shape=(6, 14, 14),
    attention_conv="F.conv1",
    hook_layers=("C.conv2",),
    last_fc="C.fc3",
    omega_c_outputs=("C.relu2",),  # post-ReLU conv2, as the authors' hook held it (their ReLU is in place)
)


@BACKBONES.register("lenet5")
def build(num_classes: int) -> SplitNet:
    F = nn.Sequential()
    F.add_module("conv1", nn.Conv2d(1, 6, 5))
    F.add_module("relu1", nn.ReLU())
    F.add_module("pool1", MaxPool2x2())  # nn.MaxPool2d(2), exact and faster on the CPU
    C = nn.Sequential()
    C.add_module("conv2", nn.Conv2d(6, 16, 5))
    C.add_module("relu2", nn.ReLU())
    C.add_module("pool2", MaxPool2x2())  # nn.MaxPool2d(2), exact and faster on the CPU
    C.add_module("flatten", nn.Flatten())
    C.add_module("fc1", nn.Linear(400, 1024))
    C.add_module("relu3", nn.ReLU())
    C.add_module("fc2", nn.Linear(1024, 128))
    C.add_module("relu4", nn.ReLU())
    C.add_module("fc3", nn.Linear(128, num_classes))
    return SplitNet(F, C, INFO, "lenet5")
