"""The one command line: `dfg <verb> ...`. Snakemake rules and DVC stages call these verbs.

Each verb lives in its own module, which exposes `configure(parser)` (its arguments) and
`main(args, params) -> int | None`. Modules are imported lazily so `dfg --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from dfg import DfgError, portable

# verb -> (module, one-line help)
VERBS: dict[str, tuple[str, str]] = {
    "fetch": ("dfg.data.fetch", "obtain a dataset's raw files (local mirrors first, then download)"),
    "prepare": ("dfg.data.prepare", "convert raw files to the prepared arrays / resized images"),
    "split": ("dfg.data.splits", "build a seeded imbalanced split of a task's training set"),
    "fetch-weights": ("dfg.models.weights", "obtain pre-trained weights (e.g. resnet50-imagenet)"),
    "pretrain": ("dfg.pretrain", "train a source model (LeNet-5 / VGG-16) on its source dataset"),
    "train": ("dfg.train", "train one method on one task for one seed; write checkpoint and metrics"),
    "evaluate": ("dfg.evaluate", "re-evaluate a saved model on a task's test set"),
    "bench": ("dfg.bench", "time training steps of each method x backbone on random data"),
    "aggregate": ("dfg.report.aggregate", "collect run metrics into the suite's tables"),
    "figures": ("dfg.report.figures", "draw the suite's figures"),
    "dvc-yaml": ("dfg.workflow.dvcgen", "generate dvc.yaml from the Snakemake workflow"),
    "gpu-lease": ("dfg.workflow.gpu_lease", "run a command on a leased GPU (one of CUDA_VISIBLE_DEVICES)"),
    "params": ("dfg.workflow.show_params", "print the resolved, validated parameters of a suite"),
    "verify": ("dfg.verify", "re-run a suite's committed runs in a scratch folder and compare the metrics"),
}


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(prog="dfg", description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", help="parameter file (default: params.yaml)")
    parser.add_argument("--suite", default=None, help="suite overlay (workflow/suites/NAME.yaml); "
                        "default: the `suite` key of the parameter file")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    subs = {}
    for verb, (_, help_) in VERBS.items():
        subs[verb] = sub.add_parser(verb, help=help_, description=help_)
    return parser, subs


GLOBAL_OPTIONS_WITH_VALUE = ("--params", "--suite")


def find_verb(argv: list[str]) -> str | None:
    """The first positional word of argv (global options and their values skipped), if it is a verb."""
    it = iter(argv)
    for word in it:
        if word in GLOBAL_OPTIONS_WITH_VALUE:
            next(it, None)
        elif not word.startswith("-"):
            return word if word in VERBS else None
    return None


def main(argv: list[str] | None = None) -> int:
    """The `dfg` command. Called without `argv` (as the command), a verb whose parameters ask for the
    portable CPU mode first starts the process again with that mode's environment (dfg.portable), before
    torch is imported; called with `argv` (in-process, e.g. from tests), it never replaces the process."""
    as_command = argv is None
    argv = sys.argv[1:] if argv is None else argv
    parser, subs = build_parser()
    # Find the verb first (without parsing, so `dfg VERB --help` reaches the verb's own arguments), let
    # that verb's module add its arguments, then parse everything.
    verb = find_verb(argv)
    if verb is None:
        parser.parse_args(argv)  # prints usage or help and exits
        return 2
    if verb in portable.VERBS and "-h" not in argv and "--help" not in argv:
        try:
            if as_command:
                portable.ensure(argv)  # returns only when the mode is in force or not asked for
            if portable.active():
                portable.apply()
        except DfgError as e:
            print(f"dfg {verb}: error: {e}", file=sys.stderr)
            return 2
    module = importlib.import_module(VERBS[verb][0])
    module.configure(subs[verb])
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        from dfg.config import load_params

        params = None if getattr(module, "NO_PARAMS", False) else load_params(args.params, args.suite)
        rc = module.main(args, params)
    except DfgError as e:
        print(f"dfg {verb}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dfg {verb}: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
