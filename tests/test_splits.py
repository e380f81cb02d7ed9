"""The split builder: exact class counts per profile, seeded and byte-reproducible files."""

import json

import numpy as np
import pytest

from dfg import DfgError
from dfg.data.splits import build_split, canonical_sha256, make_split_file, target_counts

FMNIST_STEP = {"profile": "step", "majority": 6000, "minority": 150, "n_minority": 8}


def labels_per_class(n: int, k: int = 10, seed: int = 0) -> np.ndarray:
    """k classes x n samples, shuffled (like a real prepared training set)."""
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(k), n))


def write_prepared(root, labels: np.ndarray, k: int = 10):
    prepared = root / "prepared"
    prepared.mkdir(parents=True)
    np.save(prepared / "train_y.npy", labels.astype(np.int64))
    (prepared / "meta.json").write_text(json.dumps({"format": "array", "num_classes": k}))
    return prepared


def test_step_profile_paper_fmnist_counts():
    labels = labels_per_class(6000)
    split = build_split(labels, 10, FMNIST_STEP, seed=0)
    counts = np.bincount(labels[split["indices"]], minlength=10)
    assert len(split["indices"]) == 13_200
    assert sorted(counts.tolist()) == [150] * 8 + [6000] * 2
    assert len(split["minority_classes"]) == 8
    assert all(counts[c] == 150 for c in split["minority_classes"])
    assert split["class_counts"] == counts.tolist()
    assert split["imbalance_ratio"] == 40.0


def test_step_keeps_first_samples_of_each_class_in_prepared_order():
    labels = labels_per_class(50)
    split = build_split(labels, 10, {"profile": "step", "majority": 20, "minority": 5, "n_minority": 3}, seed=4)
    for c in range(10):
        first = np.flatnonzero(labels == c)[: split["class_counts"][c]]
        assert set(first) <= set(split["indices"])


def test_step_ratio_instead_of_minority():
    counts, minority = target_counts({"profile": "step", "majority": 5000, "ratio": 10, "n_minority": 8}, 10, 1)
    assert sorted(counts) == [500] * 8 + [5000] * 2
    assert len(minority) == 8


def test_exponential_profile_counts():
    spec = {"profile": "exponential", "majority": 1000, "ratio": 100}
    counts, minority = target_counts(spec, 10, seed=3)
    expected = sorted(round(1000 * 100 ** (-i / 9)) for i in range(10))
    assert sorted(counts) == expected  # 1000, 599, 359, 215, 129, 77, 46, 28, 17, 10
    assert max(counts) == 1000 and min(counts) == 10
    # minority = counts at or below the geometric midpoint 1000 / sqrt(100) = 100
    assert sorted(counts[c] for c in minority) == [10, 17, 28, 46, 77]
    labels = labels_per_class(1000)
    split = build_split(labels, 10, spec, seed=3)
    assert np.bincount(labels[split["indices"]], minlength=10).tolist() == counts
    assert split["imbalance_ratio"] == 100.0


def test_balanced_profile_and_validation_carve_out():
    labels = labels_per_class(80, k=5)
    split = build_split(labels, 5, {"profile": "balanced", "per_class": 60, "val_per_class": 20}, seed=0)
    assert np.bincount(labels[split["indices"]]).tolist() == [60] * 5
    assert np.bincount(labels[split["val_indices"]]).tolist() == [20] * 5
    assert not set(split["indices"]) & set(split["val_indices"])
    assert split["minority_classes"] == [] and split["imbalance_ratio"] == 1.0


def test_too_few_samples_names_the_key():
    labels = labels_per_class(100)
    with pytest.raises(DfgError, match=r"tasks\.t\.split"):
        build_split(labels, 10, {"profile": "balanced", "per_class": 101}, seed=0, key="tasks.t.split")


def test_more_minority_classes_than_classes_fails():
    with pytest.raises(DfgError, match="n_minority"):
        target_counts({"profile": "step", "majority": 10, "minority": 1, "n_minority": 11}, 10, 0)


def test_same_seed_byte_identical_file_and_different_seeds_differ(tmp_path):
    labels = labels_per_class(6000)
    prepared = write_prepared(tmp_path, labels)
    params = {"tasks": {"fm": {"dataset": "fashion-mnist", "split": FMNIST_STEP}}}
    a = make_split_file("fm", params, 0, prepared, tmp_path / "a.json")
    make_split_file("fm", params, 0, prepared, tmp_path / "b.json")
    c = make_split_file("fm", params, 1, prepared, tmp_path / "c.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert a["minority_classes"] != c["minority_classes"]
    assert a["sha256"] == canonical_sha256(json.loads((tmp_path / "a.json").read_text()))
    assert a["sha256"] != c["sha256"]
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temp files
