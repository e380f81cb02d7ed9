"""Method variants: a registered method run under a name of its own, with some hyper-parameters changed
and a label of its own (an ablation such as DFG with a slope-0.2 critic).

params.yaml (or a suite file):

    variants:
      dfg_slope02:
        of: dfg                                   # the registered method that runs
        label: "DFG, slope-0.2 critic (ablation)" # its name in tables and figures
        set: {activation_slope: 0.2}              # merged over methods.dfg

The variant's name is used like a method's everywhere (run.methods, results and model paths, tables);
its hyper-parameters are `methods.<of>` with `set` merged over them, validated against `methods.<of>`'s
schema. metrics.json records `variant_of` beside `method`, so reports can tell what ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dfg import DfgError
from dfg.config import deep_merge
from dfg.methods import METHODS


@dataclass(frozen=True)
class MethodSpec:
    """What `run.methods` entry `name` runs: the class, its hyper-parameters and its display label."""

    name: str  # as in run.methods, paths and tables
    base: str  # the registered method (== name unless a variant)
    cls: Any  # the Method subclass
    hp: dict
    label: str
    variant: bool


def variants(params: dict) -> dict[str, dict]:
    return dict(params.get("variants") or {})


def known_methods(params: dict) -> list[str]:
    """Registered methods and the variants `params` defines."""
    return sorted({*METHODS.names(), *variants(params)})


def method_spec(params: dict, name: str) -> MethodSpec:
    """The MethodSpec of `name`, a registered method or a variant; an unknown name is a DfgError that
    lists the known ones."""
    var = variants(params)
    if name in var:
        v = var[name]
        base = v["of"]
        if base not in METHODS:
            raise DfgError(f"invalid parameter variants.{name}.of: {base!r} is not a registered method; "
                           f"known: {', '.join(METHODS.names())}")
        hp = deep_merge(params.get("methods", {}).get(base, {}) or {}, v.get("set") or {})
        return MethodSpec(name, base, METHODS.get(base), hp, str(v["label"]), True)
    if name not in METHODS:
        raise DfgError(f"unknown method {name!r}; known: {', '.join(known_methods(params))}")
    cls = METHODS.get(name)
    return MethodSpec(name, name, cls, params.get("methods", {}).get(name, {}) or {}, cls.label or name, False)
