"""`dfg train TASK METHOD --seed K`: one method on one task for one seed, on the shared loop.

Writes the run model (models/<suite>/runs/<task>/<method>/seed<k>.pt), metrics.json, curves.csv and, for
methods that have them, artefacts.pt (results/<suite>/runs/<task>/<method>/seed<k>/); see
docs/architecture.md. A killed run leaves only its resume checkpoint; rerunning continues from it.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from dfg import DfgError, provenance
from dfg.batches import TaskData, build_task_data
from dfg.capture import resolve_mode
from dfg.config import identity
from dfg.loop import curves_csv, fit, make_context, predict
from dfg.methods.base import Method
from dfg.methods.variants import method_spec
from dfg.metrics import compute_metrics
from dfg.models import build_backbone, load_source_weights
from dfg.runtime import (
    choose_device,
    configure_cpu_threads,
    configure_determinism,
    derive_seed,
    seed_everything,
    to_memory_format,
)
from dfg.utils.io import load_torch, save_torch, write_json, write_text

log = logging.getLogger(__name__)


# -- default paths (docs/architecture.md, "Paths") --------------------------------------------------
def split_seed(params: dict, seed: int) -> int:
    """The seed of the split a run of training seed `seed` uses: params run.split_seed, else `seed`."""
    fixed = params.get("run", {}).get("split_seed")
    return int(seed) if fixed is None else int(fixed)


def split_path(params: dict, task: str, seed: int) -> Path:
    """The split file of a run of training seed `seed` (that of its split seed)."""
    return Path(params["data"]["root"]) / "splits" / task / f"seed{split_seed(params, seed)}.json"


def prepared_path(params: dict, dataset: str) -> Path:
    return Path(params["data"]["root"]) / "prepared" / dataset


def source_path(source: str) -> Path:
    return Path("models") / "source" / f"{source}.pt"


def run_model_path(params: dict, task: str, method: str, seed: int) -> Path:
    return Path("models") / params["suite"] / "runs" / task / method / f"seed{seed}.pt"


def run_results_dir(params: dict, task: str, method: str, seed: int) -> Path:
    return Path("results") / params["suite"] / "runs" / task / method / f"seed{seed}"


def resume_path_for(model_path: Path) -> Path:
    return model_path.with_name(model_path.name.removesuffix(".pt") + ".resume.pt")


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# -- pieces --------------------------------------------------------------------------------------
def read_split(path: Path, task: str, dataset: str) -> dict:
    if not path.exists():
        raise DfgError(f"split file {path} not found; run `dfg split {task} --seed K` first")
    split = json.loads(path.read_text())
    if split.get("dataset", dataset) != dataset:
        raise DfgError(f"split {path} is of dataset {split['dataset']!r} but task {task} uses {dataset!r}; "
                       "rebuild it with `dfg split`")
    return split


def validation_facts(split: dict) -> dict:
    """What metrics.json says about a split's validation set: images per class, in all, and how many of
    each class came out of its training images (where the class had too few unused ones)."""
    return {"per_class": int(split.get("val_per_class", 0)), "n_images": len(split.get("val_indices") or []),
            "from_training": list(split.get("val_from_training") or [])}


def load_checkpoint(path: Path, kind: str, hint: str) -> dict:
    ckpt = load_torch(path, what=f"{kind} model", fix=hint)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("net"), dict):
        raise DfgError(f"{kind} model {path} is a PyTorch file but not a dfg {kind} checkpoint (no `net` weights "
                       f"dict); {hint}")
    return ckpt


def load_weights_into(net: torch.nn.Module, ckpt: dict, path: Path, kind: str, hint: str) -> None:
    """The checkpoint's weights into `net` by name and shape; a file whose feature extractor F does not fit
    (another architecture, another input) is refused instead of silently training from initialisation."""
    skipped = load_source_weights(net, ckpt["net"])
    unfit = [k for k in skipped if k.startswith("F.")]
    if unfit:
        raise DfgError(f"{kind} model {path}: {len(unfit)} of F's tensors do not fit this {net.backbone} (e.g. "
                       f"{unfit[0]}); it was trained for another architecture or input; {hint}")


def frozen_copy(net: torch.nn.Module) -> torch.nn.Module:
    """The source model for regularisers: eval mode, no gradients."""
    src = copy.deepcopy(net).eval()
    for p in src.parameters():
        p.requires_grad_(False)
    return src


def final_predictions(method: Method, ctx, last_eval, eval_batch_size: int):
    """(probs, y) of the final model; the loop's last evaluation is reused when nothing can have
    changed since (no on_train_end override, no logit bias)."""
    bias = method.logit_bias()
    if bias is None and last_eval is not None and type(method).on_train_end is Method.on_train_end:
        return last_eval, None
    return predict(ctx.net, ctx.data.test.iterate(eval_batch_size), ctx.autocast, bias), bias


def run_training(params: dict, task: str, method_name: str, seed: int, *, split_file: Path | None = None,
                 prepared_dir: Path | None = None, source_file: Path | None = None,
                 init_run: Path | None = None, out_model: Path | None = None, out_dir: Path | None = None,
                 steps: int | None = None, device: str | None = None,
                 callback: Callable[[int, dict], None] | None = None) -> dict:
    """Train and write every output of one run; return its metrics dict."""
    if task not in params["tasks"]:
        raise DfgError(f"unknown task {task!r}; known: {', '.join(sorted(params['tasks']))}")
    tcfg, train_cfg = params["tasks"][task], params["train"]
    spec = method_spec(params, method_name)
    cls, hp = spec.cls, spec.hp
    source_name = tcfg["source"]
    backbone = params["sources"][source_name]["backbone"]
    out_model = Path(out_model or run_model_path(params, task, method_name, seed))
    out_dir = Path(out_dir or run_results_dir(params, task, method_name, seed))
    split_file = Path(split_file or split_path(params, task, seed))
    prepared_dir = Path(prepared_dir or prepared_path(params, tcfg["dataset"]))

    dev = choose_device(device or params["device"])
    configure_determinism(dev, bool(train_cfg["deterministic"]))
    configure_cpu_threads(dev, int(train_cfg["cpu_threads"]))
    seed_everything(derive_seed(seed, "init"))
    split = read_split(split_file, task, tcfg["dataset"])

    net = build_backbone(backbone, int(split.get("num_classes") or len(split["class_counts"])))
    net = cls.adapt_net(net, hp)
    source_net, used_source = None, None
    if cls.needs_source:
        src_file = Path(source_file or source_path(source_name))
        ckpt = load_checkpoint(src_file, "source", f"run `dfg pretrain {source_name}` (or `dfg fetch-weights "
                                                   f"{source_name}`) first, or pass --source FILE")
        if ckpt.get("backbone", backbone) != backbone:
            raise DfgError(f"{src_file} is a {ckpt['backbone']} model but task {task} uses {backbone}")
        load_weights_into(net, ckpt, src_file, "source", f"run `dfg pretrain {source_name}` (or `dfg fetch-weights "
                                                      f"{source_name}`), or pass --source FILE")
        used_source = source_name
    if cls.init_from_run:
        init = Path(init_run or run_model_path(params, task, cls.init_from_run, seed))
        hint = f"train `dfg train {task} {cls.init_from_run} --seed {seed}` first, or pass --init-run FILE"
        ckpt = load_checkpoint(init, "run", hint)
        load_weights_into(net, ckpt, init, "run", hint)
    net = to_memory_format(net.to(dev), bool(train_cfg.get("channels_last", False)))
    if cls.needs_source:
        source_net = frozen_copy(net)

    info = net.info
    data: TaskData = build_task_data(
        prepared_dir, np.asarray(split["indices"]), dev, batch_size=int(train_cfg["batch_size"]),
        augment_kind=tcfg["augment"], input_size=info.input_size, in_channels=info.in_channels,
        seed=derive_seed(seed, "batches"), max_test=int(tcfg.get("max_test", 0)),
        num_workers=int(train_cfg["num_workers"]), minority_classes=split.get("minority_classes", []),
        split=split, where=f"task {task}",
    )
    # a variant runs as its base method (same named random streams), so it differs only in its `set`
    ctx = make_context(task=task, method=spec.base, seed=seed, params=params, hp=hp, device=dev, net=net,
                       source_net=source_net, data=data, total_steps=int(steps or train_cfg["steps"]),
                       optimizer=train_cfg["optimizer"][backbone],
                       capture=resolve_mode(train_cfg.get("capture", "auto"), dev))
    method = cls(ctx)
    run_fields = {"kind": "run", "backbone": backbone, "num_classes": data.num_classes, "task": task,
                  "method": method_name, "seed": seed}
    resume = resume_path_for(out_model)
    result = fit(method, ctx, eval_every=int(train_cfg["eval_every"]),
                 checkpoint_every=int(train_cfg["checkpoint_every"]),
                 eval_batch_size=int(train_cfg["eval_batch_size"]), resume_path=resume, run_fields=run_fields,
                 callback=callback, steps=steps)

    (probs, y), bias = final_predictions(method, ctx, result.last_eval, int(train_cfg["eval_batch_size"]))
    metrics = compute_metrics(y, probs, data.num_classes, data.minority_classes)
    save_torch(out_model, {
        **run_fields, "net": net.state_dict(), "steps": result.steps,
        "logit_bias": None if bias is None else bias.detach().cpu(), "hp": hp,
        "minority_classes": data.minority_classes, "classes": data.classes, "dataset": data.dataset,
        "split_sha256": split.get("sha256"),
    })
    metrics.update({
        "task": task, "method": method_name, "label": spec.label, "addition": bool(cls.addition or spec.variant),
        **({"variant_of": spec.base} if spec.variant else {}),
        "seed": seed, "dataset": data.dataset, "source": used_source,
        "class_counts": [int(c) for c in data.class_counts], "minority_classes": data.minority_classes,
        "split_sha256": split.get("sha256"),
        # Only where they differ from the defaults, so that runs without them keep their files as they were:
        **({"split_seed": int(split["seed"])} if int(split.get("seed", seed)) != seed else {}),
        **({"validation": validation_facts(split)} if data.val is not None else {}),
        "steps": result.steps, "wall_seconds": round(result.wall_seconds, 3),
        "device": str(dev), "torch_version": torch.__version__, "git_commit": git_commit(),
        "suite": params["suite"], "resumed_from_step": result.resumed_from, "provenance": provenance.collect(dev),
        **({"capture": result.extra["capture"]} if ctx.capture != "off" else {}),
        "params": {"task": tcfg, "train": identity("train", train_cfg), "methods": {method_name: hp}},
    })
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "metrics.json", metrics)
    write_text(out_dir / "curves.csv", curves_csv(result.curves))
    artefacts = method.artefacts()
    if artefacts is not None:
        save_torch(out_dir / "artefacts.pt", artefacts)
    resume.unlink(missing_ok=True)
    log.info("%s %s seed %d: accuracy %.4f, balanced %.4f, %d steps in %.1f s on %s", task, method_name, seed,
             metrics["accuracy"], metrics["balanced_accuracy"], result.steps, result.wall_seconds, dev)
    return metrics


# -- CLI -----------------------------------------------------------------------------------------


def main(args: argparse.Namespace, params: dict) -> int:
    if args.steps is not None and args.steps < 1:
        raise DfgError("--steps must be at least 1")
    m = run_training(params, args.task, args.method, args.seed, split_file=args.split,
                     prepared_dir=args.prepared, source_file=args.source, init_run=args.init_run,
                     out_model=args.out_model, out_dir=args.out_dir, steps=args.steps, device=args.device)
    print(json.dumps({k: m[k] for k in ("task", "method", "seed", "accuracy", "balanced_accuracy",
                                        "minority_accuracy", "steps", "wall_seconds", "device")}))
    return 0
