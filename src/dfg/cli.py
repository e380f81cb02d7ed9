"""The one command line: `dfg <verb> ...`. Snakemake rules and DVC stages call these verbs.

Each verb's arguments live in dfg.arguments (nothing heavy imported, so help and argument errors come back
at once); its work lives in its own module, which exposes `main(args, params) -> int | None` and is
imported only once the arguments have parsed. `--params` and `--suite` may stand before or after the verb.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path

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
    "study": ("dfg.report.study", "the two experiments on why DFG's number does not reproduce, from three suites"),
    "plan": ("dfg.workflow.cost", "a suite's jobs, GPU-hours and disk, before running it"),
    "dvc-yaml": ("dfg.workflow.dvcgen", "generate dvc.yaml from the Snakemake workflow"),
    "gpu-lease": ("dfg.workflow.gpu_lease", "run a command on a leased GPU (one of CUDA_VISIBLE_DEVICES)"),
    "params": ("dfg.workflow.show_params", "print the resolved, validated parameters of a suite"),
    "verify": ("dfg.verify", "re-run a suite's committed runs in a scratch folder and compare the metrics"),
}
#: Verbs that never read params.yaml (they only wrap another command).
NO_PARAMS = frozenset({"gpu-lease"})

DESCRIPTION = "dfg: train and compare methods for imbalanced classification (DFG and baselines) on one task, " \
              "seed and suite at a time; the Snakemake workflow runs these verbs."
EXAMPLES = """examples:
  dfg train fmnist-synth dfg --seed 0          one run of the demo suite (params.yaml)
  dfg --suite fmnist-full params run           a suite's grid, as the workflow resolves it
  dfg plan --suite paper                       jobs, GPU-hours and disk of the paper suite

Whole suites run through the workflow: `snakemake --cores all --resources gpu=1` (README)."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors that name where the help is (the usage block says less than that)."""

    def error(self, message: str):  # type: ignore[override]
        print(f"{self.prog}: error: {message}; see `{self.prog} --help`", file=sys.stderr)
        raise SystemExit(2)


def version() -> str:
    from importlib import metadata

    try:
        return metadata.version("dfg")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree without install
        return "unknown"


def _global_options(parser: argparse.ArgumentParser, top: bool) -> None:
    """--params and --suite, accepted before the verb (top) and after it (the verb's parser; suppressed
    defaults there, so a value given before the verb is not reset)."""
    default = (lambda v: v) if top else (lambda v: argparse.SUPPRESS)
    parser.add_argument("--params", default=default("params.yaml"), help="parameter file (default: params.yaml)")
    parser.add_argument("--suite", default=default(None), help="suite overlay (workflow/suites/NAME.yaml); "
                        "default: the `suite` key of the parameter file")
    parser.add_argument("-v", "--verbose", action="store_true", default=default(False), help="debug logging")


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = Parser(prog="dfg", description=DESCRIPTION, epilog=EXAMPLES,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    _global_options(parser, top=True)
    parser.add_argument("--version", action="version", version=f"dfg {version()}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True, parser_class=Parser)
    subs = {}
    for verb, (_, help_) in VERBS.items():
        subs[verb] = sub.add_parser(verb, help=help_, description=help_)
        _global_options(subs[verb], top=False)
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


def global_values(argv: list[str]) -> tuple[str, str | None]:
    """(--params, --suite) wherever they stand in argv; the last one given wins, as argparse's would."""
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--params", default="params.yaml")
    pre.add_argument("--suite", default=None)
    known, _ = pre.parse_known_args(argv[:argv.index("--")] if "--" in argv else argv)
    return known.params, known.suite


def main(argv: list[str] | None = None) -> int:
    """The `dfg` command. Called without `argv` (as the command), a verb whose parameters ask for the
    portable CPU mode first starts the process again with that mode's environment (dfg.portable), before
    torch is imported; called with `argv` (in-process, e.g. from tests), it never replaces the process."""
    as_command = argv is None
    argv = sys.argv[1:] if argv is None else argv
    parser, subs = build_parser()
    # Find the verb first (without parsing, so `dfg VERB --help` reaches the verb's own arguments), give
    # that verb its arguments (the names they accept come from the suite's params), then parse everything.
    verb = find_verb(argv)
    if verb is None:
        try:
            parser.parse_args(argv)  # prints help or the version (exit 0), or an error
        except SystemExit as e:
            if e.code:
                return int(e.code)
            raise
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
    from dfg.arguments import CONFIGURE, known_names
    from dfg.config import load_params, project_root

    params, params_error = None, None
    params_file, suite = global_values(argv)
    if verb not in NO_PARAMS:
        try:
            params = load_params(params_file, suite)
        except DfgError as e:  # reported after parsing, so that --help still works without a project
            params_error = e
    CONFIGURE[verb](subs[verb], known_names(params, project_root(params_file) if Path(params_file).exists() else None))
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # an argument error (one line, printed) returns 2; --help exits 0
        if e.code:
            return int(e.code)
        raise
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        if params_error is not None:
            raise params_error
        module = importlib.import_module(VERBS[verb][0])
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
