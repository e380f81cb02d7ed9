"""Methods, registered by name. Adding a method = one module here + one line in the table below + its
`methods.<name>` block in the params schema. Modules are imported when their method is first looked up
(dfg.registry), so listing the names imports no torch."""

from dfg.registry import Registry

#: name -> module that registers it (alphabetical; tables order methods by the paper, then additions).
METHOD_MODULES: dict[str, str] = {
    name: f"dfg.methods.{name}" for name in (
        "balanced_softmax", "cb_focal", "crt", "delta", "dfg", "difa_cmwgan", "drs", "finetune", "ldam_drw",
        "logit_adjust_posthoc", "original", "remix", "smote_feat",
    )
}

METHODS: Registry = Registry("method", lazy=METHOD_MODULES)
