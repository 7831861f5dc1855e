"""Retrieval and prototype metrics against brute force: every tie-breaking order enumerated, scikit-learn's AUC."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from neuro_ssl.evaluation.retrieval import (chance_at_k, cosine_similarity, median_rank, prototype_classification,
                                            recall_at_k, retrieval_metrics)


def brute_force_ranks(similarity: np.ndarray) -> list[list[int]]:
    """For each query, the match's rank under every equally likely tie-breaking order of the candidates."""
    out = []
    for i, row in enumerate(similarity):
        ranks = []
        for order in itertools.permutations(range(len(row))):  # a random tie-break is a random order among equals
            ranked = sorted(range(len(row)), key=lambda j: (-row[j], order.index(j)))
            ranks.append(ranked.index(i) + 1)
        out.append(ranks)
    return out


def test_recall_and_median_rank_equal_the_expectation_over_all_tie_breaks():
    rng = np.random.default_rng(0)
    similarity = rng.integers(0, 3, size=(6, 6)).astype(float)  # many ties
    ranks = brute_force_ranks(similarity)
    for k in (1, 2, 5):
        assert recall_at_k(similarity, k) == pytest.approx(np.mean([np.mean(np.array(r) <= k) for r in ranks]))
    assert median_rank(similarity) == pytest.approx(np.median([np.mean(r) for r in ranks]))


def test_known_matrices():
    n = 12
    perfect = np.eye(n)
    assert retrieval_metrics(perfect) == {"recall_at_1": 1.0, "recall_at_5": 1.0, "recall_at_10": 1.0,
                                          "median_rank": 1.0, "chance_at_5": 5 / n, "n": n}
    flat = np.zeros((n, n))  # no information: exactly chance
    assert recall_at_k(flat, 5) == pytest.approx(5 / n) and median_rank(flat) == pytest.approx((n + 1) / 2)
    worst = -np.eye(n)  # the match is always last
    assert recall_at_k(worst, 10) == 0.0 and median_rank(worst) == n
    shifted = np.roll(np.eye(n), 1, axis=1) + np.eye(n) * 0.5  # match second in every row
    assert recall_at_k(shifted, 1) == 0.0 and recall_at_k(shifted, 5) == 1.0 and median_rank(shifted) == 2.0
    assert chance_at_k(3, 5) == 1.0 and chance_at_k(100, 5) == 0.05


def test_rows_are_queries_so_the_transpose_is_the_other_direction():
    similarity = np.array([[0.9, 0.8, 0.1], [0.95, 0.5, 0.2], [0.0, 0.1, 0.3]])
    assert recall_at_k(similarity, 1) == pytest.approx(2 / 3)   # ranks 1, 2, 1: row 1's match beaten by column 0
    assert recall_at_k(similarity.T, 1) == pytest.approx(1 / 3)  # ranks 2, 2, 1: columns 0 and 1 beaten
    assert median_rank(similarity) == 1.0 and median_rank(similarity.T) == 2.0


def test_cosine_similarity_and_bad_input():
    a = np.array([[3.0, 0.0], [1.0, 1.0]])
    np.testing.assert_allclose(cosine_similarity(a, a), [[1.0, np.sqrt(0.5)], [np.sqrt(0.5), 1.0]])
    with pytest.raises(ValueError, match="square"):
        retrieval_metrics(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        recall_at_k(np.array([[np.nan, 0.0], [0.0, 1.0]]), 1)


def test_prototype_classification_matches_scikit_learn():
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 30)
    similarity = rng.normal(size=(30, 2)) + np.eye(2)[y]
    result = prototype_classification(similarity, y, ["CN", "AD"])
    assert result["auc"] == pytest.approx(roc_auc_score(y, similarity[:, 1] - similarity[:, 0]))
    assert result["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, similarity.argmax(1)))
    assert result["n"] == 30 and result["n_per_class"] == {"CN": int((y == 0).sum()), "AD": int((y == 1).sum())}
    y3 = rng.integers(0, 3, 40)
    s3 = rng.normal(size=(40, 3)) + np.eye(3)[y3]
    softmax = np.exp(s3) / np.exp(s3).sum(1, keepdims=True)
    assert prototype_classification(s3, y3, ["CN", "MCI", "AD"])["auc"] == pytest.approx(
        roc_auc_score(y3, softmax, multi_class="ovr", average="macro"))
    assert prototype_classification(similarity[y == 0], y[y == 0], ["CN", "AD"])["auc"] is None
