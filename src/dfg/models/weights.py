"""`dfg fetch-weights SOURCE [--raw DIR] [--out FILE]`: published pre-trained weights as a source model.

For a source whose params entry names `weights` (e.g. `resnet50-imagenet`), the weight file is obtained
through the same mirror-then-download code as the datasets (checksum-verified; offline: one message
naming the URL and where to put the file), kept under data/raw/weights/SOURCE/, then converted into the
source-checkpoint format of docs/architecture.md at models/source/SOURCE.pt (written atomically).
Compute nodes without internet can thus be served by a mirror folder or a copied raw file; torch hub's
own cache (where torchvision keeps downloaded weights) is searched as one more mirror.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dfg import DfgError
from dfg.data.registry import RemoteFile
from dfg.registry import Registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WeightsSpec:
    """Published weights: the file, the backbone it fits and how its state dict maps onto our SplitNet."""

    name: str
    backbone: str
    file: RemoteFile
    mirror_dirs: tuple[str, ...]
    dataset: str  # what the weights were trained on (provenance only)
    load_meta: Callable[[], dict]  # num_classes, classes, test_accuracy as published
    convert: Callable[[dict], dict]  # published state dict -> SplitNet state dict


WEIGHTS: Registry[WeightsSpec] = Registry("weights")


def _torchvision_resnet50_v1():
    from torchvision.models import ResNet50_Weights

    return ResNet50_Weights.IMAGENET1K_V1


def _resnet50_file() -> RemoteFile:
    """torchvision's IMAGENET1K_V1 file; its name carries the first 8 hex digits of its sha256."""
    url = _torchvision_resnet50_v1().url  # https://download.pytorch.org/models/resnet50-0676ba61.pth
    name = url.rsplit("/", 1)[1]
    return RemoteFile(name, (url,), sha256_prefix=name.removesuffix(".pth").rsplit("-", 1)[1])


def _resnet50_meta() -> dict:
    meta = _torchvision_resnet50_v1().meta
    return {"num_classes": len(meta["categories"]), "classes": list(meta["categories"]),
            "test_accuracy": meta["_metrics"]["ImageNet-1K"]["acc@1"] / 100.0,
            "recipe": meta.get("recipe", "")}


def _resnet50_convert(state: dict) -> dict:
    from dfg.models.resnet50 import imagenet_to_split

    return imagenet_to_split(state)


WEIGHTS.add("resnet50-imagenet", WeightsSpec(
    name="resnet50-imagenet", backbone="resnet50", file=_resnet50_file(),
    mirror_dirs=("weights", "resnet50-imagenet", "checkpoints"), dataset="imagenet-1k",
    load_meta=_resnet50_meta, convert=_resnet50_convert,
))


def torch_hub_checkpoints() -> Path:
    import torch

    return Path(torch.hub.get_dir())


def fill_batch_counts(state: dict, net) -> dict:
    """Add BatchNorm's `num_batches_tracked` counters (0) where `state` lacks them, as torch's BatchNorm
    loader does for files saved before PyTorch 0.4.1: torchvision's resnet50-0676ba61.pth (2017) has none.
    The counter only matters for BN with momentum=None, which no backbone here uses."""
    from torch import nn

    out = dict(state)
    for name, module in net.named_modules():
        key = f"{name}.num_batches_tracked"
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats and key not in out:
            out[key] = module.num_batches_tracked.new_zeros(())
    return out


def fetch_weights(params: dict, source: str, raw_dir: Path | None = None, out: Path | None = None,
                  spec: WeightsSpec | None = None) -> dict:
    """Obtain and convert the weights of `source`; return the checkpoint's metadata (without `net`)."""
    from dfg.data.download import fetch_remote_files
    from dfg.models import build_backbone
    from dfg.utils.io import load_torch, save_torch

    if source not in params["sources"]:
        raise DfgError(f"unknown source {source!r}; known: {', '.join(sorted(params['sources']))}")
    scfg = params["sources"][source]
    if not scfg.get("weights"):
        raise DfgError(f"source {source!r} names no `weights`; train it with `dfg pretrain {source}`")
    spec = spec or WEIGHTS.get(scfg["weights"])
    if spec.backbone != scfg["backbone"]:
        raise DfgError(f"sources.{source}: weights {spec.name!r} are for {spec.backbone}, not {scfg['backbone']}")
    raw_dir = Path(raw_dir or Path(params["data"]["root"]) / "raw" / "weights" / source)
    out = Path(out or Path("models") / "source" / f"{source}.pt")
    fetch_remote_files(spec.name, (spec.file,), spec.mirror_dirs, raw_dir, params.get("fetch", {}),
                       extra_mirrors=(torch_hub_checkpoints(),))

    raw_file = raw_dir / spec.file.name
    state = load_torch(raw_file, what="weights file", fix="delete it and run `dfg fetch-weights` again")
    meta = spec.load_meta()
    net = build_backbone(spec.backbone, meta["num_classes"])
    converted = fill_batch_counts(spec.convert(state), net)
    own = net.state_dict()
    missing, extra = sorted(set(own) - set(converted)), sorted(set(converted) - set(own))
    if missing or extra:
        raise DfgError(f"{raw_file} does not fit {spec.backbone}: missing {missing[:3]}, unexpected {extra[:3]}")
    net.load_state_dict(converted, strict=True)  # also checks every shape
    info = {"kind": "source", "backbone": spec.backbone, "num_classes": meta["num_classes"], "source": source,
            "dataset": spec.dataset, "epochs": None, "test_accuracy": meta["test_accuracy"],
            "classes": meta["classes"], "weights": spec.name, "weights_file": spec.file.name,
            "weights_url": spec.file.urls[0]}
    save_torch(out, {**info, "net": net.state_dict()})
    log.info("source %s: %s weights -> %s", source, spec.name, out)
    return info


def main(args: argparse.Namespace, params: dict) -> int:
    info = fetch_weights(params, args.source, raw_dir=args.raw, out=args.out)
    log.info("%s: %d classes, published top-1 %.4f", info["source"], info["num_classes"], info["test_accuracy"])
    return 0
