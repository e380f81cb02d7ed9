"""Metrics on hand-made predictions whose values are worked out by hand in the comments."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dfg.metrics import compute_metrics, expected_calibration_error


def one_hot_probs(pred: list[int], k: int, conf: float = 0.9) -> np.ndarray:
    p = np.full((len(pred), k), (1 - conf) / (k - 1))
    p[np.arange(len(pred)), pred] = conf
    return p


def test_three_classes_with_a_zero_recall_class():
    # truth 0 0 0 0 1 1 2 2, predicted 0 0 0 1 1 1 1 1 -> confusion [[3,1,0],[0,2,0],[0,2,0]]
    y = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    m = compute_metrics(y, one_hot_probs([0, 0, 0, 1, 1, 1, 1, 1], 3), 3, minority_classes=[2])
    assert m["confusion_matrix"] == [[3, 1, 0], [0, 2, 0], [0, 2, 0]]
    assert m["accuracy"] == pytest.approx(5 / 8)
    assert m["per_class_recall"] == pytest.approx([0.75, 1.0, 0.0])
    assert m["balanced_accuracy"] == pytest.approx((0.75 + 1.0 + 0.0) / 3)
    # F1: class 0 P=1 R=3/4 -> 6/7; class 1 P=2/5 R=1 -> 4/7; class 2 -> 0
    assert m["macro_f1"] == pytest.approx((6 / 7 + 4 / 7 + 0) / 3)
    assert m["g_mean"] == 0.0  # one class never recognised
    assert m["minority_accuracy"] == 0.0
    assert m["majority_accuracy"] == pytest.approx(5 / 6)
    assert m["n_test"] == 8


def test_g_mean_and_absent_classes():
    # two classes present, recalls 1/2 and 1 -> G-mean sqrt(1/2); class 2 absent from the test set is
    # excluded from balanced accuracy and G-mean but listed with recall 0
    y = np.array([0, 0, 1, 1])
    m = compute_metrics(y, one_hot_probs([0, 1, 1, 1], 3), 3)
    assert m["g_mean"] == pytest.approx(math.sqrt(0.5))
    assert m["balanced_accuracy"] == pytest.approx(0.75)
    assert m["per_class_recall"] == pytest.approx([0.5, 1.0, 0.0])
    assert m["minority_accuracy"] is None and m["majority_accuracy"] == pytest.approx(0.75)


def test_ece_hand_case():
    # conf 0.9: one right, one wrong -> bin gap |1 - 1.8| = 0.8; conf 0.6: both right -> |2 - 1.2| = 0.8
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    y = np.array([0, 1, 0, 1])
    assert expected_calibration_error(probs, y) == pytest.approx((0.8 + 0.8) / 4)
    m = compute_metrics(y, probs, 2)
    assert m["ece"] == pytest.approx(0.4)


def test_ece_zero_when_calibrated_and_bins_are_right_closed():
    probs = np.array([[0.75, 0.25]] * 4)
    y = np.array([0, 0, 0, 1])  # 75 % right at confidence 0.75
    assert expected_calibration_error(probs, y) == pytest.approx(0.0)
    # confidence exactly 1.0 lands in the last bin, 1/15 in the first
    assert expected_calibration_error(np.array([[1.0, 0.0]]), np.array([1])) == pytest.approx(1.0)


def test_perfect_predictions():
    y = np.arange(5).repeat(3)
    m = compute_metrics(y, one_hot_probs(list(y), 5, conf=1.0), 5, minority_classes=[3, 4])
    assert m["accuracy"] == m["balanced_accuracy"] == m["macro_f1"] == m["g_mean"] == 1.0
    assert m["minority_accuracy"] == 1.0 and m["ece"] == pytest.approx(0.0)
    assert np.array_equal(np.array(m["confusion_matrix"]), 3 * np.eye(5, dtype=int))


@pytest.mark.parametrize("seed", range(30))
def test_numpy_scores_equal_scikit_learn_and_imbalanced_learn_bit_for_bit(seed):
    """compute_metrics scores without loading scikit-learn or imbalanced-learn; the libraries' own functions
    give the identical floats on random predictions (some classes absent from the truth or never
    predicted, some recalls 0)."""
    from imblearn.metrics import geometric_mean_score
    from sklearn.metrics import confusion_matrix, f1_score

    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 12))
    n = int(rng.integers(1, 400))
    present_truth = rng.choice(k, size=int(rng.integers(1, k + 1)), replace=False)
    y = rng.choice(present_truth, size=n)
    logits = rng.normal(size=(n, k)) + 3.0 * np.eye(k)[y] * rng.random()
    if seed % 3 == 0:
        logits[:, int(rng.integers(k))] -= 100.0  # a class never predicted
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    m = compute_metrics(y, probs, k)
    pred = probs.argmax(axis=1)
    labels = np.arange(k)
    cm = confusion_matrix(y, pred, labels=labels)
    present = labels[cm.sum(axis=1) > 0]
    assert m["confusion_matrix"] == cm.tolist()
    assert m["macro_f1"] == float(f1_score(y, pred, labels=present, average="macro", zero_division=0))
    assert m["g_mean"] == float(geometric_mean_score(y, pred, labels=present, average="multiclass"))
