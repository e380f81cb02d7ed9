"""Per-run metrics (method.md §6): the paper's top-1 accuracy plus what imbalance needs to be judged.

Everything is computed from (true labels, predicted probabilities) of the whole test set, in NumPy: the
confusion matrix, macro-F1 and G-mean are written out here with the same arithmetic as scikit-learn's
`confusion_matrix` and `f1_score(average="macro", zero_division=0)` and imbalanced-learn's
`geometric_mean_score(average="multiclass")` (tests/test_metrics.py holds them equal, bit for bit), so a
training job does not load those libraries (seconds of start-up) to score one run. ECE is ours (15
equal-width confidence bins, Guo et al. 2017).
"""

from __future__ import annotations

import numpy as np

#: Number of equal-width confidence bins of the expected calibration error (method.md §6).
ECE_BINS = 15


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Σ_b |B_b|/n · |acc(B_b) − conf(B_b)| over bins (lo, hi] of the top-class probability."""
    probs = np.asarray(probs, dtype=np.float64)
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == np.asarray(y_true)).astype(np.float64)
    bins = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    if len(conf) == 0:
        return 0.0
    # Per bin, |B|·|acc − conf| = |Σ correct − Σ conf|.
    gap = np.abs(np.bincount(bins, weights=correct, minlength=n_bins) - np.bincount(bins, weights=conf, minlength=n_bins))
    return float(gap.sum() / len(conf))


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """[K, K] int64 counts, rows = truth, columns = prediction, for labels 0..K-1."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    return np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes)


def macro_f1(cm: np.ndarray, labels: np.ndarray) -> float:
    """Mean over `labels` of F1 = 2 tp / (true + predicted), 0 where a label is neither true nor predicted
    (scikit-learn's f1_score with average="macro", zero_division=0)."""
    tp = np.diag(cm)[labels].astype(np.float64)
    denom = cm.sum(axis=1)[labels].astype(np.float64) + cm.sum(axis=0)[labels].astype(np.float64)
    f1 = np.divide(2.0 * tp, denom, out=np.zeros(len(labels), dtype=np.float64), where=denom != 0)
    return float(np.average(f1)) if len(labels) else 0.0


def geometric_mean(recall: np.ndarray) -> float:
    """exp(mean(log recall)), 0 when a class has recall 0 (imbalanced-learn's multiclass G-mean, which
    takes scipy.stats.gmean of the per-class recalls)."""
    recall = np.asarray(recall, dtype=np.float64)
    if not len(recall) or (recall == 0).any():
        return 0.0
    return float(np.exp(np.mean(np.log(recall))))


def per_class_recall(cm: np.ndarray) -> np.ndarray:
    """Recall of each class from a confusion matrix (rows = truth); 0 for a class absent from the test set."""
    support = cm.sum(axis=1)
    return np.divide(np.diag(cm), support, out=np.zeros(len(cm), dtype=np.float64), where=support > 0)


def compute_metrics(y_true: np.ndarray, probs: np.ndarray, num_classes: int,
                    minority_classes: list[int] | None = None) -> dict:
    """All metrics of a run, as plain JSON-ready Python values (fractions in [0, 1]).

    balanced accuracy and G-mean average over the classes present in the test set; majority / minority
    accuracy are the accuracy over test images of those classes (None when the split has no minority)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs)
    y_pred = probs.argmax(axis=1)
    labels = np.arange(num_classes)
    cm = confusion_matrix(y_true, y_pred, num_classes)
    recall = per_class_recall(cm)
    present = cm.sum(axis=1) > 0
    minority = sorted(int(c) for c in (minority_classes or []))
    is_min = np.isin(y_true, minority)
    correct = y_pred == y_true

    def acc(mask: np.ndarray) -> float | None:
        return float(correct[mask].mean()) if mask.any() else None

    return {
        "accuracy": float(correct.mean()) if len(correct) else 0.0,
        "balanced_accuracy": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": macro_f1(cm, labels[present]),
        "g_mean": geometric_mean(recall[present]),
        "per_class_recall": [float(r) for r in recall],
        "majority_accuracy": acc(~is_min),
        "minority_accuracy": acc(is_min) if minority else None,
        "ece": expected_calibration_error(probs, y_true) if len(y_true) else 0.0,
        "confusion_matrix": cm.astype(int).tolist(),
        "n_test": len(y_true),
    }
