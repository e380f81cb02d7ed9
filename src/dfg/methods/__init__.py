"""Methods, registered by name. Adding a method = one module here + one import line below + its
`methods.<name>` block in the params schema."""

from dfg.registry import Registry

METHODS: Registry = Registry("method")

# Registration on import (alphabetical; tables order methods by the paper, then additions).
from dfg.methods import (  # noqa: F401
    balanced_softmax,
    cb_focal,
    crt,
    delta,
    dfg,
    difa_cmwgan,
    drs,
    finetune,
    ldam_drw,
    logit_adjust_posthoc,
    original,
    remix,
    smote_feat,
)
