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
