"""Methods, registered by name. Adding a method = one module here + one import line below + its
`methods.<name>` block in the params schema."""

from dfg.registry import Registry

METHODS: Registry = Registry("method")

# Registration on import. Keep this list sorted by the paper's order, then additions.
from dfg.methods import original, finetune  # noqa: E402,F401
from dfg.methods import delta, difa_cmwgan, dfg  # noqa: F401
from dfg.methods import balanced_softmax, cb_focal, crt, drs, ldam_drw, logit_adjust_posthoc, remix, smote_feat  # noqa: F401
