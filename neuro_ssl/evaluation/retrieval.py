"""Cross-modal retrieval and prototype ("zero-shot") classification metrics, in plain numpy.

Retrieval: ``similarity[i, j]`` scores query i against candidate j, and candidate i is query i's
one true match (the same scan's clinical row, or the same session's other modality). For each
query, ``greater`` = candidates scored strictly above the match and ``ties`` = others scored
equal to it; ties are broken at random, so the match's rank is uniform on
``1 + greater .. 1 + greater + ties`` and the metrics are their expectations:

- ``recall_at_k``: mean over queries of P(rank <= k) = clip((k - greater) / (ties + 1), 0, 1);
- ``median_rank``: median over queries of the expected rank ``1 + greater + ties / 2`` (1 is best);
- ``chance_at_k``: recall@k of a random ranking, min(k, n) / n.

Prototype classification: each scan is compared with one embedding per class (the class's median
clinical profile); cos similarities (n, K) act as scores: binary AUC of ``s[:, 1] - s[:, 0]``,
otherwise macro one-vs-rest AUC of the softmax, and balanced accuracy of the nearest prototype.
"""

from __future__ import annotations

import numpy as np

from neuro_ssl.evaluation.metrics import balanced_accuracy, roc_auc

RECALL_KS = (1, 5, 10)


def _check_square(similarity) -> np.ndarray:
    s = np.asarray(similarity, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] != s.shape[1] or s.shape[0] == 0:
        raise ValueError(f"similarity must be a non-empty square (n, n) matrix, got shape {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError("similarity holds NaN or inf")
    return s


def match_ranks(similarity) -> tuple[np.ndarray, np.ndarray]:
    """``(greater, ties)`` per query (row): candidates scored above / equal to the true match (diagonal)."""
    s = _check_square(similarity)
    match = np.diag(s)[:, None]
    greater = (s > match).sum(axis=1)
    ties = (s == match).sum(axis=1) - 1
    return greater, ties


def recall_at_k(similarity, k: int) -> float:
    """Expected share of queries whose match ranks in the top k (ties broken at random)."""
    greater, ties = match_ranks(similarity)
    return float(np.mean(np.clip((k - greater) / (ties + 1.0), 0.0, 1.0)))


def median_rank(similarity) -> float:
    """Median over queries of the match's expected rank (1 = always first)."""
    greater, ties = match_ranks(similarity)
    return float(np.median(1.0 + greater + ties / 2.0))


def chance_at_k(n: int, k: int) -> float:
    """recall@k of a random ranking of n candidates."""
    return min(int(k), int(n)) / int(n)


def cosine_similarity(a, b) -> np.ndarray:
    """(n, m) cosine similarities of the rows of a (n, D) and b (m, D), float64."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return a @ b.T


def retrieval_metrics(similarity) -> dict:
    """``{"recall_at_1", "recall_at_5", "recall_at_10", "median_rank", "chance_at_5", "n"}`` of queries = rows."""
    s = _check_square(similarity)
    out = {f"recall_at_{k}": recall_at_k(s, k) for k in RECALL_KS}
    out["median_rank"] = median_rank(s)
    out["chance_at_5"] = chance_at_k(len(s), 5)
    out["n"] = int(len(s))
    return out


def prototype_classification(similarity, y_true, classes) -> dict:
    """Scores of nearest-prototype classification: ``similarity`` (n, K) to the K class prototypes,
    ``y_true`` class codes 0..K-1 (in the order of ``classes``). AUC is None when a class is absent."""
    s = np.asarray(similarity, dtype=np.float64)
    y = np.asarray(y_true, dtype=int)
    if s.ndim != 2 or s.shape != (len(y), len(classes)) or len(classes) < 2:
        raise ValueError(f"similarity must be (n, K) with K = {len(classes)} >= 2 classes and n = {len(y)}, got {s.shape}")
    if len(classes) == 2:
        auc = roc_auc(y, s[:, 1] - s[:, 0])
    else:
        shifted = np.exp(s - s.max(axis=1, keepdims=True))
        auc = roc_auc(y, shifted / shifted.sum(axis=1, keepdims=True))
    return {"classes": list(classes), "auc": None if np.isnan(auc) else float(auc),
            "balanced_accuracy": balanced_accuracy(y, s.argmax(axis=1), len(classes)),
            "n": int(len(y)), "n_per_class": {name: int((y == k).sum()) for k, name in enumerate(classes)}}
