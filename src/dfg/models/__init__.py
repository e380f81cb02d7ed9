"""Backbones, each split into a feature extractor F and a classifier C (prediction = C(F(x))).

A backbone file registers a builder `build(num_classes) -> SplitNet`; the SplitNet carries what the
trainer needs to know about it (input size, feature shape, the conv that produces F's channels, the
hook layers inside C, the last linear layer). Adding a backbone = one file + one import line below.
"""

from dfg.models import lenet5, resnet50, vgg16  # noqa: F401  (registration on import)
from dfg.models.base import BACKBONES, SplitNet, build_backbone, load_source_weights  # noqa: F401
