"""`dfg pretrain SOURCE`: train a source model (LeNet-5 on synthdigits / EMNIST-digits, VGG-16 on
CIFAR-10) with cross-entropy on the shared loop, and write models/source/SOURCE.pt with its metadata.

Numbers come from params `sources.<SOURCE>` (epochs, batch_size, lr, augment, max_train, seed); the
optimiser kind and its other settings from `train.optimizer[<backbone>]`, with the source's lr. The
authors published no source-training code, so this is a plain recipe (method.md §1)."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from dfg import DfgError, provenance
from dfg.batches import build_task_data, read_meta, stratified_subset
from dfg.capture import resolve_mode
from dfg.loop import fit, make_context
from dfg.methods import METHODS
from dfg.metrics import compute_metrics
from dfg.models import build_backbone
from dfg.runtime import (
    choose_device,
    configure_cpu_threads,
    configure_determinism,
    derive_seed,
    seed_everything,
    to_memory_format,
)
from dfg.utils.io import save_torch

log = logging.getLogger(__name__)

#: The CE training step source models use: ORIGINAL's (random init, cross-entropy).
SOURCE_METHOD = "original"


def run_pretrain(params: dict, source: str, *, prepared_dir: Path | None = None, out: Path | None = None,
                 device: str | None = None, callback: Callable[[int, dict], None] | None = None) -> dict:
    """Train the source model and write its checkpoint; return the checkpoint's metadata."""
    if source not in params["sources"]:
        raise DfgError(f"unknown source {source!r}; known: {', '.join(sorted(params['sources']))}")
    scfg, train_cfg = params["sources"][source], params["train"]
    if not scfg.get("dataset"):
        raise DfgError(f"source {source!r} is not trained here (no `dataset`); obtain it with "
                       f"`dfg fetch-weights {source}`")
    backbone, dataset, seed = scfg["backbone"], scfg["dataset"], int(scfg["seed"])
    prepared_dir = Path(prepared_dir or Path(params["data"]["root"]) / "prepared" / dataset)
    out = Path(out or Path("models") / "source" / f"{source}.pt")

    dev = choose_device(device or params["device"])
    configure_determinism(dev, bool(train_cfg["deterministic"]))
    configure_cpu_threads(dev, int(train_cfg["cpu_threads"]))
    seed_everything(derive_seed(seed, "init"))
    meta = read_meta(prepared_dir)
    k = int(meta["num_classes"])
    net = to_memory_format(build_backbone(backbone, k).to(dev), bool(train_cfg.get("channels_last", False)))
    train_y = _train_labels(prepared_dir, meta)
    indices = stratified_subset(train_y, int(scfg["max_train"]), derive_seed(seed, "max_train"))
    data = build_task_data(prepared_dir, indices, dev, batch_size=int(scfg["batch_size"]),
                           augment_kind=scfg["augment"], input_size=net.info.input_size,
                           in_channels=net.info.in_channels, seed=derive_seed(seed, "batches"),
                           num_workers=int(train_cfg["num_workers"]), where=f"source {source}")
    steps = int(scfg["epochs"]) * max(1, len(data.train) // data.train.batch_size)
    ctx = make_context(task=f"source:{source}", method=SOURCE_METHOD, seed=seed, params=params, hp={},
                       device=dev, net=net, source_net=None, data=data, total_steps=steps,
                       optimizer=train_cfg["optimizer"][backbone], lr=float(scfg["lr"]),
                       capture=resolve_mode(train_cfg.get("capture", "auto"), dev))
    method = METHODS.get(SOURCE_METHOD)(ctx)
    resume = out.with_name(out.name.removesuffix(".pt") + ".resume.pt")
    run_fields = {"kind": "source", "backbone": backbone, "num_classes": k, "task": f"source:{source}",
                  "method": SOURCE_METHOD, "seed": seed}
    result = fit(method, ctx, eval_every=int(train_cfg["eval_every"]),
                 checkpoint_every=int(train_cfg["checkpoint_every"]),
                 eval_batch_size=int(train_cfg["eval_batch_size"]), resume_path=resume, run_fields=run_fields,
                 callback=callback)
    probs, y = result.last_eval
    metrics = compute_metrics(y, probs, k)
    info = {
        "kind": "source", "backbone": backbone, "num_classes": k, "source": source, "dataset": dataset,
        "epochs": int(scfg["epochs"]), "steps": result.steps, "seed": seed, "n_train": len(indices),
        "test_accuracy": metrics["accuracy"], "test_balanced_accuracy": metrics["balanced_accuracy"],
        "classes": list(meta.get("classes", [])), "wall_seconds": round(result.wall_seconds, 3),
        "device": str(dev), "provenance": provenance.collect(dev),
    }
    save_torch(out, {**info, "net": net.state_dict()})
    resume.unlink(missing_ok=True)
    log.info("source %s: test accuracy %.4f after %d steps (%.1f s)", source, metrics["accuracy"], result.steps,
             result.wall_seconds)
    return info


def _train_labels(prepared_dir: Path, meta: dict) -> np.ndarray:
    from dfg.batches import read_arrays, read_index

    if meta.get("format", "array") == "array":
        return np.asarray(read_arrays(prepared_dir, "train")[1])
    return read_index(prepared_dir, "train")[1]


def main(args: argparse.Namespace, params: dict) -> int:
    info = run_pretrain(params, args.source, prepared_dir=args.prepared, out=args.out, device=args.device)
    print(json.dumps(info))
    return 0
