"""Tiny prepared datasets and split files for the loop tests, written in the documented formats
(docs/architecture.md) without the data layer's code: scikit-learn's 8x8 digits upscaled to 32x32."""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path

import numpy as np

from dfg.config import load_params

ROOT = Path(__file__).resolve().parents[1]
UPSCALE = 4  # 8 px -> 32 px, LeNet-5's input


def write_prepared(out: Path, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                   name: str, num_classes: int) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for part, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        np.save(out / f"{part}_x.npy", x.astype(np.uint8))
        np.save(out / f"{part}_y.npy", y.astype(np.int64))
    meta = {"dataset": name, "format": "array", "classes": [str(i) for i in range(num_classes)],
            "num_classes": num_classes, "image_size": int(x_train.shape[1]), "channels": int(x_train.shape[3]),
            "n_train": len(y_train), "n_test": len(y_test), "sha256": {}}
    (out / "meta.json").write_text(json.dumps(meta))
    return out


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    img = (d.images / 16.0 * 255.0).round().astype(np.uint8)  # [N, 8, 8] in 0..16 -> 0..255
    img = np.kron(img, np.ones((1, UPSCALE, UPSCALE), dtype=np.uint8))  # [N, 32, 32]
    return img[..., None], d.target.astype(np.int64)


def digits_task(tmp: Path, minority: tuple[int, ...] = (0, 1), n_minority: int = 15) -> dict:
    """A prepared `digits-test` dataset (1 300 train / 497 test) and an imbalanced split file: classes
    in `minority` keep their first `n_minority` training images, the others all of theirs."""
    x, y = digits_arrays()
    prepared = write_prepared(tmp / "prepared" / "digits-test", x[:1300], y[:1300], x[1300:], y[1300:],
                              "digits-test", 10)
    ytr = y[:1300]
    keep = []
    for c in range(10):
        idx = np.flatnonzero(ytr == c)
        keep.extend(idx[:n_minority] if c in minority else idx)
    keep = sorted(int(i) for i in keep)
    counts = np.bincount(ytr[keep], minlength=10).tolist()
    split = {"task": "digits-test", "dataset": "digits-test", "seed": 0, "profile": "step", "indices": keep,
             "val_indices": [], "class_counts": counts, "minority_classes": list(minority),
             "imbalance_ratio": max(counts) / min(counts), "num_classes": 10, "params": {}, "sha256": "f" * 64}
    split_file = tmp / "splits" / "digits-test" / "seed0.json"
    split_file.parent.mkdir(parents=True)
    split_file.write_text(json.dumps(split))
    return {"prepared": prepared, "split": split_file, "x": x, "y": y}


@functools.cache
def _project_params() -> dict:
    return load_params(ROOT / "params.yaml", semantic=False)


def make_params(steps: int = 60, **train) -> dict:
    """The project's params (schema-validated, defaults filled) with a `digits-test` task and a
    `lenet5-digits` source; numbers small enough for seconds on a CPU."""
    params = copy.deepcopy(_project_params())
    params["sources"]["lenet5-digits"] = {"backbone": "lenet5", "dataset": "digits-test", "epochs": 2,
                                          "batch_size": 64, "lr": 0.002, "augment": "none", "max_train": 0,
                                          "seed": 0}
    params["tasks"]["digits-test"] = {"dataset": "digits-test", "source": "lenet5-digits",
                                      "split": {"profile": "step"}, "augment": "none", "paper_column": None,
                                      "max_test": 0}
    params["train"].update({"steps": steps, "batch_size": 32, "eval_every": 20, "checkpoint_every": 20,
                            "eval_batch_size": 256, "num_workers": 0})
    params["train"]["optimizer"]["lenet5"] = {"name": "adam", "lr": 2e-3, "betas": [0.9, 0.999],
                                              "weight_decay": 0.0}
    params["train"].update(train)
    params["suite"] = "test"
    return params


def digits_task_with_source(tmp: Path) -> dict:
    """digits_task plus a `lenet5-digits` source model pre-trained on it (t["source"])."""
    from dfg.pretrain import run_pretrain

    t = digits_task(tmp)
    t["source"] = tmp / "source.pt"
    run_pretrain(make_params(), "lenet5-digits", prepared_dir=t["prepared"], out=t["source"], device="cpu")
    return t


def random_lenet_context(name: str, seed: int = 0, *, batch: int = 16, total_steps: int = 20, capture: str = "off",
                         cls=None, **hp_over):
    """(method class, RunContext) of `name` on a tiny random-image LeNet-5 task on the CPU: 10 classes,
    2 majority ones of 60 images and 8 minority ones of 12, a random network as its own (frozen) source;
    the project's hyper-parameters with `hp_over` on top."""
    import torch

    from dfg.batches import DeviceImages, EvalImages, TaskData, TrainBatches
    from dfg.loop import make_context
    from dfg.methods import METHODS
    from dfg.models import build_backbone

    params = load_params(semantic=False)
    params["train"]["batch_size"] = batch
    hp = copy.deepcopy(params["methods"][name])
    hp.update(hp_over)
    rng = np.random.default_rng(0)
    y = np.concatenate([np.full(60, c) for c in range(2)] + [np.full(12, c) for c in range(2, 10)])
    x = rng.integers(0, 256, (len(y), 32, 32, 1), dtype=np.uint8)
    dev = torch.device("cpu")
    imgs = DeviceImages(x, y, dev)
    train = TrainBatches(imgs, np.arange(len(y)), 10, batch, "none", 32, seed, dev)
    data = TaskData(train=train, test=EvalImages(imgs, np.arange(40), dev), num_classes=10,
                    class_counts=torch.bincount(train.labels, minlength=10), minority_classes=list(range(2, 10)),
                    classes=[str(i) for i in range(10)], dataset="random")
    torch.manual_seed(seed)
    cls = cls or METHODS.get(name)
    net = cls.adapt_net(build_backbone("lenet5", 10), hp)
    ctx = make_context(task="t", method=name, seed=seed, params=params, hp=hp, device=dev, net=net,
                       source_net=copy.deepcopy(net).eval().requires_grad_(False), data=data,
                       total_steps=total_steps, optimizer=params["train"]["optimizer"]["lenet5"], capture=capture)
    return cls, ctx
