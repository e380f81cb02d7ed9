"""`dfg split TASK --seed K`: a seeded imbalanced subset of a task's prepared training set, as a file.

The split is data, not a recomputation: every method of one seed reads the same file (paired comparison),
and its sha256 goes into every run's metrics. Profiles (params `tasks.<task>.split`, method.md §4):

- step: `n_minority` classes, chosen by the seed, keep `minority` samples (or round(majority / ratio)),
  the others keep `majority`. Each class keeps its FIRST samples in prepared order, as the authors' loader
  does; only the choice of minority classes is random (and here, unlike there, seeded). A class with
  fewer samples than asked keeps all it has, as their loader's slicing did (SVHN's training set has only
  4 948 zeros and 4 659 nines for a majority of 5 000): one log line names it, and the file records the
  real `class_counts` and imbalance ratio beside the `requested_class_counts`.
- exponential: n_i = round(majority * ratio^(-i/(K-1))) for the i-th class of a seeded permutation;
  the minority classes are those with n_i <= majority / sqrt(ratio) (the geometric midpoint).
- balanced: `per_class` samples of every class (no minority classes).

`val_per_class` carves a validation set of that many images per class: drawn by the seed from the images
each class does not use, and where too few are unused, out of its training images (`build_split`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
from pathlib import Path

import numpy as np

from dfg import DfgError
from dfg.utils.io import write_json

log = logging.getLogger(__name__)

#: Second entry of the validation draw's seed sequence [seed, VAL_STREAM]: independent of the minority draw.
VAL_STREAM = 7919


def canonical_sha256(obj: dict) -> str:
    """sha256 of the canonical JSON (sorted keys, no whitespace) of `obj` without its `sha256` key."""
    body = {k: v for k, v in obj.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def target_counts(spec: dict, num_classes: int, seed: int, key: str = "split") -> tuple[list[int], list[int]]:
    """Per-class sample counts and the sorted minority classes for a split spec."""
    rng = np.random.default_rng(seed)
    profile = spec["profile"]

    def need(name: str) -> int | float:
        if name not in spec:
            raise DfgError(f"invalid parameter {key}.{name}: required by profile {profile!r}")
        return spec[name]

    if profile == "balanced":
        return [int(need("per_class"))] * num_classes, []
    if profile == "step":
        majority = int(need("majority"))
        if "minority" in spec:
            minority = int(spec["minority"])
        elif "ratio" in spec:
            minority = max(1, round(majority / float(spec["ratio"])))
        else:
            raise DfgError(f"invalid parameter {key}: profile 'step' needs `minority` or `ratio`")
        n_min = int(need("n_minority"))
        if n_min > num_classes:
            raise DfgError(f"invalid parameter {key}.n_minority: {n_min} > {num_classes} classes")
        if minority > majority:
            raise DfgError(f"invalid parameter {key}.minority: {minority} exceeds majority {majority}")
        minority_classes = sorted(int(c) for c in rng.choice(num_classes, size=n_min, replace=False))
        counts = [minority if c in minority_classes else majority for c in range(num_classes)]
        return counts, minority_classes
    if profile == "exponential":
        majority = int(need("majority"))
        ratio = float(need("ratio"))
        order = rng.permutation(num_classes)  # order[i] = class at rank i
        counts = [0] * num_classes
        for rank, cls in enumerate(order):
            frac = rank / (num_classes - 1) if num_classes > 1 else 0.0
            counts[int(cls)] = max(1, round(majority * ratio ** (-frac)))
        cut = majority / math.sqrt(ratio)
        minority_classes = sorted(c for c in range(num_classes) if counts[c] <= cut and ratio > 1)
        return counts, minority_classes
    raise DfgError(f"invalid parameter {key}.profile: unknown profile {profile!r}")


def build_split(labels: np.ndarray, num_classes: int, spec: dict, seed: int, key: str = "split",
                class_names: list[str] | None = None) -> dict:
    """Indices (ascending) into `labels` realising the spec; validation indices if asked.

    Validation (`val_per_class` > 0): per class, that many images drawn by the split seed from the class's
    images the split leaves unused. Where too few are unused (F-MNIST 40:1's majority classes use all
    6 000), the rest come out of the class's training images: it keeps its first `count - deficit`, and
    `val_from_training` records the deficit per class."""
    labels = np.asarray(labels)
    requested, minority_classes = target_counts(spec, num_classes, seed, key)
    counts = list(requested)
    val_per_class = int(spec.get("val_per_class", 0))
    val_rng = np.random.default_rng([seed, VAL_STREAM])  # apart from the minority draw above
    from_training = [0] * num_classes
    chosen, val = [], []
    for c in range(num_classes):
        pool = np.flatnonzero(labels == c)  # prepared order
        if spec["profile"] == "step" and len(pool) < counts[c]:
            counts[c] = len(pool)
            log.info("%s: class %s has %d training samples, fewer than the %d asked; it keeps all %d",
                     key, class_names[c] if class_names else c, len(pool), requested[c], counts[c])
        if len(pool) < counts[c]:
            raise DfgError(
                f"invalid parameter {key}: class {c} needs {counts[c]} training samples but the prepared "
                f"training set has {len(pool)}; lower the counts"
            )
        from_training[c] = max(0, val_per_class - (len(pool) - counts[c]))
        counts[c] -= from_training[c]
        if counts[c] <= 0 < requested[c]:
            raise DfgError(
                f"invalid parameter {key}: class {c} needs {val_per_class} validation samples, which would leave "
                f"{counts[c]} of its {len(pool)} prepared training images for training; lower val_per_class"
            )
        chosen.append(pool[: counts[c]])
        rest = pool[counts[c]:]
        val.append(rest if len(rest) == val_per_class else
                   np.sort(val_rng.choice(rest, size=val_per_class, replace=False)))
    indices = np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)
    val_indices = np.sort(np.concatenate(val)) if val else np.zeros(0, dtype=np.int64)
    nonzero = [n for n in counts if n > 0]
    out = {
        "profile": spec["profile"],
        "indices": [int(i) for i in indices],
        "val_indices": [int(i) for i in val_indices],
        "class_counts": [int(n) for n in counts],
        "requested_class_counts": [int(n) for n in requested],
        "minority_classes": minority_classes,
        "imbalance_ratio": float(max(nonzero) / min(nonzero)),
        "num_classes": int(num_classes),
    }
    if val_per_class:  # only with validation, so that split files without it stay as they were
        out["val_per_class"] = val_per_class
        out["val_from_training"] = [int(n) for n in from_training]
    return out


def read_train_labels(prepared: Path) -> tuple[np.ndarray, int, list[str]]:
    """Labels of a prepared training set, its number of classes and class names (formats in
    docs/architecture.md)."""
    meta_path = prepared / "meta.json"
    if not meta_path.exists():
        raise DfgError(f"{prepared} is not a prepared dataset (no meta.json); run `dfg prepare` first")
    meta = json.loads(meta_path.read_text())
    if meta.get("format", "array") == "array":
        labels = np.load(prepared / "train_y.npy")
    else:
        import pandas as pd

        labels = pd.read_csv(prepared / "train.csv")["label"].to_numpy()
    return labels.astype(np.int64), int(meta["num_classes"]), list(meta.get("classes") or [])


def make_split_file(task: str, params: dict, seed: int, prepared: Path, out: Path) -> dict:
    if task not in params["tasks"]:
        raise DfgError(f"unknown task {task!r}; known: {', '.join(sorted(params['tasks']))}")
    tcfg = params["tasks"][task]
    labels, num_classes, class_names = read_train_labels(prepared)
    split = build_split(labels, num_classes, tcfg["split"], seed, key=f"tasks.{task}.split",
                        class_names=class_names)
    doc = {"task": task, "dataset": tcfg["dataset"], "seed": int(seed), **split, "params": tcfg["split"]}
    doc["sha256"] = canonical_sha256(doc)
    write_json(out, doc, indent=None)
    return doc


def main(args: argparse.Namespace, params: dict) -> int:
    root = Path(params["data"]["root"])
    if args.task not in params["tasks"]:
        raise DfgError(f"unknown task {args.task!r}; known: {', '.join(sorted(params['tasks']))}")
    dataset = params["tasks"][args.task]["dataset"]
    prepared = args.prepared or root / "prepared" / dataset
    out = args.out or root / "splits" / args.task / f"seed{args.seed}.json"
    doc = make_split_file(args.task, params, args.seed, prepared, out)
    print(
        f"{out}: {len(doc['indices'])} images, class counts {doc['class_counts']}, "
        f"minority {doc['minority_classes']}, IR {doc['imbalance_ratio']:g}"
    )
    return 0
