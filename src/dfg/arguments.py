"""The arguments of every `dfg` verb, in one module that imports nothing heavy: `dfg VERB --help` (and a
mistyped name) is answered in a fraction of a second, before the verb's own module (torch, for the
training verbs) is imported.

Positional names are checked against the registries and the suite's parameters, and the help lists them:
tasks and sources from the suite's params, methods from the method registry (plus the suite's variants),
datasets and backbones from their registries. An unknown name gets the close ones ("did you mean").
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

DEVICES = ["auto", "cpu", "cuda"]


@dataclass
class Names:
    """What positional arguments may name. Empty where unknown (params that do not load): then any
    name passes here and the verb's own check reports it."""

    tasks: list[str] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    registered_methods: list[str] = field(default_factory=list)  # without the suite's variants
    datasets: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    weight_sources: list[str] = field(default_factory=list)
    backbones: list[str] = field(default_factory=list)
    suites: list[str] = field(default_factory=list)


def known_names(params: dict | None, root: Path | None = None) -> Names:
    from dfg.config import available_suites
    from dfg.data.registry import DATASETS
    from dfg.methods import METHODS
    from dfg.models import BACKBONES

    names = Names(methods=METHODS.names(), registered_methods=METHODS.names(), datasets=DATASETS.names(),
                  backbones=BACKBONES.names())
    if root is not None:
        names.suites = available_suites(root)
    if params:
        from dfg.methods.variants import known_methods

        names.tasks = sorted(params.get("tasks", {}))
        names.methods = known_methods(params)
        names.sources = sorted(params.get("sources", {}))
        names.weight_sources = sorted(k for k, v in params.get("sources", {}).items() if v.get("weights"))
    return names


def did_you_mean(value: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(value, list(known), n=3, cutoff=0.5)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def one_of(kind: str, known: list[str]) -> Callable[[str], str]:
    """An argparse `type` that accepts a name of `known` (anything when `known` is empty)."""

    def check(value: str) -> str:
        if known and value not in known:
            raise argparse.ArgumentTypeError(
                f"unknown {kind} {value!r}{did_you_mean(value, known)} (known: {', '.join(known)})")
        return value

    check.__name__ = kind  # argparse names the type in some messages
    return check


def list_of(kind: str, known: list[str]) -> Callable[[str], list[str]]:
    """Comma-separated names of `known`."""
    single = one_of(kind, known)

    def check(value: str) -> list[str]:
        return [single(v.strip()) for v in value.split(",") if v.strip()]

    check.__name__ = f"{kind} list"
    return check


def listing(known: list[str]) -> str:
    return f" (one of: {', '.join(known)})" if known else ""


def positional(parser: argparse.ArgumentParser, dest: str, kind: str, known: list[str], what: str) -> None:
    parser.add_argument(dest, type=one_of(kind, known), metavar=dest.upper(), help=what + listing(known))


# -- the verbs ---------------------------------------------------------------------------------------------
def fetch(p: argparse.ArgumentParser, n: Names) -> None:
    positional(p, "dataset", "dataset", n.datasets, "the dataset whose official files to obtain")
    p.add_argument("--out", type=Path, default=None, help="raw folder (default: <data.root>/raw/DATASET)")


def prepare(p: argparse.ArgumentParser, n: Names) -> None:
    positional(p, "dataset", "dataset", n.datasets, "the dataset to convert")
    p.add_argument("--raw", type=Path, default=None, help="raw folder (default: <data.root>/raw/DATASET)")
    p.add_argument("--out", type=Path, default=None, help="prepared folder (default: <data.root>/prepared/DATASET)")


def split(p: argparse.ArgumentParser, n: Names) -> None:
    positional(p, "task", "task", n.tasks, "the task whose imbalanced split to build")
    p.add_argument("--seed", type=int, required=True, help="data seed: fixes the minority classes")
    p.add_argument("--prepared", type=Path, default=None, help="prepared dataset folder")
    p.add_argument("--out", type=Path, default=None, help="split file to write")


def fetch_weights(p: argparse.ArgumentParser, n: Names) -> None:
    positional(p, "source", "source with weights", n.weight_sources, "a source whose params entry sets `weights`")
    p.add_argument("--raw", type=Path, default=None, help="raw weights folder (default: <data.root>/raw/weights/SOURCE)")
    p.add_argument("--out", type=Path, default=None, help="checkpoint (default: models/source/SOURCE.pt)")


def pretrain(p: argparse.ArgumentParser, n: Names) -> None:
    positional(p, "source", "source", n.sources, "the source model to train")
    p.add_argument("--prepared", type=Path, help="prepared source dataset (default data/prepared/DATASET)")
    p.add_argument("--out", type=Path, help="checkpoint (default models/source/SOURCE.pt)")
    p.add_argument("--device", choices=DEVICES, help="default: params `device`")


def train(p: argparse.ArgumentParser, n: Names) -> None:
    positional(p, "task", "task", n.tasks, "the task (target dataset, source model, split)")
    positional(p, "method", "method", n.methods, "the method to train")
    p.add_argument("--seed", type=int, required=True, help="training seed (and data seed, unless run.split_seed)")
    p.add_argument("--split", type=Path, help="split file (default data/splits/TASK/seedK.json)")
    p.add_argument("--prepared", type=Path, help="prepared dataset folder (default data/prepared/DATASET)")
    p.add_argument("--source", type=Path, help="source model (default models/source/SOURCE.pt)")
    p.add_argument("--init-run", type=Path, help="run model an init_from_run method starts from")
    p.add_argument("--out-model", type=Path, help="run model (default models/SUITE/runs/TASK/METHOD/seedK.pt)")
    p.add_argument("--out-dir", type=Path, help="results folder (default results/SUITE/runs/TASK/METHOD/seedK)")
    p.add_argument("--steps", type=int, help="override the step count (debugging only)")
    p.add_argument("--device", choices=DEVICES, help="default: params `device`")


def evaluate(p: argparse.ArgumentParser, n: Names) -> None:
    p.add_argument("checkpoint", type=Path, help="a run model (or a source model)")
    p.add_argument("--task", required=True, type=one_of("task", n.tasks),
                   help="the task whose test set to use" + listing(n.tasks))
    p.add_argument("--prepared", type=Path, help="prepared dataset folder (default data/prepared/DATASET)")
    p.add_argument("--out", type=Path, help="write the metrics here as JSON (default: print only)")
    p.add_argument("--device", choices=DEVICES, help="default: params `device`")


def bench(p: argparse.ArgumentParser, n: Names) -> None:
    p.add_argument("--backbones", type=list_of("backbone", n.backbones),
                   help="comma-separated (default: params bench.backbones)" + listing(n.backbones))
    p.add_argument("--methods", type=list_of("method", n.methods or n.registered_methods),
                   help="comma-separated, the suite's variants included (default: every registered method)"
                   + listing(n.methods or n.registered_methods))
    p.add_argument("--steps", type=int, help="timed steps (default: params bench.steps)")
    p.add_argument("--device", choices=DEVICES, help="default: params `device`")
    p.add_argument("--out", type=Path, help="also write the rows to this CSV file")
    p.add_argument("--capture", type=list_of("capture setting", ["auto", "on", "off"]), default=None,
                   help="comma-separated train.capture settings, each pair timed under each, side by side "
                        "(default: params train.capture); e.g. off,on")
    p.add_argument("--channels-last", type=list_of("layout setting", ["off", "on"]), default=None,
                   help="comma-separated train.channels_last settings (off,on: both, side by side)")


def aggregate(p: argparse.ArgumentParser, n: Names) -> None:
    p.add_argument("--out-dir", required=True, type=Path, help="suite results folder, e.g. results/demo")
    p.add_argument("metrics", nargs="+", metavar="METRICS_JSON",
                   help="metrics.json files of finished runs (or folders holding them)")


def figures(p: argparse.ArgumentParser, n: Names) -> None:
    p.add_argument("--runs-dir", required=True, type=Path, help="results/<suite>/runs")
    p.add_argument("--out-dir", required=True, type=Path, help="results/<suite>/figures")
    p.add_argument("--table", type=Path, default=None,
                   help="table.csv of `dfg aggregate` (default: recompute the accuracy summary from the runs)")


def study(p: argparse.ArgumentParser, n: Names) -> None:
    p.add_argument("--results", type=Path, default=Path("results"),
                   help="folder holding the suites' results (fmnist-full/, fmnist-fixed-split/, dfg-slope02/)")
    p.add_argument("--out-dir", type=Path, default=Path("results/study"), help="where the report goes")


def dvc_yaml(p: argparse.ArgumentParser, n: Names) -> None:
    p.add_argument("--out", type=Path, default=None,
                   help="file to write (default: dvc.yaml for the suite named in params.yaml, "
                        "results/<suite>/dvc.yaml for another suite)")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 when --out differs from the generated text")


def gpu_lease(p: argparse.ArgumentParser, n: Names) -> None:
    p.add_argument("--lock-dir", type=Path, default=None,
                   help="lock files (default: $DFG_GPU_LOCK_DIR or .dfg-gpu-locks)")
    p.add_argument("--jobs-per-gpu", type=int, default=None, metavar="K",
                   help="hand each GPU out K times (default: $DFG_JOBS_PER_GPU, which the workflow sets from "
                        "train.jobs_per_gpu, else 1)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...: the command to run")


def params(p: argparse.ArgumentParser, n: Names) -> None:
    p.add_argument("key", nargs="?", help="a dotted key to print only that part (e.g. train.steps)")


def verify(p: argparse.ArgumentParser, n: Names) -> None:
    p.add_argument("--select", action="append", default=[], metavar="GLOB",
                   help="runs to verify as TASK/METHOD/seedK globs, e.g. 'fmnist-synth/dfg/*' (repeatable; "
                        "default: every run of the suite)")
    p.add_argument("--scratch", type=Path, default=None,
                   help="folder for the reruns (default: a new temporary folder); never the project's")


def plan(p: argparse.ArgumentParser, n: Names) -> None:
    p.add_argument("--format", choices=["text", "markdown"], default="text", help="plain text or a Markdown table")
    p.add_argument("--rates", type=Path, help="step rates from a `dfg bench --out` CSV instead of the packaged "
                                              "H200 measurements")
    p.add_argument("--capture", choices=["graph", "static", "off"], default=None,
                   help="with --rates: the rows of this capture mode (default: graph)")


#: verb -> its arguments
CONFIGURE: dict[str, Callable[[argparse.ArgumentParser, Names], None]] = {
    "fetch": fetch, "prepare": prepare, "split": split, "fetch-weights": fetch_weights, "pretrain": pretrain,
    "train": train, "evaluate": evaluate, "bench": bench, "aggregate": aggregate, "figures": figures,
    "study": study, "dvc-yaml": dvc_yaml, "gpu-lease": gpu_lease, "params": params, "verify": verify,
    "plan": plan,
}
