"""Parameters: params.yaml (+ the active suite's overlay), validated by the closed JSON schema in
workflow/schemas/params.schema.yaml, defaults filled from that schema.

The Snakefile (workflow/rules/common.smk) and the `dfg` CLI both call `load_params`, so the workflow and
every job see the same numbers. The suite is chosen by the `suite` key: `params.yaml` itself is the
`demo` suite; any other name merges `workflow/suites/<name>.yaml` over it.
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any

import yaml

from dfg import DfgError

DEFAULT_PARAMS = Path("params.yaml")
SCHEMA_RELPATH = Path("workflow/schemas/params.schema.yaml")
SUITES_RELPATH = Path("workflow/suites")
BASE_SUITE = "demo"


def deep_merge(base: dict, over: dict) -> dict:
    """Recursive dict merge: mappings merge key by key, anything else (lists included) is replaced."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def project_root(params_path: str | Path = DEFAULT_PARAMS) -> Path:
    return Path(params_path).resolve().parent


def _read_yaml(path: Path) -> dict:
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise DfgError(f"parameter file {path} not found; run from the project root or pass --params") from None
    except yaml.YAMLError as e:
        raise DfgError(f"{path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise DfgError(f"{path} must hold a mapping at top level")
    return data


def suite_file(suite: str, root: Path) -> Path:
    return root / SUITES_RELPATH / f"{suite}.yaml"


def available_suites(root: Path) -> list[str]:
    return sorted({BASE_SUITE} | {p.stem for p in (root / SUITES_RELPATH).glob("*.yaml")})


def resolve(raw: dict, root: Path, suite: str | None = None) -> dict:
    """Merge the suite overlay named by `suite` (or raw['suite']) over `raw`."""
    suite = suite or raw.get("suite", BASE_SUITE)
    merged = copy.deepcopy(raw)
    if suite != BASE_SUITE:
        path = suite_file(suite, root)
        if not path.exists():
            raise DfgError(
                f"unknown suite {suite!r}: no {path.relative_to(root)}; "
                f"known suites: {', '.join(available_suites(root))}"
            )
        merged = deep_merge(merged, _read_yaml(path))
    merged["suite"] = suite
    return merged


def load_schema(root: Path) -> dict:
    return _read_yaml(root / SCHEMA_RELPATH)


def _fill_defaults_validator():
    import jsonschema

    base = jsonschema.Draft7Validator

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub and prop not in instance:
                    instance[prop] = copy.deepcopy(sub["default"])
        yield from base.VALIDATORS["properties"](validator, properties, instance, schema)

    return jsonschema.validators.extend(base, {"properties": set_defaults})


def _describe(err) -> str:
    """One schema error as 'KEY: what is wrong', naming a misspelt key and the keys it may have meant."""
    path = ".".join(str(p) for p in err.absolute_path)
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = list((err.schema.get("properties") or {}).keys())
        parts = []
        for key in sorted(k for k in err.instance if k not in allowed):
            close = difflib.get_close_matches(str(key), allowed, n=2, cutoff=0.6)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else \
                f"; known keys: {', '.join(allowed)}" if allowed else ""
            parts.append(f"{'.'.join(filter(None, [path, str(key)]))}: unknown key {key!r}{hint}")
        if parts:
            return "\n  ".join(parts)
    return f"{path or '(top level)'}: {err.message}"


def validate(params: dict, schema: dict, source: str = "params.yaml") -> dict:
    """Validate in place (filling defaults); raise one DfgError that lists every error, each naming the
    offending key (and, for a misspelt key, the keys it may have meant)."""
    validator_cls = _fill_defaults_validator()
    errors = sorted(validator_cls(schema).iter_errors(params), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        if len(errors) == 1:
            raise DfgError(f"{source}: invalid parameter {_describe(errors[0])}")
        lines = "\n  ".join(_describe(e) for e in errors)
        raise DfgError(f"{source}: {len(errors)} invalid parameters:\n  {lines}")
    return params


def check_semantics(params: dict) -> None:
    """Checks the schema cannot express: names that must exist in a registry, counts against classes."""
    from dfg.data.registry import DATASETS
    from dfg.methods import METHODS
    from dfg.models import BACKBONES

    def fail(key: str, msg: str) -> None:
        raise DfgError(f"params: invalid parameter {key}: {msg}")

    for name, src in params.get("sources", {}).items():
        if src["backbone"] not in BACKBONES:
            fail(f"sources.{name}.backbone", f"unknown backbone {src['backbone']!r}; known: {BACKBONES.names()}")
        if src.get("dataset") and src["dataset"] not in DATASETS:
            fail(f"sources.{name}.dataset", f"unknown dataset {src['dataset']!r}; known: {DATASETS.names()}")
    for name, task in params.get("tasks", {}).items():
        if task["dataset"] not in DATASETS:
            fail(f"tasks.{name}.dataset", f"unknown dataset {task['dataset']!r}; known: {DATASETS.names()}")
        if task["source"] not in params.get("sources", {}):
            fail(f"tasks.{name}.source", f"unknown source {task['source']!r}; define it under sources")
        n_classes = DATASETS.get(task["dataset"]).num_classes
        n_min = task["split"].get("n_minority", 0)
        if n_min > n_classes:
            fail(f"tasks.{name}.split.n_minority", f"{n_min} minority classes but {task['dataset']} has {n_classes}")
    from dfg.methods.variants import known_methods

    for name, var in (params.get("variants") or {}).items():
        if name in METHODS:
            fail(f"variants.{name}", f"{name!r} is a registered method; give the variant another name")
        if var["of"] not in METHODS:
            fail(f"variants.{name}.of", f"unknown method {var['of']!r}; known: {METHODS.names()}")
    run = params.get("run", {})
    for t in run.get("tasks", []):
        if t not in params.get("tasks", {}):
            fail("run.tasks", f"unknown task {t!r}; known: {sorted(params.get('tasks', {}))}")
    for m in run.get("methods", []):
        if m not in known_methods(params):
            fail("run.methods", f"unknown method {m!r}; known: {known_methods(params)}")


def validate_variants(params: dict, schema: dict, source: str) -> None:
    """Each variant's hyper-parameters (methods.<of> with `set` merged over them) against methods.<of>'s
    schema, so a misspelt key in `set` fails like one in methods.<of>."""
    method_schemas = schema["properties"]["methods"]["properties"]
    for name, var in (params.get("variants") or {}).items():
        sub = method_schemas.get(var["of"])
        if sub is None:
            continue  # an unknown base method: check_semantics names it
        merged = deep_merge(params.get("methods", {}).get(var["of"], {}) or {}, var.get("set") or {})
        validate(merged, {**sub, "definitions": schema.get("definitions", {})},
                 source=f"{source}: variants.{name}.set (over methods.{var['of']})")


def load_params(
    path: str | Path = DEFAULT_PARAMS,
    suite: str | None = None,
    semantic: bool = True,
) -> dict:
    """Read params.yaml, merge the suite overlay, validate against the schema, fill defaults."""
    path = Path(path)
    root = project_root(path)
    params = resolve(_read_yaml(path), root, suite)
    schema = load_schema(root)
    source = str(path) if params["suite"] == BASE_SUITE else f"{path} + {SUITES_RELPATH}/{params['suite']}.yaml"
    validate(params, schema, source=source)
    validate_variants(params, schema, source)
    if semantic:
        check_semantics(params)
    return params


#: Settings of how a run is executed, not of what it computes: left out of a job's parameter identity
#: (Snakemake's values param, metrics.json's params), so changing one never reruns a finished job.
EXECUTION_KEYS = {"train": ("capture", "channels_last", "jobs_per_gpu")}


def identity(section: str, value: Any) -> Any:
    """`value` of params section `section` without its EXECUTION_KEYS (what a job's results depend on)."""
    drop = EXECUTION_KEYS.get(section)
    if not drop or not isinstance(value, dict):
        return value
    return {k: v for k, v in value.items() if k not in drop}


def select(params: dict, dotted: str) -> Any:
    """params['a']['b'] for 'a.b'."""
    node: Any = params
    for part in dotted.split("."):
        node = node[part]
    return node
