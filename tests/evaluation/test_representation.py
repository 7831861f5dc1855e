"""Label-free metrics against float64 reference formulas, analytic cases and a known limit."""

from __future__ import annotations

import math

import numpy as np
import pytest

from neuro_ssl.evaluation.representation import alignment, knn_score, normalize_rows, uniformity


def _unit(v):
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v]


def _alignment_reference(z1, z2, alpha):
    total = 0.0
    for a, b in zip(z1.tolist(), z2.tolist()):
        a, b = _unit(a), _unit(b)
        total += math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b))) ** alpha
    return total / len(z1)


def _uniformity_reference(z, t):
    rows = [_unit(v) for v in z.tolist()]
    terms = [math.exp(-t * sum((x - y) ** 2 for x, y in zip(rows[i], rows[j])))
             for i in range(len(rows)) for j in range(i + 1, len(rows))]
    return math.log(sum(terms) / len(terms))


@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_alignment_matches_the_float64_formula(alpha):
    rng = np.random.default_rng(0)
    z1, z2 = rng.normal(size=(9, 6)).astype(np.float32), rng.normal(size=(9, 6)).astype(np.float32)
    assert alignment(z1, z2, alpha) == pytest.approx(_alignment_reference(z1, z2, alpha), rel=1e-12)


def test_alignment_analytic_cases_and_shapes():
    z = np.random.default_rng(1).normal(size=(5, 4))
    assert alignment(z, 3.0 * z) == pytest.approx(0.0, abs=1e-15)  # same direction: normalized away
    assert alignment(z, -z) == pytest.approx(4.0)  # antipodal: ||a - (-a)||^2 = 4
    with pytest.raises(ValueError, match="one shape"):
        alignment(z, z[:3])


@pytest.mark.parametrize("t", [0.5, 2.0, 10.0])
def test_uniformity_matches_the_float64_formula(t):
    z = np.random.default_rng(2).normal(size=(11, 5))
    assert uniformity(z, t) == pytest.approx(_uniformity_reference(z, t), rel=1e-12, abs=1e-12)


def test_uniformity_on_the_circle_reaches_the_bessel_limit():
    """N points evenly on S^1: the mean over pairs is (N E - 1)/(N - 1) with E = exp(-2t) I0(2t) exactly
    (the trapezoid rule is exact to machine precision for this periodic analytic integrand)."""
    from scipy.special import i0

    n, t = 2000, 2.0
    angle = 2 * np.pi * np.arange(n) / n
    z = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    limit = math.log(i0(2 * t)) - 2 * t  # log E over independent uniform pairs: -1.5750
    pairs = math.log((n * math.exp(limit) - 1) / (n - 1))
    assert uniformity(z, t) == pytest.approx(pairs, abs=1e-9)
    assert uniformity(z, t) == pytest.approx(limit, abs=2e-3)


def test_uniformity_extremes_and_stability():
    one_point = np.tile([[0.3, -1.2, 2.0]], (6, 1))
    assert uniformity(one_point) == pytest.approx(0.0, abs=1e-12)  # collapsed: every distance 0
    assert uniformity(np.array([[1.0, 0.0], [-1.0, 0.0]])) == pytest.approx(-8.0)  # log exp(-2 * 4)
    assert uniformity(np.array([[1.0, 0.0], [-1.0, 0.0]]), t=1000.0) == pytest.approx(-4000.0)  # no underflow
    assert np.allclose(np.linalg.norm(normalize_rows(np.random.default_rng(3).normal(size=(4, 3))), axis=1), 1.0)
    with pytest.raises(ValueError, match="at least 2"):
        uniformity(np.ones((1, 3)))


def _knn_reference(x, y, groups, task, k, n_splits):
    """Cosine kNN, fold by fold, in plain float64 numpy (ties in the vote: the lowest class)."""
    from sklearn.model_selection import GroupKFold

    f = x / np.linalg.norm(x, axis=1, keepdims=True)
    predicted = np.empty(len(y))
    for train, test in GroupKFold(n_splits=n_splits).split(x, y, groups):
        kk = min(k, len(train))
        for i in test:
            distance = 1.0 - f[train] @ f[i]
            nearest = train[np.argsort(distance, kind="stable")[:kk]]
            if task == "classification":
                predicted[i] = np.bincount(y[nearest].astype(int)).argmax()
            else:
                predicted[i] = y[nearest].mean()
    if task == "classification":
        return float(np.mean(predicted == y))
    return float(np.mean(np.abs(predicted - y)))


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_knn_score_matches_a_plain_numpy_reference(task):
    rng = np.random.default_rng(4)
    groups = np.repeat(np.arange(30), 2).astype(str)
    x = rng.normal(size=(60, 8))
    y = rng.integers(0, 3, size=60).astype(float) if task == "classification" else rng.normal(70, 8, size=60)
    x[:, 0] += y / (1.0 if task == "classification" else 10.0)  # some signal
    assert knn_score(x, y, groups, task, k=5, n_splits=5) == pytest.approx(_knn_reference(x, y, groups, task, 5, 5),
                                                                           rel=1e-12)


def test_knn_folds_keep_a_subject_on_one_side():
    """Each subject has two identical scans and a random label: a leaky split would score 1.0 with k=1.
    Grouped folds stay near chance (100 subjects, seeds 0-4: 0.46, 0.60, 0.45, 0.52, 0.49; ungrouped: 1.0)."""
    for seed in range(5):
        rng = np.random.default_rng(seed)
        scans = np.repeat(rng.normal(size=(100, 6)), 2, axis=0)
        labels = np.repeat(rng.integers(0, 2, size=100), 2).astype(float)
        groups = np.repeat(np.arange(100), 2)
        assert knn_score(scans, labels, groups, "classification", k=1) < 0.75
        assert knn_score(scans, labels, np.arange(200), "classification", k=1) == 1.0  # the leak it guards against


def test_knn_score_leaves_out_missing_labels_and_refuses_too_little():
    x = np.random.default_rng(5).normal(size=(8, 3))
    y = np.array([0, 1, 0, 1, np.nan, 0, 1, np.nan])
    groups = np.arange(8)
    assert 0.0 <= knn_score(x, y, groups, k=50) <= 1.0  # k capped by the smallest training fold
    assert math.isnan(knn_score(x, np.zeros(8), groups))  # one class: undefined
    assert math.isnan(knn_score(x, y, np.zeros(8)))  # one subject: no fold possible
