"""`dfg params [KEY]`: print the resolved parameters of the active suite as YAML.

params.yaml + workflow/suites/<suite>.yaml + the schema's defaults: exactly what every job and the
workflow read, so `dfg --suite paper params train` answers "how many steps does the paper suite run?".
"""

from __future__ import annotations

import argparse

import yaml

from dfg.config import select


def main(args: argparse.Namespace, params: dict) -> int:
    value = params
    if args.key:
        try:
            value = select(params, args.key)
        except (KeyError, TypeError):
            from dfg import DfgError

            raise DfgError(f"no parameter {args.key!r}; `dfg params` lists them all") from None
    if isinstance(value, dict | list):
        print(yaml.safe_dump(value, sort_keys=False, default_flow_style=False).rstrip())
    else:
        print(value)
    return 0
