"""Subject-level bootstrap: nominal coverage in simulation, subjects move as a whole, degenerate resamples."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from neuro_ssl.evaluation import metrics as m
from neuro_ssl.evaluation.bootstrap import bootstrap_ci, bootstrap_metrics, resample_multiplicity, group_codes


def _simulated_cohort(rng, n_subjects=60, shift=1.0, subject_sd=1.0):
    """Subjects with 1-3 scans; a per-subject random effect makes scans of one person correlated."""
    label = rng.integers(0, 2, n_subjects)
    label[:2] = [0, 1]
    n_scans = rng.integers(1, 4, n_subjects)
    subject = np.repeat(np.arange(n_subjects), n_scans)
    effect = rng.normal(0, subject_sd, n_subjects)
    y = label[subject]
    score = shift * y + effect[subject] + rng.normal(0, 1, len(subject))
    return y, score, subject


def _coverage(groups_fn, n_datasets=200, n_boot=200, shift=1.0, subject_sd=1.0):
    true_auc = norm.cdf(shift / np.sqrt(2 * (subject_sd**2 + 1)))  # P(X_pos > X_neg), independent people
    rng = np.random.default_rng(12345)
    hits = 0
    for i in range(n_datasets):
        y, score, subject = _simulated_cohort(rng, shift=shift, subject_sd=subject_sd)
        ci = bootstrap_ci(m.roc_auc, y, score, groups=groups_fn(subject), n_boot=n_boot, seed=i, classes=y)
        hits += ci.ci_low <= true_auc <= ci.ci_high
    return hits / n_datasets


def test_subject_bootstrap_covers_true_auc_at_nominal_rate():
    coverage = _coverage(lambda subject: subject)
    assert 0.88 <= coverage <= 0.99, coverage


def test_scan_level_bootstrap_undercovers_when_scans_correlate():
    """The reason to resample subjects: treating 1-3 scans per person as independent is overconfident."""
    grouped = _coverage(lambda subject: subject, n_datasets=100, n_boot=150, subject_sd=2.0)
    naive = _coverage(lambda subject: np.arange(len(subject)), n_datasets=100, n_boot=150, subject_sd=2.0)
    assert naive < grouped - 0.05, (naive, grouped)


def test_mae_interval_coverage():
    rng = np.random.default_rng(7)
    true_mae = 5.0 * np.sqrt(2 / np.pi)  # E|N(0, 5^2)|
    hits = 0
    for i in range(200):
        n_sub = 50
        subject = np.repeat(np.arange(n_sub), 2)
        err = rng.normal(0, 5, len(subject))
        y = rng.normal(70, 8, len(subject))
        ci = bootstrap_ci(m.mae, y, y + err, groups=subject, n_boot=200, seed=i)
        hits += ci.ci_low <= true_mae <= ci.ci_high
    assert 0.88 <= hits / 200 <= 0.99


def test_a_subjects_scans_move_together():
    subject = np.array(["s1", "s1", "s1", "s2", "s3", "s3", "s4"])
    scan = np.arange(len(subject))
    seen = []

    def record(subj, scan_idx):
        per_scan = np.bincount(scan_idx, minlength=len(subject))
        for s in set(subj):
            mine = per_scan[subject == s]
            assert mine.min() == mine.max() >= 1, (s, mine)  # every scan of s, the same number of times
        assert not set(subject[per_scan > 0]) ^ set(subj)
        seen.append(len(set(subj)))
        return {"n": float(len(subj))}

    bootstrap_metrics(record, subject, scan, groups=subject, n_boot=200, seed=0)
    assert len(seen) == 200 + 1 and min(seen) < 4  # the point estimate + 200 resamples, some repeat subjects


def test_multiplicity_draws_as_many_subjects_as_there_are():
    codes = group_codes(np.array(["a", "a", "b", "c", "c", "c"]))
    rng = np.random.default_rng(0)
    for _ in range(100):
        mult = resample_multiplicity(codes, rng)
        per_subject = [mult[codes == g][0] for g in range(3)]
        assert sum(per_subject) == 3
        assert all((mult[codes == g] == mult[codes == g][0]).all() for g in range(3))


def test_one_class_resamples_are_skipped_and_counted():
    # 2 positive subjects out of 12: many resamples draw no positive at all.
    subject = np.arange(12)
    y = np.r_[np.zeros(10, int), 1, 1]
    score = np.linspace(0, 1, 12)
    ci = bootstrap_ci(m.roc_auc, y, score, groups=subject, n_boot=300, seed=1, classes=y)
    expected_skip_rate = (10 / 12) ** 12  # no positive drawn among 12 draws
    assert ci.n_skipped > 0 and ci.n_boot + ci.n_skipped == 300
    assert ci.n_skipped / 300 == pytest.approx(expected_skip_rate, abs=0.06)
    assert ci.value == 1.0 and ci.ci_high == 1.0
    # Without ``classes`` the nan AUCs are still dropped (counted as skipped), never averaged in.
    ci_nan = bootstrap_ci(m.roc_auc, y, score, groups=subject, n_boot=300, seed=1)
    assert ci_nan.n_skipped == ci.n_skipped


def test_same_seed_same_interval_and_ci_contains_point():
    rng = np.random.default_rng(0)
    y, score, subject = _simulated_cohort(rng)
    a = bootstrap_ci(m.roc_auc, y, score, groups=subject, n_boot=300, seed=5, classes=y)
    b = bootstrap_ci(m.roc_auc, y, score, groups=subject, n_boot=300, seed=5, classes=y)
    assert a == b
    assert a.ci_low <= a.value <= a.ci_high


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ in length"):
        bootstrap_ci(m.mae, [1.0, 2.0], [1.0, 2.0], groups=[1, 2, 3])
