"""Percentile bootstrap confidence intervals that resample *subjects*, not scans.

Scans of one person are correlated (same brain, same scanner). Resampling scans as if they were
independent makes intervals too narrow; here each bootstrap sample draws subjects with
replacement and takes *all* scans of every drawn subject (as many times as it was drawn).

A resample in which a class present in the data is missing (``classes=``) is skipped and
counted, as is a resample where a metric is undefined (``nan``). The interval is the
``alpha/2`` and ``1 - alpha/2`` quantiles of the remaining bootstrap values (Efron's percentile
interval).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Mapping

import numpy as np

#: fewer usable resamples than this and the interval is reported as nan
MIN_VALID_RESAMPLES = 10


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap interval and how many resamples it rests on."""

    value: float
    ci_low: float
    ci_high: float
    n_boot: int
    n_skipped: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def group_codes(groups) -> np.ndarray:
    """Integer code per scan for its subject (0 .. G-1)."""
    _, codes = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    return codes.ravel()


def resample_multiplicity(codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """How often each scan enters one bootstrap sample: the number of draws of its subject."""
    n_groups = int(codes.max()) + 1
    draws = rng.integers(0, n_groups, size=n_groups)
    return np.bincount(draws, minlength=n_groups)[codes]


def bootstrap_metrics(metric_fn: Callable[..., Mapping[str, float]], *arrays, groups,
                      n_boot: int = 1000, alpha: float = 0.05, seed: int = 0,
                      classes=None) -> dict[str, Interval]:
    """Bootstrap every metric ``metric_fn(*arrays) -> {name: value}`` returns, by subject.

    ``classes``: per-scan class codes; resamples missing any class of the full data are skipped.
    """
    arrays = [np.asarray(a) for a in arrays]
    n = len(arrays[0])
    if any(len(a) != n for a in arrays) or len(groups) != n:
        raise ValueError(f"arrays and groups differ in length: {[len(a) for a in arrays]} vs {len(groups)}")
    codes = group_codes(groups)
    point = dict(metric_fn(*arrays))
    rng = np.random.default_rng(seed)
    class_codes = np.unique(np.asarray(classes), return_inverse=True)[1].ravel() if classes is not None else None
    n_classes = int(class_codes.max()) + 1 if class_codes is not None and len(class_codes) else 0
    samples: dict[str, list[float]] = {name: [] for name in point}
    skipped_for_class = 0
    for _ in range(n_boot):
        index = np.repeat(np.arange(n), resample_multiplicity(codes, rng))
        if class_codes is not None and np.bincount(class_codes[index], minlength=n_classes).min() == 0:
            skipped_for_class += 1
            continue
        for name, value in metric_fn(*(a[index] for a in arrays)).items():
            samples[name].append(value)
    return {name: _interval(point[name], np.asarray(samples[name], float), n_boot, skipped_for_class, alpha)
            for name in point}


def bootstrap_ci(metric_fn: Callable[..., float], *arrays, groups, n_boot: int = 1000,
                 alpha: float = 0.05, seed: int = 0, classes=None) -> Interval:
    """95% (``1 - alpha``) percentile interval of one scalar metric, resampling subjects.

    >>> # bootstrap_ci(metrics.roc_auc, y, p, groups=subject_ids, classes=y)
    """
    result = bootstrap_metrics(lambda *a: {"m": metric_fn(*a)}, *arrays, groups=groups,
                               n_boot=n_boot, alpha=alpha, seed=seed, classes=classes)
    return result["m"]


def _interval(point: float, values: np.ndarray, n_boot: int, skipped: int, alpha: float) -> Interval:
    finite = values[np.isfinite(values)]
    skipped_total = skipped + (len(values) - len(finite))
    if len(finite) < MIN_VALID_RESAMPLES:
        low = high = float("nan")
    else:
        low, high = (float(q) for q in np.quantile(finite, [alpha / 2, 1 - alpha / 2]))
    return Interval(float(point), low, high, n_boot - skipped_total, skipped_total)
