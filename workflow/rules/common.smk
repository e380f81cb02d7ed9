# The workflow's logic, in one place: load and validate the parameters once, expand the grid, and give
# every rule its inputs, command, threads and resources. The rule files (fetch.smk ... figures.smk) hold
# rules only and ask the functions below.
#
# The grid, the paths and the command lines come from dfg.workflow.plan, which `dfg dvc-yaml` uses too:
# Snakemake and DVC run the same jobs with the same commands.

import math
import os
import re
import shlex
import sys

import yaml
from snakemake.exceptions import WorkflowError

from dfg import DfgError
from dfg.config import BASE_SUITE, deep_merge, load_params, suite_file
from dfg.workflow.gpu_lease import JOBS_PER_GPU_ENV, job_gpu_resources
from dfg.workflow.plan import Plan
from dfg.workflow.preflight import check_buildable, unfetchable


PARAMS_FILE = "params.yaml"  # the jobs re-read it (with --suite), so workflow and jobs see one set of numbers


def _read_yaml(path):
    with open(path) as f:
        return yaml.safe_load(f) or {}


def _check_config_is_suite_only(cfg, suite):
    """Snakemake's --config/--configfile may only pick a suite: a number changed there would reach the
    DAG but not the jobs, which read params.yaml + the suite file themselves."""
    raw = _read_yaml(PARAMS_FILE)
    allowed = [raw]
    overlay = suite_file(suite, os.path.abspath("."))
    if suite != BASE_SUITE and overlay.exists():
        allowed.append(deep_merge(raw, _read_yaml(overlay)))
    strip = lambda d: {k: v for k, v in d.items() if k != "suite"}
    if all(strip(cfg) != strip(a) for a in allowed):
        changed = sorted(k for k in set(cfg) | set(allowed[-1]) if k != "suite" and cfg.get(k) != allowed[-1].get(k))
        raise DfgError(
            f"snakemake --config/--configfile changed {', '.join(changed)}; only the suite can be chosen "
            f"there (--config suite=NAME or --configfile workflow/suites/NAME.yaml), because the jobs read "
            f"params.yaml and workflow/suites/NAME.yaml themselves: put the values in a suite file"
        )


def _gpu_visible():
    """A CUDA device on the host that runs Snakemake (device: auto), found without importing torch."""
    from dfg.workflow.gpu_lease import candidate_devices, count_gpus

    return bool(candidate_devices()) and count_gpus() > 0


try:
    PARAMS = load_params(PARAMS_FILE, config.get("suite"))
    _check_config_is_suite_only(config, PARAMS["suite"])
    PLAN = Plan(PARAMS, PARAMS_FILE)
    check_buildable(PLAN)
except DfgError as e:
    raise WorkflowError(f"dfg: {e}") from None

SUITE = PLAN.suite
#: resources: gpu=1 for training and pre-training when they will run on CUDA (device: cuda, or auto
#: with a GPU on this host). The SLURM profile sets gpu=1 itself: compute nodes, not the submit host,
#: hold the GPUs there.
GPU = 1 if PARAMS["device"] == "cuda" or (PARAMS["device"] == "auto" and _gpu_visible()) else 0
#: K training jobs per GPU at once (train.jobs_per_gpu): each job then claims one `gpu_slot`, of which
#: `--resources gpu=N` provides N x K; `dfg gpu-lease` reads K from DFG_JOBS_PER_GPU (jobs inherit it).
JOBS_PER_GPU = int(PARAMS["train"]["jobs_per_gpu"])
os.environ[JOBS_PER_GPU_ENV] = str(JOBS_PER_GPU)
_provided_gpus = getattr(workflow.global_resources.get("gpu"), "value", None)
GPU_RESOURCES, _gpu_slots = job_gpu_resources(bool(GPU), JOBS_PER_GPU, _provided_gpus)
if _gpu_slots is not None:
    workflow.register_resource("gpu_slot", _gpu_slots)

# Memory ceilings per backbone (MB) for cluster requests: LeNet-5 and 32-px data fit in well under 2 GB;
# VGG-16 (138 M parameters + Adam state + 25088x4096 head) and ResNet-50 with a 224-px DataLoader need
# several GB of host memory. Upper bounds, not measurements: override with --set-resources.
MEM_MB = {"lenet5": 2000, "vgg16": 8000, "resnet50": 16000}
# Pessimistic seconds per training step (CPU for LeNet-5, GPU for the others), for the SLURM time
# limit: runtime = steps x this + RUNTIME_MARGIN_MIN. Upper bounds, from `dfg bench` orders of magnitude.
STEP_SECONDS = {"lenet5": 0.5, "vgg16": 0.3, "resnet50": 0.6}
# Minutes per pre-training epoch, pessimistic, same use.
EPOCH_MINUTES = {"lenet5": 1.0, "vgg16": 3.0, "resnet50": 10.0}
RUNTIME_MARGIN_MIN = 10


def _alternatives(names):
    return "|".join(re.escape(str(n)) for n in names)


wildcard_constraints:
    task=_alternatives(PLAN.tasks),
    method=_alternatives(PLAN.methods),
    seed=_alternatives(dict.fromkeys([*PLAN.seeds, *PLAN.split_seeds()])),
    dataset=_alternatives(PLAN.datasets()),
    source=_alternatives(PLAN.sources() or ["-"]),


# -- targets ---------------------------------------------------------------------------------------------
def final_outputs():
    """The target of `all`: the active suite's tables and figures."""
    return PLAN.final_outputs()


def artefact_methods():
    """Methods that also write artefacts.pt (a second train rule declares it)."""
    return _alternatives([m for m in PLAN.methods if PLAN.has_artefacts(m)] or ["-"])


def weight_sources():
    """Sources obtained by `dfg fetch-weights` (the others are pre-trained)."""
    return _alternatives(PLAN.weight_sources() or ["-"])


def pretrained_sources():
    return _alternatives(PLAN.pretrained_sources() or ["-"])


def log_path(stage, *parts):
    """logs/<suite>/<stage>/<parts>.log; the path of a job's log, next to no output of its own."""
    return os.path.join("logs", SUITE, stage, *parts) + ".log"


def benchmark_path(stage, *parts):
    return os.path.join("benchmarks", SUITE, stage, *parts) + ".tsv"


def run_file(name):
    """results/<suite>/runs/{task}/{method}/seed{seed}/<name>, with the wildcards left to Snakemake."""
    return os.path.join(PLAN.run_dir("{task}", "{method}", "{seed}"), name)


#: The software of every rule (used with --software-deployment-method conda).
CONDA_ENV = "../envs/dfg.yaml"


# -- the dfg every job runs --------------------------------------------------------------------------------
def _dfg_of_this_python():
    """Put the bin folder of the Python that runs Snakemake first on every job's PATH, so that the rules'
    `dfg` is this Python's. A cron job, an IDE, a cluster submit script, or the SLURM executor's jobs (which
    run Snakemake again with this interpreter on the node) start Snakemake by its path, with no virtualenv
    activated: `dfg` on PATH would be missing or another installation. A shell prefix rather than a rule
    param, so that moving the virtualenv does not mark every job's parameters as changed. With
    --software-deployment-method conda each job runs in workflow/envs/dfg.yaml, whose activation puts its
    own dfg first: the prefix (applied inside that activation) must not hide it."""
    from snakemake.settings.types import DeploymentMethod

    if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method:
        return
    bindir = shlex.quote(os.path.dirname(sys.executable))
    shell.prefix(f'set -euo pipefail; export PATH={bindir}:"$PATH"; ')


_dfg_of_this_python()


# -- commands (one dfg verb per rule, every path explicit) ------------------------------------------------
def fetch_cmd(wildcards):
    return shlex.join(PLAN.fetch_cmd(wildcards.dataset))


def prepare_cmd(wildcards):
    return shlex.join(PLAN.prepare_cmd(wildcards.dataset))


def split_cmd(wildcards):
    return shlex.join(PLAN.split_cmd(wildcards.task, wildcards.seed))


def fetch_weights_cmd(wildcards):
    return shlex.join(PLAN.fetch_weights_cmd(wildcards.source))


def pretrain_cmd(wildcards):
    return shlex.join(PLAN.pretrain_cmd(wildcards.source))


def train_cmd(wildcards):
    return shlex.join(PLAN.train_cmd(wildcards.task, wildcards.method, wildcards.seed))


def aggregate_cmd(wildcards):
    return shlex.join(PLAN.aggregate_cmd())


def figures_cmd(wildcards):
    return shlex.join(PLAN.figures_cmd())


# -- parameter values each job reads: a Snakemake param, so editing one reruns exactly its jobs ----------
def fetch_values(wildcards):
    return PLAN.values("fetch", wildcards.dataset)


def prepare_values(wildcards):
    return PLAN.values("prepare", wildcards.dataset)


def split_values(wildcards):
    return PLAN.values("split", wildcards.task)


def fetch_weights_values(wildcards):
    return PLAN.values("fetch_weights", wildcards.source)


def pretrain_values(wildcards):
    return PLAN.values("pretrain", wildcards.source)


def train_values(wildcards):
    return PLAN.values("train", wildcards.task, wildcards.method)


def aggregate_values(wildcards):
    return PLAN.values("aggregate")


def figures_values(wildcards):
    return PLAN.values("figures")


# -- inputs ----------------------------------------------------------------------------------------------
def prepare_inputs(wildcards):
    """Raw files for downloaded datasets; nothing for the ones generated offline."""
    if PLAN.needs_fetch(wildcards.dataset):
        return {"raw": PLAN.raw_dir(wildcards.dataset)}
    return {}


def split_inputs(wildcards):
    return {"prepared": PLAN.prepared_dir(PLAN.task(wildcards.task)["dataset"])}


def pretrain_inputs(wildcards):
    return PLAN.pretrain_inputs(wildcards.source)


def train_inputs(wildcards):
    """What the run reads and nothing else: `original` waits for no source model."""
    return PLAN.train_inputs(wildcards.task, wildcards.method, wildcards.seed)


def aggregate_inputs(wildcards):
    return PLAN.all_metrics()


def figures_inputs(wildcards):
    return PLAN.figure_inputs()


# -- threads and resources -------------------------------------------------------------------------------
def _backbone_of_task(task):
    return PLAN.source(PLAN.task(task)["source"])["backbone"]


def _cpu_threads():
    """The threads a CPU run computes with (train.cpu_threads, which `dfg` itself applies; 0 = all cores)."""
    return PARAMS["train"]["cpu_threads"] or workflow.cores


def train_threads(wildcards):
    """On the CPU train.cpu_threads (1 by default: 32-px jobs run side by side), on a GPU 2 for 32-px data;
    a 224-px dataset has its DataLoader workers (train.num_workers) besides."""
    ds = PLAN.task(wildcards.task)["dataset"]
    if PLAN.is_array_dataset(ds):
        return 2 if GPU else _cpu_threads()
    return PARAMS["train"]["num_workers"] + (1 if GPU else _cpu_threads())


def train_mem_mb(wildcards):
    return MEM_MB[_backbone_of_task(wildcards.task)]


def train_runtime(wildcards):
    """SLURM time limit (minutes) from the suite's train.steps."""
    steps = PARAMS["train"]["steps"]
    return math.ceil(steps * STEP_SECONDS[_backbone_of_task(wildcards.task)] / 60) + RUNTIME_MARGIN_MIN


def pretrain_threads(wildcards):
    return 2 if GPU else _cpu_threads()


def prepare_mem_mb(wildcards):
    """Array datasets are converted in memory (CINIC-10: 270 000 32-px images); image datasets stream."""
    return 4000


def pretrain_mem_mb(wildcards):
    return MEM_MB[PLAN.source(wildcards.source)["backbone"]]


def pretrain_runtime(wildcards):
    src = PLAN.source(wildcards.source)
    return math.ceil(src["epochs"] * EPOCH_MINUTES[src["backbone"]]) + RUNTIME_MARGIN_MIN


# -- start and end of the run ----------------------------------------------------------------------------
onstart:
    # A real run (not a dry run), before any job: stop at once when a dataset can come neither from a
    # mirror nor from the network, instead of failing later beside half-finished training jobs.
    _blockers = unfetchable(PLAN)
    if _blockers:
        print("dfg: " + "\n".join(_blockers), file=sys.stderr)
        raise WorkflowError(f"dfg: {len(_blockers)} input(s) cannot be fetched here; see the message above")


# -- end of the run --------------------------------------------------------------------------------------
onsuccess:
    table = PLAN.table_files()["md"]
    if os.path.exists(table):
        print(f"\n{table}:\n")
        with open(table) as f:
            print(f.read())
