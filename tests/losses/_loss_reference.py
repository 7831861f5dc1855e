"""Naive float64 references for the contrastive losses: plain Python loops over anchors, numpy only.

Written from the papers' formulas, independently of neuro_ssl.losses (no shared code, no torch).
"""

from __future__ import annotations

import math

import numpy as np


def _unit_rows(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def weighted_infonce(z1, z2, temperature, weight, queue_z=None) -> float:
    """mean over the 2B anchors of -sum_c w(a, c) / sum_c' w(a, c') * log softmax_c(cos(a, c) / T), c != a.

    ``weight(a, c)`` gets row indices into [z1; z2; queue_z]; anchors are the first 2B rows.
    """
    rows = [_unit_rows(z1), _unit_rows(z2)]
    if queue_z is not None and len(queue_z):
        rows.append(_unit_rows(queue_z))
    emb = np.concatenate(rows)
    n_anchors = 2 * len(z1)
    total = 0.0
    for a in range(n_anchors):
        others = [c for c in range(len(emb)) if c != a]
        sims = {c: float(emb[a] @ emb[c]) / temperature for c in others}
        top = max(sims.values())
        log_denominator = top + math.log(sum(math.exp(s - top) for s in sims.values()))
        weights = {c: weight(a, c) for c in others}
        weight_sum = sum(weights.values())
        total += -sum(w / weight_sum * (sims[c] - log_denominator) for c, w in weights.items() if w)
    return total / n_anchors


def partner(a: int, batch: int) -> int:
    """Row of the other view of anchor a in [z1; z2]."""
    return a + batch if a < batch else a - batch


def ntxent(z1, z2, temperature, queue_z=None) -> float:
    b = len(z1)
    return weighted_infonce(z1, z2, temperature, lambda a, c: float(c == partner(a, b)), queue_z)


def yaware(z1, z2, y, sigma, temperature, queue_z=None, queue_y=None) -> float:
    """The paper's y-Aware InfoNCE, RBF weights normalized per anchor."""
    y = np.asarray(y, dtype=np.float64).reshape(len(z1), -1)
    parts = [y, y] + ([np.asarray(queue_y, dtype=np.float64).reshape(len(queue_z), -1)] if queue_z is not None else [])
    ys = np.concatenate(parts)

    def kernel(a, c):
        return math.exp(-float(np.sum((ys[a] - ys[c]) ** 2)) / (2 * sigma**2))

    return weighted_infonce(z1, z2, temperature, kernel, queue_z)


def supcon(z1, z2, labels, temperature, queue_z=None, queue_labels=None) -> float:
    """SupCon L_out: uniform weights over same-label candidates."""
    labs = list(labels) * 2 + (list(np.asarray(queue_labels).ravel()) if queue_z is not None else [])
    return weighted_infonce(z1, z2, temperature, lambda a, c: float(labs[a] == labs[c]), queue_z)


def yaware_published(z1, z2, y, sigma, temperature) -> float:
    """The published code's quirks transcribed: ``W /= W.sum(axis=1)`` broadcasting, scale -(1/B) sum."""
    b = len(z1)
    emb = np.concatenate([_unit_rows(z1), _unit_rows(z2)])
    ys = np.concatenate([np.asarray(y, dtype=np.float64)] * 2).reshape(2 * b, -1)
    w = np.exp(-((ys[:, None, :] - ys[None, :, :]) ** 2).sum(axis=2) / (2 * sigma**2))
    np.fill_diagonal(w, 0.0)
    w /= w.sum(axis=1)
    sims = emb @ emb.T / temperature
    np.fill_diagonal(sims, -np.inf)
    top = sims.max(axis=1, keepdims=True)
    log_softmax = sims - top - np.log(np.exp(sims - top).sum(axis=1, keepdims=True))
    np.fill_diagonal(log_softmax, 0.0)
    return float(-(w * log_softmax).sum() / b)


def fixture_case(ref: dict, row: int):
    """(z_i, z_j, y) of row ``row`` of the fixture's (36, ...) arrays, float64 numpy."""
    case = int(ref["case_index"][row])
    return tuple(ref[f"{key}_{case:03d}"] for key in ("z_i", "z_j", "y"))


def moco(q, k, temperature, queue_z=None) -> float:
    """MoCo's InfoNCE: mean over queries of -log softmax over [own key; queue] (v2) or over all keys (v3)."""
    q, k = _unit_rows(q), _unit_rows(k)
    negatives = _unit_rows(queue_z) if queue_z is not None and len(queue_z) else None
    total = 0.0
    for i in range(len(q)):
        if negatives is not None:
            sims = [float(q[i] @ k[i]) / temperature] + [float(q[i] @ n) / temperature for n in negatives]
            own = 0
        else:
            sims = [float(q[i] @ kj) / temperature for kj in k]
            own = i
        top = max(sims)
        total += -(sims[own] - top - math.log(sum(math.exp(s - top) for s in sims)))
    return total / len(q)
