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


#: SVHN's train_32x32 per-class counts (digits 0-9; 73 257 in all): 0 and 9 fall short of the protocol's 5 000.
SVHN_TRAIN_COUNTS = [4948, 13861, 10585, 8497, 7458, 6882, 5727, 5595, 5045, 4659]
SVHN_STEP = {"profile": "step", "majority": 5000, "minority": 500, "n_minority": 8}


@pytest.mark.parametrize("seed", range(5))
def test_svhn_majority_class_short_of_5000_keeps_what_it_has(tmp_path, caplog, seed):
    labels = np.random.default_rng(seed).permutation(np.repeat(np.arange(10), SVHN_TRAIN_COUNTS))
    assert len(labels) == 73_257
    prepared = write_prepared(tmp_path, labels)
    meta = json.loads((prepared / "meta.json").read_text())
    (prepared / "meta.json").write_text(json.dumps({**meta, "classes": list("0123456789")}))
    params = {"tasks": {"svhn": {"dataset": "svhn", "split": SVHN_STEP}}}
    caplog.set_level("INFO", logger="dfg.data.splits")
    doc = make_split_file("svhn", params, seed, prepared, tmp_path / "s.json")
    majority = sorted(set(range(10)) - set(doc["minority_classes"]))
    real = [min(5000, SVHN_TRAIN_COUNTS[c]) if c in majority else 500 for c in range(10)]
    assert doc["class_counts"] == real == np.bincount(labels[doc["indices"]], minlength=10).tolist()
    assert doc["requested_class_counts"] == [5000 if c in majority else 500 for c in range(10)]
    assert doc["imbalance_ratio"] == max(real) / 500
    short = [c for c in majority if SVHN_TRAIN_COUNTS[c] < 5000]
    lines = [r.getMessage() for r in caplog.records if "fewer than the" in r.getMessage()]
    assert len(lines) == len(short)
    for c, line in zip(short, lines, strict=True):
        assert f"class {c} has {SVHN_TRAIN_COUNTS[c]} training samples, fewer than the 5000 asked" in line
    # the data seeds of the paper suite: seeds 3 and 4 make the nines (4 659) a majority class
    assert short == ([9] if seed in (3, 4) else [])
    if seed == 3:
        assert doc["class_counts"][9] == 4659 and doc["imbalance_ratio"] == 10.0  # class 3 keeps 5 000
    if seed == 4:
        assert doc["imbalance_ratio"] == 10.0


def test_step_split_of_real_handwritten_digits_whose_classes_are_all_short(tmp_path, caplog):
    """scikit-learn's 1 797 real digits (174-183 per class) asked for a majority of 200: both majority
    classes keep every image they have; the minority classes keep their 20."""
    from sklearn.datasets import load_digits

    labels = load_digits().target.astype(np.int64)
    have = np.bincount(labels, minlength=10)
    prepared = write_prepared(tmp_path, labels)
    params = {"tasks": {"d": {"dataset": "sklearn-digits",
                              "split": {"profile": "step", "majority": 200, "minority": 20, "n_minority": 8}}}}
    caplog.set_level("INFO", logger="dfg.data.splits")
    doc = make_split_file("d", params, 0, prepared, tmp_path / "d.json")
    majority = sorted(set(range(10)) - set(doc["minority_classes"]))
    assert majority == [5, 7]  # seed 0
    assert [doc["class_counts"][c] for c in majority] == [int(have[5]), int(have[7])] == [182, 179]
    assert all(doc["class_counts"][c] == 20 for c in doc["minority_classes"])
    assert doc["imbalance_ratio"] == 182 / 20
    assert sum("fewer than the 200 asked" in r.getMessage() for r in caplog.records) == 2
    # a balanced profile that cannot be met is still an error (only `step` keeps what a class has)
    params["tasks"]["d"]["split"] = {"profile": "balanced", "per_class": 200}
    with pytest.raises(DfgError, match="lower the counts"):
        make_split_file("d", params, 0, prepared, tmp_path / "e.json")
