"""`dfg evaluate CHECKPOINT --task TASK`: re-evaluate a saved model on a task's test set (what the
paper's eval scripts did for its released models). Writes/prints the metrics of docs/architecture.md.

The backbone is rebuilt from the checkpoint, the method's `adapt_net` applied, the weights loaded and
the saved `logit_bias` added to the logits, exactly as at the end of `dfg train`."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from dfg import DfgError
from dfg.batches import EvalImages, check_compatible, load_images, read_meta, stratified_subset
from dfg.loop import predict
from dfg.methods import METHODS
from dfg.metrics import compute_metrics
from dfg.models import BACKBONES, build_backbone
from dfg.runtime import autocast_factory, choose_device, configure_cpu_threads, derive_seed
from dfg.utils.io import load_torch, write_json

log = logging.getLogger(__name__)


def rebuild_model(ckpt: dict) -> torch.nn.Module:
    """SplitNet of a run or source checkpoint, with the method's architecture change applied."""
    net = build_backbone(ckpt["backbone"], int(ckpt["num_classes"]))
    if ckpt.get("kind") == "run":
        net = METHODS.get(ckpt["method"]).adapt_net(net, ckpt.get("hp") or {})
    try:
        net.load_state_dict(ckpt["net"])
    except RuntimeError as e:  # keys or shapes that do not fit the backbone it names
        first = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)[:200]
        raise DfgError(f"the checkpoint's weights do not fit {ckpt['backbone']} ({first}); it is damaged or was "
                       "not written by `dfg train` / `dfg pretrain`") from None
    return net


def evaluate_checkpoint(params: dict, checkpoint: Path, task: str, *, prepared_dir: Path | None = None,
                        device: str | None = None) -> dict:
    if task not in params["tasks"]:
        raise DfgError(f"unknown task {task!r}; known: {', '.join(sorted(params['tasks']))}")
    fix = "pass a run model (models/<suite>/runs/...) or a source model (models/source/...) that `dfg train` " \
          "or `dfg pretrain` wrote"
    tcfg = params["tasks"][task]
    ckpt = load_torch(checkpoint, what="checkpoint", fix=fix)
    if not isinstance(ckpt, dict) or ckpt.get("kind") not in ("run", "source") or not isinstance(ckpt.get("net"), dict):
        raise DfgError(f"checkpoint {checkpoint} is a PyTorch file but not a dfg run or source checkpoint; {fix}")
    if ckpt.get("backbone") not in BACKBONES or (ckpt.get("kind") == "run" and ckpt.get("method") not in METHODS):
        raise DfgError(f"checkpoint {checkpoint} names backbone {ckpt.get('backbone')!r} / method "
                       f"{ckpt.get('method')!r}, which this version does not know; {fix}")
    dev = choose_device(device or params["device"])
    configure_cpu_threads(dev, int(params["train"]["cpu_threads"]))  # as `dfg train` evaluated
    net = rebuild_model(ckpt).to(dev)
    prepared_dir = Path(prepared_dir or Path(params["data"]["root"]) / "prepared" / tcfg["dataset"])
    meta = read_meta(prepared_dir)
    if int(meta["num_classes"]) != int(ckpt["num_classes"]):
        raise DfgError(f"{checkpoint} predicts {ckpt['num_classes']} classes but {meta['dataset']} has "
                       f"{meta['num_classes']}; evaluate it on the task it was trained for")
    check_compatible(meta, net.info.in_channels, net.info.input_size, "none", f"task {task}")
    images = load_images(prepared_dir, "test", meta, dev)
    seed = int(ckpt.get("seed", 0))
    # The same test subset as `dfg train` drew for this seed (tasks.<t>.max_test; 0 = all).
    test_y = images.y.cpu().numpy()
    keep = stratified_subset(test_y, int(tcfg.get("max_test", 0)), derive_seed(derive_seed(seed, "batches"),
                                                                               "test-subset"))
    test = EvalImages(images, keep, dev, int(params["train"]["num_workers"]))
    probs, y = predict(net, test.iterate(int(params["train"]["eval_batch_size"])),
                       autocast_factory(dev, bool(params["train"]["amp"])), ckpt.get("logit_bias"))
    metrics = compute_metrics(y, probs, int(ckpt["num_classes"]), ckpt.get("minority_classes") or [])
    metrics.update({"checkpoint": str(checkpoint), "kind": ckpt["kind"], "task": task,
                    "method": ckpt.get("method"), "seed": ckpt.get("seed"), "dataset": meta.get("dataset"),
                    "device": str(dev), "torch_version": torch.__version__})
    return metrics


def main(args: argparse.Namespace, params: dict) -> int:
    m = evaluate_checkpoint(params, args.checkpoint, args.task, prepared_dir=args.prepared, device=args.device)
    if args.out:
        write_json(args.out, m)
    print(json.dumps({k: m[k] for k in ("task", "method", "seed", "accuracy", "balanced_accuracy",
                                        "minority_accuracy", "macro_f1", "g_mean", "ece", "n_test")}))
    return 0
