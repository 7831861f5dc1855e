"""Classification and regression metrics in plain numpy, written out so each formula is visible.

Conventions (the same as scikit-learn, against which ``tests/evaluation`` checks every function):

- classes are integer codes ``0 .. K-1`` in the order given by ``--classes``; for a binary task
  the *positive* class is code 1 (the second name, e.g. ``AD`` in ``CN,AD``);
- scores are probabilities: shape ``(n,)`` (positive class) or ``(n, K)``;
- a metric that is undefined on its input returns ``nan`` instead of raising: ROC AUC with only
  one class present, sensitivity without positives, specificity without negatives, Pearson r of
  a constant. ``bootstrap_ci`` skips (and counts) resamples where a metric is ``nan``.
"""

from __future__ import annotations

import numpy as np


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing the mean of the ranks they span (the Mann-Whitney convention)."""
    values = np.asarray(values, dtype=float)
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts_group = np.r_[True, ordered[1:] != ordered[:-1]]
    first_index = np.flatnonzero(starts_group)
    counts = np.diff(np.r_[first_index, len(values)])
    mean_rank_per_group = first_index + (counts + 1) / 2.0
    ranks = np.empty(len(values), dtype=float)
    ranks[order] = mean_rank_per_group[np.cumsum(starts_group) - 1]
    return ranks


def binary_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC = P(score of a positive > score of a negative) + 0.5 P(tie), via the rank-sum.

    AUC = (R_pos - n_pos (n_pos + 1) / 2) / (n_pos n_neg), R_pos the sum of the positives'
    average ranks. ``nan`` when one of the two classes is absent.
    """
    positive = np.asarray(y_true).astype(bool)
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    rank_sum = average_ranks(score)[positive].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Binary AUC (``scores`` 1-D, or ``(n, 2)`` whose column 1 is used) or one-vs-rest macro AUC.

    Multiclass: the mean over classes k of AUC(y == k, scores[:, k]); ``nan`` when a class of
    ``scores`` is absent from ``y_true`` (scikit-learn raises in that case).
    """
    y_true = np.asarray(y_true)
    scores = np.asarray(scores, dtype=float)
    if scores.ndim == 1:
        return binary_auc(y_true == 1, scores)
    if scores.shape[1] == 2:
        return binary_auc(y_true == 1, scores[:, 1])
    return float(np.mean([binary_auc(y_true == k, scores[:, k]) for k in range(scores.shape[1])]))


def roc_curve(y_true: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False- and true-positive rates at every distinct threshold (descending), from (0, 0) to (1, 1)."""
    positive = np.asarray(y_true).astype(bool)
    score = np.asarray(score, dtype=float)
    order = np.argsort(-score, kind="mergesort")
    sorted_score, sorted_pos = score[order], positive[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(sorted_score)), len(score) - 1]
    tp = np.cumsum(sorted_pos)[last_of_tie]
    fp = np.cumsum(~sorted_pos)[last_of_tie]
    n_pos, n_neg = max(positive.sum(), 1), max((~positive).sum(), 1)
    fpr = np.r_[0.0, fp / n_neg]
    tpr = np.r_[0.0, tp / n_pos]
    thresholds = np.r_[np.inf, sorted_score[last_of_tie]]
    return fpr, tpr, thresholds


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int | None = None) -> np.ndarray:
    """Counts C[i, j] of scans of true class i predicted as class j."""
    y_true = np.asarray(y_true, dtype=int)
    y_pred = np.asarray(y_pred, dtype=int)
    if n_classes is None:
        n_classes = int(max(y_true.max(initial=-1), y_pred.max(initial=-1))) + 1
    flat = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes)


def precision_recall_f1(y_true, y_pred, n_classes: int | None = None) -> dict[str, np.ndarray]:
    """Per-class precision, recall, F1 and support; 0/0 counts as 0 (scikit-learn's default)."""
    cm = confusion_matrix(y_true, y_pred, n_classes).astype(float)
    tp = np.diag(cm)
    predicted, actual = cm.sum(axis=0), cm.sum(axis=1)
    precision = _safe_divide(tp, predicted)
    recall = _safe_divide(tp, actual)
    f1 = _safe_divide(2 * tp, predicted + actual)
    return {"precision": precision, "recall": recall, "f1": f1, "support": actual.astype(int)}


def f1_macro(y_true, y_pred, n_classes: int | None = None) -> float:
    """Unweighted mean of per-class F1 over the classes seen in truth or prediction (or all K)."""
    y_true, y_pred = np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)
    f1 = precision_recall_f1(y_true, y_pred, n_classes)["f1"]
    if n_classes is None:
        return float(f1[np.union1d(y_true, y_pred)].mean())
    return float(f1.mean())


def balanced_accuracy(y_true, y_pred, n_classes: int | None = None) -> float:
    """Mean recall over the classes present in ``y_true`` (absent classes are left out)."""
    cm = confusion_matrix(y_true, y_pred, n_classes).astype(float)
    actual = cm.sum(axis=1)
    present = actual > 0
    if not present.any():
        return float("nan")
    return float(np.mean(np.diag(cm)[present] / actual[present]))


def sensitivity(y_true, y_pred) -> float:
    """Binary: recall of the positive class (code 1 or True); ``nan`` without positives."""
    positive = np.asarray(y_true).astype(int) == 1
    if not positive.any():
        return float("nan")
    return float(np.mean(np.asarray(y_pred)[positive].astype(int) == 1))


def specificity(y_true, y_pred) -> float:
    """Binary: recall of the negative class (code 0 or False); ``nan`` without negatives."""
    negative = np.asarray(y_true).astype(int) == 0
    if not negative.any():
        return float("nan")
    return float(np.mean(np.asarray(y_pred)[negative].astype(int) == 0))


def macro_sensitivity(y_true, y_pred, n_classes: int) -> float:
    """Multiclass: mean over classes of one-vs-rest recall (= balanced accuracy when all are present)."""
    recalls = [sensitivity(np.asarray(y_true) == k, np.asarray(y_pred) == k) for k in range(n_classes)]
    return float(np.nanmean(recalls)) if np.isfinite(recalls).any() else float("nan")


def macro_specificity(y_true, y_pred, n_classes: int) -> float:
    """Multiclass: mean over classes of one-vs-rest specificity TN / (TN + FP)."""
    specs = [specificity(np.asarray(y_true) == k, np.asarray(y_pred) == k) for k in range(n_classes)]
    return float(np.nanmean(specs)) if np.isfinite(specs).any() else float("nan")


def mcc(y_true, y_pred, n_classes: int | None = None) -> float:
    """Matthews correlation (Gorodkin's K-class form); 0 when a margin is constant, as scikit-learn.

    MCC = (c s - sum_k p_k t_k) / sqrt((s^2 - sum p_k^2)(s^2 - sum t_k^2)), c = correct,
    s = samples, p_k / t_k = predicted / true counts of class k.
    """
    cm = confusion_matrix(y_true, y_pred, n_classes).astype(float)
    t, p = cm.sum(axis=1), cm.sum(axis=0)
    correct, samples = np.trace(cm), cm.sum()
    cov_ytyp = correct * samples - t @ p
    cov_ypyp = samples**2 - p @ p
    cov_ytyt = samples**2 - t @ t
    if cov_ypyp * cov_ytyt == 0:
        return 0.0
    return float(cov_ytyp / np.sqrt(cov_ytyt * cov_ypyp))


def accuracy(y_true, y_pred) -> float:
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))


def mae(y_true, y_pred) -> float:
    """Mean absolute error, in the unit of the label (years for brain age)."""
    return float(np.mean(np.abs(np.asarray(y_true, float) - np.asarray(y_pred, float))))


def rmse(y_true, y_pred) -> float:
    return float(np.sqrt(np.mean((np.asarray(y_true, float) - np.asarray(y_pred, float)) ** 2)))


def pearson_r(y_true, y_pred) -> float:
    """Pearson correlation; ``nan`` when either side is constant."""
    a = np.asarray(y_true, float) - np.mean(y_true)
    b = np.asarray(y_pred, float) - np.mean(y_pred)
    denom = np.sqrt((a @ a) * (b @ b))
    if denom == 0:
        return float("nan")
    return float(np.clip((a @ b) / denom, -1.0, 1.0))


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros_like(num, dtype=float)
    np.divide(num, den, out=out, where=den > 0)
    return out


def classification_metrics(y_true, prob: np.ndarray) -> dict[str, float]:
    """The headline scalars of a classifier, in the order of ``CLASSIFICATION_METRICS``.

    ``prob`` is ``(n, K)``; the predicted class is its argmax. With K > 2, sensitivity and
    specificity are one-vs-rest macro averages.
    """
    y_true = np.asarray(y_true, dtype=int)
    prob = np.asarray(prob, dtype=float)
    n_classes = prob.shape[1]
    y_pred = prob.argmax(axis=1)
    out = {"auc": roc_auc(y_true, prob)}
    out["balanced_accuracy"] = balanced_accuracy(y_true, y_pred, n_classes)
    if n_classes == 2:
        out["sensitivity"] = sensitivity(y_true, y_pred)
        out["specificity"] = specificity(y_true, y_pred)
    else:
        out["sensitivity"] = macro_sensitivity(y_true, y_pred, n_classes)
        out["specificity"] = macro_specificity(y_true, y_pred, n_classes)
    out["mcc"] = mcc(y_true, y_pred, n_classes)
    out["f1_macro"] = f1_macro(y_true, y_pred, n_classes)
    return out


def regression_metrics(y_true, y_pred) -> dict[str, float]:
    return {"mae": mae(y_true, y_pred), "rmse": rmse(y_true, y_pred), "r": pearson_r(y_true, y_pred)}


#: names of the scalar metrics per task, in the order metrics.json lists them
CLASSIFICATION_METRICS = ("auc", "balanced_accuracy", "sensitivity", "specificity", "mcc", "f1_macro")
REGRESSION_METRICS = ("mae", "rmse", "r")

# ``evaluation.metrics.bootstrap_ci`` is where docs/architecture.md puts it; it lives in bootstrap.py.
from neuro_ssl.evaluation.bootstrap import bootstrap_ci, bootstrap_metrics  # noqa: E402,F401
