"""Every metric against scikit-learn on many random inputs, ties and degenerate cases included."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from neuro_ssl.evaluation import metrics as m

SEEDS = range(60)


def _random_case(seed: int, n_classes: int):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 80))
    y_true = rng.integers(0, n_classes, size=n)
    y_true[:n_classes] = np.arange(n_classes)  # every class present
    logits = rng.normal(size=(n, n_classes)) + 0.8 * np.eye(n_classes)[y_true]
    if seed % 3 == 0:  # coarse scores: many ties
        logits = np.round(logits)
    prob = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y_pred = rng.integers(0, n_classes, size=n) if seed % 4 == 0 else prob.argmax(axis=1)
    return y_true, prob, y_pred


@pytest.mark.parametrize("seed", SEEDS)
def test_binary_auc_matches_sklearn(seed):
    y_true, prob, _ = _random_case(seed, 2)
    assert m.roc_auc(y_true, prob[:, 1]) == pytest.approx(skm.roc_auc_score(y_true, prob[:, 1]), abs=1e-12)
    assert m.roc_auc(y_true, prob) == pytest.approx(skm.roc_auc_score(y_true, prob[:, 1]), abs=1e-12)


def test_auc_with_heavy_ties_and_integer_scores():
    rng = np.random.default_rng(1)
    for _ in range(50):
        y = rng.integers(0, 2, 40)
        y[:2] = [0, 1]
        score = rng.integers(0, 3, 40).astype(float)  # three distinct values only
        assert m.roc_auc(y, score) == pytest.approx(skm.roc_auc_score(y, score), abs=1e-12)
    assert m.roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n_classes", [3, 4])
def test_multiclass_ovr_macro_auc_matches_sklearn(seed, n_classes):
    y_true, prob, _ = _random_case(seed, n_classes)
    expected = skm.roc_auc_score(y_true, prob, multi_class="ovr", average="macro")
    assert m.roc_auc(y_true, prob) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n_classes", [2, 3])
def test_label_metrics_match_sklearn(seed, n_classes):
    y_true, _, y_pred = _random_case(seed, n_classes)
    labels = list(range(n_classes))
    np.testing.assert_array_equal(m.confusion_matrix(y_true, y_pred, n_classes),
                                  skm.confusion_matrix(y_true, y_pred, labels=labels))
    assert m.balanced_accuracy(y_true, y_pred, n_classes) == pytest.approx(skm.balanced_accuracy_score(y_true, y_pred))
    assert m.mcc(y_true, y_pred, n_classes) == pytest.approx(skm.matthews_corrcoef(y_true, y_pred), abs=1e-12)
    assert m.f1_macro(y_true, y_pred, n_classes) == pytest.approx(
        skm.f1_score(y_true, y_pred, average="macro", labels=labels, zero_division=0))
    assert m.accuracy(y_true, y_pred) == pytest.approx(skm.accuracy_score(y_true, y_pred))
    per_class = m.precision_recall_f1(y_true, y_pred, n_classes)
    p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    np.testing.assert_allclose(per_class["precision"], p)
    np.testing.assert_allclose(per_class["recall"], r)
    np.testing.assert_allclose(per_class["f1"], f)
    np.testing.assert_array_equal(per_class["support"], s)
    if n_classes == 2:
        assert m.sensitivity(y_true, y_pred) == pytest.approx(skm.recall_score(y_true, y_pred, pos_label=1))
        assert m.specificity(y_true, y_pred) == pytest.approx(skm.recall_score(y_true, y_pred, pos_label=0))
    else:
        assert m.macro_sensitivity(y_true, y_pred, n_classes) == pytest.approx(
            skm.recall_score(y_true, y_pred, average="macro", labels=labels, zero_division=0))
        per_class = skm.multilabel_confusion_matrix(y_true, y_pred, labels=labels)  # [[tn, fp], [fn, tp]]
        expected_spec = np.mean([c[0, 0] / (c[0, 0] + c[0, 1]) for c in per_class])
        assert m.macro_specificity(y_true, y_pred, n_classes) == pytest.approx(expected_spec)


def test_f1_macro_without_n_classes_uses_seen_labels_like_sklearn():
    y_true, y_pred = [0, 0, 2, 2], [0, 2, 2, 2]
    assert m.f1_macro(y_true, y_pred) == pytest.approx(skm.f1_score(y_true, y_pred, average="macro"))


def test_mcc_constant_prediction_is_zero_like_sklearn():
    assert m.mcc([0, 1, 1, 0], [1, 1, 1, 1], 2) == skm.matthews_corrcoef([0, 1, 1, 0], [1, 1, 1, 1]) == 0.0


@pytest.mark.parametrize("seed", SEEDS)
def test_regression_metrics_match_sklearn_and_numpy(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 100))
    y = rng.normal(70, 8, n)
    pred = y + rng.normal(0, 5, n)
    if seed % 5 == 0:
        pred = np.round(pred)
    assert m.mae(y, pred) == pytest.approx(skm.mean_absolute_error(y, pred))
    assert m.rmse(y, pred) == pytest.approx(np.sqrt(skm.mean_squared_error(y, pred)))
    assert m.pearson_r(y, pred) == pytest.approx(np.corrcoef(y, pred)[0, 1], abs=1e-12)


def test_roc_curve_matches_sklearn_points():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 60)
    score = np.round(rng.normal(size=60) + y, 1)
    fpr, tpr, thr = m.roc_curve(y, score)
    sk_fpr, sk_tpr, _ = skm.roc_curve(y, score, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    assert np.trapezoid(tpr, fpr) == pytest.approx(m.roc_auc(y, score))


def test_average_ranks_match_scipy():
    from scipy.stats import rankdata

    rng = np.random.default_rng(0)
    values = rng.integers(0, 5, 30).astype(float)
    np.testing.assert_allclose(m.average_ranks(values), rankdata(values))


def test_undefined_metrics_are_nan_not_errors():
    """Documented contract: a single class gives nan AUC / sensitivity / specificity."""
    assert np.isnan(m.roc_auc([1, 1, 1], [0.1, 0.5, 0.9]))
    assert np.isnan(m.roc_auc([0, 0, 0], [0.1, 0.5, 0.9]))
    assert np.isnan(m.sensitivity([0, 0], [0, 1]))
    assert np.isnan(m.specificity([1, 1], [0, 1]))
    assert np.isnan(m.pearson_r([1.0, 2.0, 3.0], [5.0, 5.0, 5.0]))
    prob3 = np.array([[0.6, 0.2, 0.2], [0.2, 0.6, 0.2], [0.3, 0.3, 0.4]])
    assert np.isnan(m.roc_auc([0, 1, 1], prob3))  # class 2 absent from truth


def test_classification_metrics_bundle():
    y = np.array([0, 0, 1, 1, 1])
    prob = np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.8, 0.2], [0.1, 0.9]])
    out = m.classification_metrics(y, prob)
    assert list(out) == list(m.CLASSIFICATION_METRICS)
    assert out["sensitivity"] == pytest.approx(2 / 3)
    assert out["specificity"] == pytest.approx(1 / 2)
    assert out["auc"] == pytest.approx(skm.roc_auc_score(y, prob[:, 1]))
    three = m.classification_metrics([0, 1, 2], np.eye(3))
    assert list(three) == list(m.CLASSIFICATION_METRICS)
    assert three["auc"] == three["sensitivity"] == three["specificity"] == 1.0 and three["mcc"] == pytest.approx(1.0)
