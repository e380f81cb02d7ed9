"""ORIGINAL (method.md §3): the backbone from random initialisation, trained with cross-entropy on the
imbalanced target split. It loads no source model, so its runs never wait for pre-training."""

from __future__ import annotations

from typing import ClassVar

from dfg.methods import METHODS
from dfg.methods.finetune import CrossEntropyMethod


@METHODS.register("original")
class Original(CrossEntropyMethod):
    needs_source: ClassVar[bool] = False
    label: ClassVar[str] = "ORIGINAL"
