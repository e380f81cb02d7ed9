"""`dfg fetch DATASET [--out DIR]`: the dataset's official files into data/raw/DATASET/.

Local mirror folders (params fetch.mirrors) first, then the official URLs; every file is checksum-
verified and written atomically; `fetched.json` (the provenance of each file) is written last, so it is
the one output a workflow rule can wait for. Generated datasets (synthdigits, sklearn-digits) have no
files: fetching them only writes the manifest.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from dfg.data.registry import DATASETS

log = logging.getLogger(__name__)


def raw_dir(params: dict, dataset: str) -> Path:
    return Path(params["data"]["root"]) / "raw" / dataset


def main(args: argparse.Namespace, params: dict) -> int:
    spec = DATASETS.get(args.dataset)
    out = args.out or raw_dir(params, spec.name)
    t0 = time.perf_counter()
    paths = spec.fetch(out, params)
    log.info("%s: %d file(s) ready in %s (%.1f s)", spec.name, len(paths), out, time.perf_counter() - t0)
    return 0
