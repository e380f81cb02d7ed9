"""Parameters: the closed schema, defaults, suite overlays, and errors that name the key."""

from pathlib import Path

import pytest
import yaml

from dfg import DfgError
from dfg.config import deep_merge, load_params

ROOT = Path(__file__).resolve().parents[1]


def edit(project: Path, fn) -> Path:
    path = project / "params.yaml"
    data = yaml.safe_load(path.read_text())
    fn(data)
    path.write_text(yaml.safe_dump(data))
    return path


def test_default_params_validate_and_fill_defaults():
    params = load_params(ROOT / "params.yaml")
    assert params["suite"] == "demo"
    assert params["tasks"]["fmnist-synth"]["split"] == {
        "profile": "step", "majority": 6000, "minority": 150, "n_minority": 8, "val_per_class": 0,
    }
    assert params["tasks"]["fmnist-synth"]["max_test"] == 0  # filled from the schema default


def test_typo_key_is_rejected_with_its_name(project):
    path = edit(project, lambda d: d["train"].update(stepz=5))
    with pytest.raises(DfgError, match=r"invalid parameter train.stepz: unknown key .stepz.; did you mean .steps.?"):
        load_params(path)


def test_negative_ratio_names_the_key(project):
    def bad(d):
        d["tasks"]["fmnist"]["split"] = {"profile": "step", "majority": 6000, "ratio": -4, "n_minority": 8}

    with pytest.raises(DfgError, match=r"tasks\.fmnist\.split\.ratio"):
        load_params(edit(project, bad))


def test_unknown_dataset_names_the_key(project):
    path = edit(project, lambda d: d["tasks"]["fmnist"].update(dataset="mnist-typo"))
    with pytest.raises(DfgError, match=r"tasks\.fmnist\.dataset.*mnist-typo"):
        load_params(path)


def test_more_minority_classes_than_classes_names_the_key(project):
    path = edit(project, lambda d: d["tasks"]["svhn"]["split"].update(n_minority=11))
    with pytest.raises(DfgError, match=r"tasks\.svhn\.split\.n_minority"):
        load_params(path)


def test_unknown_method_and_suite(project):
    path = edit(project, lambda d: d["run"].update(methods=["dfg", "magic"]))
    with pytest.raises(DfgError, match=r"run\.methods.*magic"):
        load_params(path)
    with pytest.raises(DfgError, match=r"unknown suite 'nope'.*known suites"):
        load_params(project / "params.yaml", suite="nope")


def test_suite_overlay_merges_over_params(project):
    (project / "workflow" / "suites" / "mini.yaml").write_text("train: {steps: 7}\nrun: {seeds: [4]}\n")
    params = load_params(project / "params.yaml", suite="mini")
    assert params["suite"] == "mini"
    assert params["train"]["steps"] == 7
    assert params["run"]["seeds"] == [4]
    assert params["train"]["batch_size"] == 64  # untouched keys survive the merge


def test_deep_merge_replaces_lists_and_merges_dicts():
    assert deep_merge({"a": {"b": 1, "c": [1, 2]}}, {"a": {"c": [3]}}) == {"a": {"b": 1, "c": [3]}}


def test_every_schema_error_is_listed(project):
    def bad(d):
        d["train"]["stepz"] = 5
        d["train"]["batch_size"] = -3
        d["methods"]["dfg"]["activation_slop"] = 0.2

    with pytest.raises(DfgError) as e:
        load_params(edit(project, bad))
    msg = str(e.value)
    assert "3 invalid parameters" in msg
    assert "methods.dfg.activation_slop: unknown key 'activation_slop'; did you mean 'activation_slope'?" in msg
    assert "train.stepz: unknown key 'stepz'; did you mean 'steps'?" in msg
    assert "train.batch_size: -3 is less than the minimum of 1" in msg


@pytest.mark.parametrize("suite", sorted(p.stem for p in (ROOT / "workflow" / "suites").glob("*.yaml")))
def test_every_committed_suite_validates_and_names_known_methods(suite: str) -> None:
    from dfg.methods.variants import known_methods

    params = load_params(ROOT / "params.yaml", suite)
    assert params["suite"] == suite
    assert set(params["run"]["methods"]) <= set(known_methods(params))
    assert set(params["run"]["tasks"]) <= set(params["tasks"])


def test_fmnist_emnist_is_fmnist_full_with_the_papers_source_alone() -> None:
    """The suite that would test the EMNIST source changes nothing else: same methods, seeds, steps,
    evaluations and split sizes as fmnist-full; its task differs from fmnist-mnist5k in the source only."""
    full, emnist = load_params(ROOT / "params.yaml", "fmnist-full"), load_params(ROOT / "params.yaml", "fmnist-emnist")
    assert {k: v for k, v in full["run"].items() if k != "tasks"} == {k: v for k, v in emnist["run"].items() if k != "tasks"}
    assert full["train"] == emnist["train"] and full["methods"] == emnist["methods"]
    (a,), (b,) = full["run"]["tasks"], emnist["run"]["tasks"]
    ta, tb = full["tasks"][a], emnist["tasks"][b]
    assert {k for k in ta.keys() | tb.keys() if ta.get(k) != tb.get(k)} == {"source"}
    assert (ta["source"], tb["source"]) == ("lenet5-mnist5k", "lenet5-emnist")
