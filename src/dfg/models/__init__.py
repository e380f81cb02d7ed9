"""Backbones, each split into a feature extractor F and a classifier C (prediction = C(F(x))).

A backbone file registers a builder `build(num_classes) -> SplitNet`; the SplitNet carries what the
trainer needs to know about it (input size, feature shape, the conv that produces F's channels, the
hook layers inside C, the last linear layer). Adding a backbone = one file + one line in the table below.
Backbone modules (and torch, torchvision) are imported when first needed: listing the names is free.
"""

from dfg.registry import Registry

#: name -> module that registers its builder
BACKBONE_MODULES: dict[str, str] = {name: f"dfg.models.{name}" for name in ("lenet5", "resnet50", "vgg16")}

BACKBONES: Registry = Registry("backbone", lazy=BACKBONE_MODULES)

#: Names re-exported from dfg.models.base (which imports torch) on first use.
_FROM_BASE = ("BackboneInfo", "SplitNet", "build_backbone", "load_source_weights")


def __getattr__(name: str):
    if name in _FROM_BASE:
        from dfg.models import base

        return getattr(base, name)
    raise AttributeError(f"module 'dfg.models' has no attribute {name!r}")
