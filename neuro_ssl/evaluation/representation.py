"""Label-free quality of a frozen representation: alignment, uniformity and a kNN probe.

Alignment and uniformity (Wang & Isola, "Understanding Contrastive Representation Learning
through Alignment and Uniformity on the Hypersphere", ICML 2020, arXiv:2005.10242), on
L2-normalized embeddings f(x) in R^D::

    alignment  = E_{(x, y) positive pair} ||f(x) - f(y)||_2^alpha          (alpha = 2; lower is better, 0..4)
    uniformity = log E_{i != j} exp(-t ||f(x_i) - f(x_j)||_2^2)            (t = 2; lower is better, -4t..0)

A positive pair is two augmented views of one scan; uniformity averages over the distinct
pairs of a set of scans (the paper's ``torch.pdist`` form). On the unit circle with points
spread uniformly, uniformity tends to ``log I0(2t) - 2t`` (I0: modified Bessel function), the
limit the tests check.

``knn_score`` is the k-nearest-neighbour probe used across the self-supervised literature:
cosine similarity on the frozen embeddings, majority vote of the k nearest training scans
(scikit-learn's ``KNeighborsClassifier``; ties go to the lowest class code), out-of-fold over
folds grouped by subject so no person is on both sides. Regression labels get the MAE of the
neighbours' mean instead.
"""

from __future__ import annotations

import numpy as np

#: default neighbours of the kNN probe (a common choice for small held-out sets)
KNN_K = 5


def normalize_rows(z: np.ndarray) -> np.ndarray:
    """Rows of ``z`` (N, D) scaled to unit L2 norm, in float64 (a zero row stays zero)."""
    z = np.asarray(z, dtype=np.float64)
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    return z / np.where(norms > 0, norms, 1.0)


def alignment(z1: np.ndarray, z2: np.ndarray, alpha: float = 2.0) -> float:
    """Mean ``||f(x) - f(y)||^alpha`` over positive pairs (row i of ``z1`` with row i of ``z2``).

    Args:
        z1, z2: (N, D) embeddings of the two views of N scans; normalized here.
        alpha: the exponent (the paper uses 2).
    Raises:
        ValueError: when the shapes differ or N is 0.
    """
    z1, z2 = np.asarray(z1), np.asarray(z2)
    if z1.shape != z2.shape or z1.ndim != 2 or len(z1) == 0:
        raise ValueError(f"alignment needs two (N, D) arrays of one shape, got {z1.shape} and {z2.shape}")
    distance = np.linalg.norm(normalize_rows(z1) - normalize_rows(z2), axis=1)
    return float(np.mean(distance ** alpha))


def uniformity(z: np.ndarray, t: float = 2.0) -> float:
    """``log`` of the mean Gaussian potential ``exp(-t ||f_i - f_j||^2)`` over pairs i < j.

    Computed as a log-sum-exp, so it stays finite at any t. Args: ``z`` (N, D) with N >= 2,
    normalized here. Raises ValueError for fewer than 2 rows.
    """
    f = normalize_rows(z)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"uniformity needs at least 2 embeddings, got shape {f.shape}")
    gram = f @ f.T
    squared = np.clip(2.0 - 2.0 * gram, 0.0, 4.0)  # ||a - b||^2 = 2 - 2 a.b for unit vectors
    upper = squared[np.triu_indices(len(f), k=1)]
    exponent = -t * upper
    peak = exponent.max()
    return float(peak + np.log(np.mean(np.exp(exponent - peak))))


def knn_score(features: np.ndarray, labels: np.ndarray, groups: np.ndarray, task: str = "classification",
              k: int = KNN_K, n_splits: int = 5) -> float:
    """Out-of-fold kNN accuracy (classification) or MAE (regression), folds grouped by subject.

    Args:
        features: (N, D) frozen embeddings of N scans.
        labels: (N,) class codes (classification) or numbers (regression); NaN rows are left out.
        groups: (N,) subject ids; a subject's scans are never on both sides of a fold.
        k: neighbours (capped by the smallest training fold).
    Returns nan when fewer than 2 subjects (or, for classification, 2 classes) remain.
    """
    from sklearn.model_selection import GroupKFold, cross_val_predict
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

    x, y, g = _usable(features, labels, groups)
    n_groups = len(np.unique(g))
    if n_groups < 2 or (task == "classification" and len(np.unique(y)) < 2):
        return float("nan")
    cv = GroupKFold(n_splits=min(n_splits, n_groups))
    smallest_train = min(len(train) for train, _ in cv.split(x, y, g))
    model_class = KNeighborsClassifier if task == "classification" else KNeighborsRegressor
    model = model_class(n_neighbors=min(int(k), smallest_train), metric="cosine", algorithm="brute")
    predicted = cross_val_predict(model, x, y, groups=g, cv=cv)
    if task == "classification":
        return float(np.mean(predicted == y))
    return float(np.mean(np.abs(predicted - y)))


def _usable(features, labels, groups) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    g = np.asarray(groups).astype(str)
    if not (len(x) == len(y) == len(g)):
        raise ValueError(f"features, labels and groups differ in length: {len(x)}, {len(y)}, {len(g)}")
    keep = np.isfinite(y)
    return x[keep], y[keep], g[keep]
