"""The job plan of one suite: which jobs exist, what each reads and writes, and its `dfg` command line.

Snakemake (workflow/rules/common.smk) and the DVC generator (dfg.workflow.dvcgen) both ask this
module, so the two pipelines cannot drift: the same grid, the same paths (docs/architecture.md), the
same command for every job. Nothing here holds a number: every value comes from the validated
parameters, and the commands pass `--params/--suite` so each job re-reads them itself.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field

import yaml

from dfg.config import BASE_SUITE, identity, select

#: Datasets at most this many pixels on a side are held as arrays (architecture.md, prepared data);
#: larger ones are image files read by DataLoader workers, which need CPU threads of their own.
ARRAY_MAX_SIDE = 64

#: Source files each verb imports beyond dfg.cli/dfg.config: DVC deps, so editing a method reruns
#: training and nothing upstream. Paths that do not exist (yet) are skipped by the generator.
VERB_CODE: dict[str, tuple[str, ...]] = {
    "fetch": ("src/dfg/data",),
    "prepare": ("src/dfg/data",),
    "split": ("src/dfg/data",),
    "fetch_weights": ("src/dfg/models", "src/dfg/data"),
    "pretrain": ("src/dfg/pretrain.py", "src/dfg/loop.py", "src/dfg/batches.py", "src/dfg/runtime.py",
                 "src/dfg/metrics.py", "src/dfg/models", "src/dfg/data"),
    "train": ("src/dfg/train.py", "src/dfg/loop.py", "src/dfg/batches.py", "src/dfg/runtime.py",
              "src/dfg/metrics.py", "src/dfg/methods", "src/dfg/models", "src/dfg/data"),
    "aggregate": ("src/dfg/report",),
    "figures": ("src/dfg/report",),
}
#: Read by every verb: the loader and the schema that fills defaults.
COMMON_CODE = ("src/dfg/config.py", "workflow/schemas/params.schema.yaml")


@dataclass
class Job:
    """One job of the DAG, described for both Snakemake and DVC."""

    stage: str  # rule name = verb (fetch_weights for `dfg fetch-weights`)
    name: str  # unique, DVC-safe stage name
    cmd: list[str]
    deps: list[str]  # data the job reads (files or folders)
    outs: list[str]  # cached outputs (files or folders)
    metrics: list[str] = field(default_factory=list)  # small JSON outputs, kept in git (cache false)
    plots: list[str] = field(default_factory=list)  # CSV curves, kept in git (cache false)
    git_outs: list[str] = field(default_factory=list)  # the suite's tables and figures, kept in git (cache false)
    params: list[str] = field(default_factory=list)  # dotted parameter keys the verb reads
    home: str = ""  # the suite the job runs under (--suite): shared data jobs run under their home suite

    @property
    def shell(self) -> str:
        return shlex.join(self.cmd)


class Plan:
    """The grid of a suite (run.tasks x run.methods x run.seeds, closed over init_from_run) and its jobs."""

    def __init__(self, params: dict, params_file: str = "params.yaml") -> None:
        from dfg.data.registry import DATASETS
        from dfg.methods import METHODS

        self.params = params
        self.params_file = params_file
        self.suite: str = params["suite"]
        with open(params_file) as f:
            self.base_raw: dict = yaml.safe_load(f) or {}
        self._home_params: dict[str, dict] = {}
        self.data_root: str = params["data"]["root"]
        self._datasets = DATASETS
        self._methods = METHODS
        run = params["run"]
        self.tasks: list[str] = list(run["tasks"])
        self.seeds: list[int] = list(run["seeds"])
        self.methods: list[str] = self._close_methods(list(run["methods"]))

    # -- the grid ------------------------------------------------------------------------------------
    def _close_methods(self, methods: list[str]) -> list[str]:
        """run.methods plus every method whose final model another one starts from (crt <- finetune)."""
        out = list(methods)
        i = 0
        while i < len(out):
            init = self.method_class(out[i]).init_from_run
            if init and init not in out:
                out.append(init)
            i += 1
        return out

    def method_class(self, method: str):
        """The Method class a run.methods entry runs (a variant's: that of the method it varies)."""
        from dfg.methods.variants import method_spec

        return method_spec(self.params, method).cls

    def needs_source(self, method: str) -> bool:
        return bool(self.method_class(method).needs_source)

    def init_from(self, method: str) -> str | None:
        return self.method_class(method).init_from_run

    def has_artefacts(self, method: str) -> bool:
        """Methods that override Method.artefacts() write artefacts.pt (dfg, difa_cmwgan)."""
        from dfg.methods.base import Method

        return self.method_class(method).artefacts is not Method.artefacts

    def runs(self) -> list[tuple[str, str, int]]:
        """Every (task, method, seed) trained by this suite, dependencies included, less the methods a
        task excludes (tasks.<t>.exclude_methods)."""
        return [
            (t, m, s)
            for t in self.tasks
            for m in self.methods
            if m not in self.params["tasks"][t].get("exclude_methods", [])
            for s in self.seeds
        ]

    def reported_runs(self) -> list[tuple[str, str, int]]:
        """The runs that go into the tables: run.methods only (not pulled-in dependencies)."""
        listed = set(self.params["run"]["methods"])
        return [r for r in self.runs() if r[1] in listed]

    def split_seed(self, seed: int | str) -> int:
        """The split a run of training seed `seed` reads: run.split_seed where the suite fixes one, else
        its own seed."""
        fixed = self.params["run"].get("split_seed")
        return int(seed) if fixed is None else int(fixed)

    def split_seeds(self) -> list[int]:
        """The splits this suite builds (one per seed, or the one run.split_seed names)."""
        return list(dict.fromkeys(self.split_seed(s) for s in self.seeds))

    def task(self, task: str) -> dict:
        return self.params["tasks"][task]

    def source(self, name: str) -> dict:
        return self.params["sources"][name]

    def sources(self) -> list[str]:
        """Source models some run loads (a task whose methods all start from scratch needs none)."""
        out: list[str] = []
        for t in self.tasks:
            if any(self.needs_source(m) for m in self.methods):
                s = self.task(t)["source"]
                if s not in out:
                    out.append(s)
        return out

    def pretrained_sources(self) -> list[str]:
        return [s for s in self.sources() if not self.source(s).get("weights")]

    def weight_sources(self) -> list[str]:
        return [s for s in self.sources() if self.source(s).get("weights")]

    def datasets(self) -> list[str]:
        """Target datasets of the tasks and source datasets of the sources to pre-train."""
        out: list[str] = []
        for ds in [self.task(t)["dataset"] for t in self.tasks] + [
            self.source(s)["dataset"] for s in self.pretrained_sources()
        ]:
            if ds not in out:
                out.append(ds)
        return out

    def needs_fetch(self, dataset: str) -> bool:
        """Offline datasets (synthdigits, sklearn-digits) list no files and are generated by prepare."""
        return bool(self._datasets.get(dataset).files)

    def fetched_datasets(self) -> list[str]:
        return [d for d in self.datasets() if self.needs_fetch(d)]

    def is_array_dataset(self, dataset: str) -> bool:
        return self._datasets.get(dataset).image_size <= ARRAY_MAX_SIDE

    # -- paths (docs/architecture.md, "Paths") --------------------------------------------------------
    def raw_dir(self, dataset: str) -> str:
        return f"{self.data_root}/raw/{dataset}"

    def prepared_dir(self, dataset: str) -> str:
        return f"{self.data_root}/prepared/{dataset}"

    def split_file(self, task: str, seed: int | str) -> str:
        return f"{self.data_root}/splits/{task}/seed{seed}.json"

    def weights_raw_dir(self, source: str) -> str:
        return f"{self.data_root}/raw/weights/{source}"

    @staticmethod
    def source_model(source: str) -> str:
        return f"models/source/{source}.pt"

    def run_model(self, task: str, method: str, seed: int | str) -> str:
        return f"models/{self.suite}/runs/{task}/{method}/seed{seed}.pt"

    def run_dir(self, task: str, method: str, seed: int | str) -> str:
        return f"results/{self.suite}/runs/{task}/{method}/seed{seed}"

    def run_files(self, task: str, method: str, seed: int | str) -> dict[str, str]:
        d = self.run_dir(task, method, seed)
        files = {"metrics": f"{d}/metrics.json", "curves": f"{d}/curves.csv"}
        if self.has_artefacts(method):
            files["artefacts"] = f"{d}/artefacts.pt"
        return files

    def results_dir(self) -> str:
        return f"results/{self.suite}"

    def table_files(self) -> dict[str, str]:
        d = self.results_dir()
        return {"csv": f"{d}/table.csv", "md": f"{d}/table.md", "tex": f"{d}/table.tex",
                "extra": f"{d}/table_extra.md", "tests": f"{d}/paired_tests.csv"}

    def figures_dir(self) -> str:
        return f"{self.results_dir()}/figures"

    def final_outputs(self) -> list[str]:
        return list(self.table_files().values()) + [self.figures_dir()]

    # -- what each job reads -------------------------------------------------------------------------
    def train_inputs(self, task: str, method: str, seed: int | str) -> dict[str, str]:
        """Only what the run reads: `original` gets no source model, crt gets the finetune model."""
        t = self.task(task)
        inputs = {"split": self.split_file(task, self.split_seed(seed)), "prepared": self.prepared_dir(t["dataset"])}
        if self.needs_source(method):
            inputs["source"] = self.source_model(t["source"])
        init = self.init_from(method)
        if init:
            inputs["init_run"] = self.run_model(task, init, seed)
        return inputs

    def pretrain_inputs(self, source: str) -> dict[str, str]:
        return {"prepared": self.prepared_dir(self.source(source)["dataset"])}

    def all_metrics(self) -> list[str]:
        return [self.run_files(*r)["metrics"] for r in self.reported_runs()]

    def figure_inputs(self) -> list[str]:
        return [f for r in self.reported_runs() for f in self.run_files(*r).values()]

    # -- commands (architecture.md, "CLI": every path explicit) --------------------------------------
    # Data, splits and source models are shared by all suites (architecture.md): their jobs run under
    # the suite that defines the name (params.yaml itself = the base suite, unless only the active
    # suite's overlay defines it), so switching suites neither changes their command nor reruns them.
    def home_suite(self, section: str | None = None, name: str | None = None) -> str:
        if section is None:
            return self.suite
        if section == "datasets" or name in (self.base_raw.get(section) or {}):
            return BASE_SUITE
        return self.suite

    def home_params(self, section: str | None = None, name: str | None = None) -> dict:
        home = self.home_suite(section, name)
        if home == self.suite:
            return self.params
        if home not in self._home_params:
            from dfg.config import load_params

            self._home_params[home] = load_params(self.params_file, home)
        return self._home_params[home]

    def _dfg(self, home: str, *args: str) -> list[str]:
        return ["dfg", "--params", self.params_file, "--suite", home, *args]

    def fetch_cmd(self, dataset: str) -> list[str]:
        return self._dfg(BASE_SUITE, "fetch", dataset, "--out", self.raw_dir(dataset))

    def prepare_cmd(self, dataset: str) -> list[str]:
        raw = ["--raw", self.raw_dir(dataset)] if self.needs_fetch(dataset) else []
        return self._dfg(BASE_SUITE, "prepare", dataset, *raw, "--out", self.prepared_dir(dataset))

    def split_cmd(self, task: str, seed: int | str) -> list[str]:
        return self._dfg(self.home_suite("tasks", task), "split", task, "--seed", str(seed),
                         "--prepared", self.prepared_dir(self.task(task)["dataset"]),
                         "--out", self.split_file(task, seed))

    def fetch_weights_cmd(self, source: str) -> list[str]:
        return self._dfg(self.home_suite("sources", source), "fetch-weights", source, "--raw", self.weights_raw_dir(source),
                         "--out", self.source_model(source))

    def pretrain_cmd(self, source: str) -> list[str]:
        return self._dfg(self.home_suite("sources", source), "pretrain", source, "--prepared", self.pretrain_inputs(source)["prepared"],
                         "--out", self.source_model(source))

    def train_cmd(self, task: str, method: str, seed: int | str) -> list[str]:
        i = self.train_inputs(task, method, seed)
        opt: list[str] = []
        if "source" in i:
            opt += ["--source", i["source"]]
        if "init_run" in i:
            opt += ["--init-run", i["init_run"]]
        return self._dfg(self.suite, "train", task, method, "--seed", str(seed), "--split", i["split"],
                         "--prepared", i["prepared"], *opt, "--out-model", self.run_model(task, method, seed),
                         "--out-dir", self.run_dir(task, method, seed))

    def aggregate_cmd(self) -> list[str]:
        return self._dfg(self.suite, "aggregate", "--out-dir", self.results_dir(), *self.all_metrics())

    def figures_cmd(self) -> list[str]:
        return self._dfg(self.suite, "figures", "--runs-dir", f"{self.results_dir()}/runs", "--out-dir", self.figures_dir())

    # -- parameter keys each verb reads (DVC params; Snakemake params, so a change reruns the job) ---
    def keys(self, stage: str, *names: str) -> list[str]:
        """The dotted keys `dfg <stage>` reads for the job `names` (dataset, task/method, source)."""
        if stage == "fetch":
            return ["fetch"]
        if stage == "prepare":
            (dataset,) = names
            keys = []
            block = dataset.replace("-", "_")
            if block in self.params.get("prepare", {}):
                keys.append(f"prepare.{block}")
            if not self.is_array_dataset(dataset):
                keys += ["prepare.image_size", "prepare.jpeg_quality"]
            return keys
        if stage == "split":
            return [f"tasks.{names[0]}.dataset", f"tasks.{names[0]}.split"]
        if stage == "fetch_weights":
            return [f"sources.{names[0]}", "fetch"]
        if stage == "pretrain":
            return [f"sources.{names[0]}", "device", *self._portable(self.home_params("sources", names[0]))]
        if stage == "train":
            task, method = names[:2]
            variant = (self.params.get("variants") or {}).get(method)
            hp = [f"methods.{variant['of']}", f"variants.{method}"] if variant else [f"methods.{method}"]
            return [f"tasks.{task}", "train", *hp, "device", *self._portable(self.params)]
        if stage == "aggregate":
            return ["aggregate"] + [f"tasks.{t}.paper_column" for t in self.tasks] + self._portable(self.params)
        if stage == "figures":
            return ["figures", *self._portable(self.params)]
        raise KeyError(stage)

    @staticmethod
    def _portable(params: dict) -> list[str]:
        """`portable_cpu` is a key of the verbs it pins (dfg.portable.VERBS) only where it is on: the fast
        mode is the absence of pinning, so a fast job keeps the parameter identity it had before the mode
        existed, and switching the mode either way still changes the job's values (reruns it)."""
        return ["portable_cpu"] if params.get("portable_cpu") else []

    @staticmethod
    def home_of(stage: str) -> str | None:
        """Which params section names the job (its home suite decides which params it runs under)."""
        return {"prepare": "datasets", "fetch": "datasets", "split": "tasks", "fetch_weights": "sources",
                "pretrain": "sources"}.get(stage)

    def values(self, stage: str, *names: str) -> str:
        """The resolved values of the job's keys, as canonical JSON: a Snakemake param, so changing
        `methods.dfg` reruns the dfg runs and nothing else (what DVC's params do for `dvc repro`)."""
        params = self.home_params(self.home_of(stage), names[0] if names else None)
        out = {}
        for k in self.keys(stage, *names):
            try:
                out[k] = identity(k, select(params, k))
            except (KeyError, TypeError):
                out[k] = None
        return json.dumps(out, sort_keys=True, default=str)

    # -- the whole DAG ---------------------------------------------------------------------------------
    def jobs(self) -> list[Job]:
        """Every job of the suite in dependency order (what `dvc.yaml` lists as stages)."""
        jobs: list[Job] = []
        for ds in self.fetched_datasets():
            jobs.append(Job("fetch", f"fetch_{ds}", self.fetch_cmd(ds), [], [self.raw_dir(ds)],
                            params=self.keys("fetch", ds), home=BASE_SUITE))
        for ds in self.datasets():
            deps = [self.raw_dir(ds)] if self.needs_fetch(ds) else []
            jobs.append(Job("prepare", f"prepare_{ds}", self.prepare_cmd(ds), deps, [self.prepared_dir(ds)],
                            params=self.keys("prepare", ds), home=BASE_SUITE))
        for task in self.tasks:
            ds = self.task(task)["dataset"]
            for seed in self.split_seeds():
                jobs.append(Job("split", f"split_{task}_seed{seed}", self.split_cmd(task, seed),
                                [self.prepared_dir(ds)], [self.split_file(task, seed)],
                                params=self.keys("split", task), home=self.home_suite("tasks", task)))
        for s in self.weight_sources():
            jobs.append(Job("fetch_weights", f"fetch_weights_{s}", self.fetch_weights_cmd(s), [],
                            [self.weights_raw_dir(s), self.source_model(s)], params=self.keys("fetch_weights", s),
                            home=self.home_suite("sources", s)))
        for s in self.pretrained_sources():
            jobs.append(Job("pretrain", f"pretrain_{s}", self.pretrain_cmd(s),
                            list(self.pretrain_inputs(s).values()), [self.source_model(s)],
                            params=self.keys("pretrain", s), home=self.home_suite("sources", s)))
        for task, method, seed in self.runs():
            files = self.run_files(task, method, seed)
            outs = [self.run_model(task, method, seed)] + ([files["artefacts"]] if "artefacts" in files else [])
            jobs.append(Job("train", f"train_{task}_{method}_seed{seed}", self.train_cmd(task, method, seed),
                            list(self.train_inputs(task, method, seed).values()), outs,
                            metrics=[files["metrics"]], plots=[files["curves"]],
                            params=self.keys("train", task, method), home=self.suite))
        jobs.append(Job("aggregate", "aggregate", self.aggregate_cmd(), self.all_metrics(), [],
                        git_outs=list(self.table_files().values()), params=self.keys("aggregate"),
                        home=self.suite))
        jobs.append(Job("figures", "figures", self.figures_cmd(), self.figure_inputs(), [],
                        git_outs=[self.figures_dir()], params=self.keys("figures"), home=self.suite))
        return jobs

