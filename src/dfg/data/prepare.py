"""`dfg prepare DATASET [--raw DIR] [--out DIR]`: raw files -> data/prepared/DATASET/.

The dataset's module writes into a fresh temporary folder beside the output; only when it has finished
is that folder renamed onto the output (replacing an older one), so a failed or killed prepare never
leaves a partial prepared dataset behind.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from dfg.data.fetch import raw_dir
from dfg.data.registry import DATASETS, DatasetSpec

log = logging.getLogger(__name__)
PREPARED_DIR_MODE = 0o755  # mkdtemp creates 0700; the prepared folder is shared data


def prepare_dataset(spec: DatasetSpec, raw: Path, out: Path, params: dict) -> dict:
    """Run the spec's conversion into a temporary sibling folder, then swap it onto `out`."""
    from dfg.data.prepared import load_meta

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    os.chmod(tmp, PREPARED_DIR_MODE)
    old = None
    try:
        spec.prepare(Path(raw), tmp, params)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old / "prev")
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return load_meta(out)


def main(args: argparse.Namespace, params: dict) -> int:
    spec = DATASETS.get(args.dataset)
    raw = args.raw or raw_dir(params, spec.name)
    out = args.out or Path(params["data"]["root"]) / "prepared" / spec.name
    t0 = time.perf_counter()
    meta = prepare_dataset(spec, raw, out, params)
    log.info("%s: %d train + %d test images (%s, %d px, %d channel(s)) in %s (%.1f s)", spec.name,
             meta["n_train"], meta["n_test"], meta["format"], meta["image_size"], meta["channels"], out,
             time.perf_counter() - t0)
    return 0
