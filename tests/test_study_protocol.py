"""The study's protocol pieces: a split shared by every training seed (run.split_seed), a validation set
drawn from the images a split leaves unused (selection on validation data), and method variants."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from dfg import DfgError
from dfg.config import load_params
from dfg.data.splits import build_split
from dfg.report import aggregate
from dfg.report.runs import VAL_SELECTED, load_runs, val_selected
from dfg.report.stats import paired_tests
from dfg.train import run_training
from dfg.workflow.plan import Plan
from loop_fixtures import digits_task_with_source, make_params

ROOT = Path(__file__).resolve().parents[1]


def write_suite(project: Path, name: str, body: dict) -> None:
    (project / "workflow" / "suites" / f"{name}.yaml").write_text(yaml.safe_dump({"suite": name, **body}))


# -- validation carved out of a split --------------------------------------------------------------------
def fmnist_like_labels() -> np.ndarray:
    return np.repeat(np.arange(10), 6000)  # 6 000 training images per class, as F-MNIST


SPEC = {"profile": "step", "majority": 6000, "minority": 150, "n_minority": 8}


def test_validation_of_a_40_to_1_split_comes_from_unused_images_and_majority_training_images():
    labels = fmnist_like_labels()
    plain = build_split(labels, 10, SPEC, seed=0)
    split = build_split(labels, 10, {**SPEC, "val_per_class": 100}, seed=0)
    majority = [c for c in range(10) if c not in split["minority_classes"]]
    assert split["minority_classes"] == plain["minority_classes"]  # the same minority draw as without it
    assert np.bincount(labels[split["val_indices"]], minlength=10).tolist() == [100] * 10
    assert not set(split["indices"]) & set(split["val_indices"])
    # minority classes keep their 150 training images; the majority classes, which use all 6 000, give 100
    counts = [5900 if c in majority else 150 for c in range(10)]
    assert split["class_counts"] == counts
    assert np.bincount(labels[split["indices"]], minlength=10).tolist() == counts
    assert split["val_from_training"] == [100 if c in majority else 0 for c in range(10)]
    assert split["requested_class_counts"] == plain["class_counts"]
    assert split["imbalance_ratio"] == pytest.approx(5900 / 150)
    # training images are each class's first ones; the majority classes' validation images are their last 100
    for c in majority:
        assert sorted(labels[split["val_indices"]] == c) and \
            set(np.flatnonzero(labels == c)[5900:]) <= set(split["val_indices"])
    # minority validation images are a seeded draw among the 5 850 unused ones, not the next 100 in order
    c = split["minority_classes"][0]
    val_c = [i for i in split["val_indices"] if labels[i] == c]
    pool = np.flatnonzero(labels == c)
    assert set(val_c) <= set(pool[150:]) and val_c != list(pool[150:250])
    again = build_split(labels, 10, {**SPEC, "val_per_class": 100}, seed=0)
    other = build_split(labels, 10, {**SPEC, "val_per_class": 100}, seed=1)
    assert again == split and other["val_indices"] != split["val_indices"]


def test_a_split_without_validation_keeps_its_keys():
    split = build_split(fmnist_like_labels(), 10, SPEC, seed=0)
    assert split["val_indices"] == [] and "val_per_class" not in split and "val_from_training" not in split


def test_validation_that_would_leave_no_training_image_is_refused():
    with pytest.raises(DfgError, match=r"tasks\.t\.split.*val_per_class"):
        build_split(np.repeat(np.arange(3), 20), 3, {"profile": "balanced", "per_class": 20, "val_per_class": 20},
                    seed=0, key="tasks.t.split")


# -- one split for every training seed --------------------------------------------------------------------
def test_split_seed_sends_every_run_to_one_split(project):
    write_suite(project, "fixed", {"run": {"tasks": ["fmnist-synth"], "methods": ["original", "crt"],
                                           "seeds": [0, 1, 2], "split_seed": 0}})
    plan = Plan(load_params(project / "params.yaml", "fixed"), str(project / "params.yaml"))
    assert plan.split_seeds() == [0]
    assert {plan.train_inputs("fmnist-synth", m, s)["split"] for m in plan.methods for s in plan.seeds} == \
        {"data/splits/fmnist-synth/seed0.json"}
    assert [j.outs for j in plan.jobs() if j.stage == "split"] == [["data/splits/fmnist-synth/seed0.json"]]
    assert "--seed 2 --split data/splits/fmnist-synth/seed0.json" in plan.jobs()[-3].shell  # a train job
    default = Plan(load_params(project / "params.yaml"), str(project / "params.yaml"))
    assert default.split_seeds() == [0, 1, 2]
    assert default.train_inputs("fmnist-synth", "original", 2)["split"] == "data/splits/fmnist-synth/seed2.json"


# -- reports: selection on validation, pairing by split --------------------------------------------------
def test_val_selected_takes_the_test_accuracy_of_the_best_validation_evaluation():
    curve = pd.DataFrame({"step": [100, 200, 300, 400], "test_accuracy": [0.50, 0.80, 0.70, 0.60],
                          "val_accuracy": [0.40, 0.60, 0.75, 0.75]})
    assert val_selected(curve) == (0.70, 300)  # best validation at 300 (earliest of the tie), not test's 200
    assert np.isnan(val_selected(curve.drop(columns="val_accuracy"))[0])


def fabricate(root: Path, method: str, seed: int, acc: float, curve: dict, **extra) -> None:
    d = root / "t" / method / f"seed{seed}"
    d.mkdir(parents=True)
    m = {"task": "t", "method": method, "seed": seed, "accuracy": acc, "label": method.upper(),
         "split_sha256": extra.pop("sha", "a" * 64), **extra}
    (d / "metrics.json").write_text(json.dumps(m))
    pd.DataFrame(curve).to_csv(d / "curves.csv", index=False)


def test_tables_gain_selected_on_validation_only_where_runs_have_it(tmp_path):
    val = {"per_class": 100, "n_images": 1000, "from_training": [0, 100, 0]}
    for seed, (a, b) in enumerate([(0.70, 0.60), (0.74, 0.66), (0.72, 0.61)]):
        for method, acc in (("dfg", a), ("original", b)):
            fabricate(tmp_path / "v", method, seed, acc, {
                "step": [100, 200], "test_accuracy": [acc + 0.05, acc], "val_accuracy": [0.9, 0.8]},
                split_seed=0, validation=val)
            fabricate(tmp_path / "n", method, seed, acc, {"step": [100, 200], "test_accuracy": [acc + 0.05, acc]})
    params = {"suite": "s", "run": {"tasks": ["t"], "methods": ["original", "dfg"], "seeds": [0, 1, 2]},
              "tasks": {"t": {"paper_column": None}}, "aggregate": {"reference_method": "dfg"}}
    runs = load_runs([tmp_path / "v"])
    assert runs[VAL_SELECTED].round(4).tolist() == [0.75, 0.79, 0.77, 0.65, 0.71, 0.66]  # the step-100 points
    paths = aggregate.write_tables(runs, params, tmp_path / "out_v")
    md = paths["table.md"].read_text()
    assert "t: selected on validation" in md and "77.00 ± 2.00 (n=3)" in md
    assert "Split: one split, that of seed 0, for every run" in md
    assert "100 images per class" in md and "1 class(es) had too few unused images" in md
    assert "on split seed(s) 0" in paths["paired_tests.csv"].read_text()
    table = pd.read_csv(paths["table.csv"])
    assert set(table.metric) >= {VAL_SELECTED}
    plain = aggregate.write_tables(load_runs([tmp_path / "n"]), params, tmp_path / "out_n")
    assert "validation" not in plain["table.md"].read_text()
    assert VAL_SELECTED not in set(pd.read_csv(plain["table.csv"]).metric)


def test_paired_tests_pair_only_runs_of_one_split(tmp_path):
    for seed in range(3):
        fabricate(tmp_path, "dfg", seed, 0.8 + seed / 100, {"step": [1], "test_accuracy": [0.5]})
        fabricate(tmp_path, "original", seed, 0.7, {"step": [1], "test_accuracy": [0.5]},
                  sha=("b" if seed == 2 else "a") * 64)
    tests = paired_tests(load_runs([tmp_path]), "dfg", "accuracy", "s", ["original", "dfg"])
    row = tests.iloc[0]
    assert row.n_pairs == 2 and row.seeds == "0 1"
    assert "seed(s) 2 not paired: their runs trained on different splits" in row.note


# -- variants ---------------------------------------------------------------------------------------------
def test_variant_hyper_parameters_are_validated_by_the_base_schema(project):
    write_suite(project, "abl", {"variants": {"dfg_flat": {"of": "dfg", "label": "DFG flat",
                                                           "set": {"activation_slop": 0.2}}},
                                 "run": {"tasks": ["fmnist-synth"], "methods": ["dfg_flat"], "seeds": [0]}})
    with pytest.raises(DfgError, match=r"variants\.dfg_flat\.set.*activation_slop"):
        load_params(project / "params.yaml", "abl")
    write_suite(project, "abl", {"variants": {"dfg": {"of": "dfg", "label": "again"}},
                                 "run": {"tasks": ["fmnist-synth"], "methods": ["dfg"], "seeds": [0]}})
    with pytest.raises(DfgError, match=r"variants\.dfg.*registered method"):
        load_params(project / "params.yaml", "abl")
    write_suite(project, "abl", {"variants": {"x": {"of": "magic", "label": "X"}},
                                 "run": {"tasks": ["fmnist-synth"], "methods": ["x"], "seeds": [0]}})
    with pytest.raises(DfgError, match=r"variants\.x\.of.*magic"):
        load_params(project / "params.yaml", "abl")


def test_variant_plan_reads_the_base_hp_and_its_own_block(project):
    write_suite(project, "abl", {"variants": {"crt_slow": {"of": "crt", "label": "cRT, slow",
                                                           "set": {"lr_scale": 1.0}}},
                                 "run": {"tasks": ["fmnist-synth"], "methods": ["crt_slow"], "seeds": [0]}})
    params = load_params(project / "params.yaml", "abl")
    plan = Plan(params, str(project / "params.yaml"))
    assert plan.methods == ["crt_slow", "finetune"]  # closed over the base's init_from_run
    assert plan.train_inputs("fmnist-synth", "crt_slow", 0)["init_run"].endswith("finetune/seed0.pt")
    values = json.loads(plan.values("train", "fmnist-synth", "crt_slow"))
    assert values["variants.crt_slow"]["set"] == {"lr_scale": 1.0} and values["methods.crt"]["lr_scale"] == 10.0


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> dict:
    return digits_task_with_source(tmp_path_factory.mktemp("digits"))


def test_a_variant_runs_its_base_with_its_own_name_and_label(task, tmp_path):
    def run(name: str, params: dict) -> dict:
        return run_training(params, "digits-test", name, 0, split_file=task["split"], prepared_dir=task["prepared"],
                            source_file=task["source"], out_model=tmp_path / name / "m.pt",
                            out_dir=tmp_path / name / "res", device="cpu")

    params = make_params(steps=40)
    params["variants"] = {"finetune_same": {"of": "finetune", "label": "FT again", "set": {}},
                          "delta_strong": {"of": "delta", "label": "DELTA, strong", "set": {"alpha_e": 1.0}}}
    base, same = run("finetune", params), run("finetune_same", params)
    assert (same["label"], same["variant_of"], same["addition"]) == ("FT again", "finetune", True)
    assert same["accuracy"] == base["accuracy"] and same["per_class_recall"] == base["per_class_recall"]
    assert "variant_of" not in base
    run("delta", params)
    strong = run("delta_strong", params)
    assert strong["params"]["methods"]["delta_strong"]["alpha_e"] == 1.0
    curves = pd.read_csv(tmp_path / "delta_strong" / "res" / "curves.csv")
    base_curves = pd.read_csv(tmp_path / "delta" / "res" / "curves.csv")
    # 100 times the weight on Omega_E holds F's output much closer to the source's (0.003 against 0.053 here)
    assert curves.omega_e.iloc[-1] < base_curves.omega_e.iloc[-1] / 5


def test_a_split_with_validation_adds_validation_columns_and_facts(task, tmp_path):
    split = json.loads(Path(task["split"]).read_text())
    y = task["y"][:1300]
    val = sorted(int(i) for c in range(10) for i in np.flatnonzero(y == c)[-10:])  # the last 10 of each class
    train_idx = sorted(set(split["indices"]) - set(val))
    taken = [10 if c not in split["minority_classes"] else 0 for c in range(10)]
    split_file = tmp_path / "split.json"
    split_file.write_text(json.dumps({**split, "indices": train_idx, "val_indices": val, "val_per_class": 10,
                                      "val_from_training": taken}))
    m = run_training(make_params(steps=40), "digits-test", "finetune", 0, split_file=split_file,
                     prepared_dir=task["prepared"], source_file=task["source"], out_model=tmp_path / "m.pt",
                     out_dir=tmp_path / "res", device="cpu")
    curves = pd.read_csv(tmp_path / "res" / "curves.csv")
    assert list(curves.columns[:5]) == ["step", "test_accuracy", "test_balanced_accuracy", "val_accuracy",
                                        "val_balanced_accuracy"]
    assert curves.val_accuracy.iloc[-1] > 0.6  # an easy task: well above chance (0.1)
    assert m["validation"] == {"per_class": 10, "n_images": 100, "from_training": taken}
