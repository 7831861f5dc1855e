"""Subject-level splits: leakage impossible (property test), stratified, deterministic, reported."""

from __future__ import annotations

import contextlib
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neuro_ssl.data.splits import (
    SplitWarning, first_visits, make_folds, make_splits, split_report, subject_labels,
)
from neuro_ssl.errors import ConfigError, ManifestError

SESSIONS = ["bl", "m06", "m12", "m24"]


def cohort(n_subjects: int, seed: int = 0, classes=("CN", "MCI", "AD"), weights=None) -> pd.DataFrame:
    """A longitudinal manifest: 1-4 visits per subject, T1w (and sometimes FDG) per visit."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_subjects):
        label = rng.choice(classes, p=weights)
        age0 = float(rng.uniform(55, 90))
        sex = rng.choice(["M", "F"])
        for v in range(int(rng.integers(1, 5))):
            for modality in ["T1w"] + (["FDG"] if rng.random() < 0.3 else []):
                rows.append({"subject_id": f"S{s:03d}", "session_id": SESSIONS[v], "image": f"/d/S{s}_{v}_{modality}.nii.gz",
                             "modality": modality, "age": age0 + [0, 0.5, 1, 2][v], "sex": sex, "diagnosis": label})
    df = pd.DataFrame(rows)
    df.index = pd.RangeIndex(2, 2 + len(df))
    return df


def subjects(df) -> set:
    return set(df["subject_id"])


def assert_partition(df, parts):
    """No subject in two parts; every row in exactly one part."""
    names = list(parts)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not subjects(parts[a]) & subjects(parts[b]), (a, b)
    rows = np.concatenate([p.index.to_numpy() for p in parts.values()])
    assert sorted(rows) == sorted(df.index)


@st.composite
def longitudinal(draw):
    n = draw(st.integers(3, 40))
    seed = draw(st.integers(0, 10_000))
    n_classes = draw(st.integers(1, 4))
    df = cohort(n, seed, classes=("CN", "MCI", "AD", "SMC")[:n_classes])
    missing = draw(st.lists(st.integers(0, len(df) - 1), max_size=3))
    df.loc[df.index[missing], "diagnosis"] = np.nan
    return df.sample(frac=1.0, random_state=seed)  # row order must not matter


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(df=longitudinal(), test_size=st.sampled_from([0.0, 0.1, 0.2, 0.34]), val_size=st.sampled_from([0.0, 0.1, 0.25]),
       seed=st.integers(0, 3))
def test_splits_never_leak_and_cover_every_row(df, test_size, val_size, seed):
    n = df["subject_id"].nunique()
    n_test = 0 if test_size == 0 else max(1, math.floor(n * test_size + 0.5))
    n_val = 0 if val_size == 0 else max(1, math.floor(n * val_size + 0.5))
    if n - n_test - n_val < 1:  # too few subjects for the sizes asked: a data problem (exit 1)
        with pytest.raises(ManifestError):
            make_splits(df, test_size, val_size, "diagnosis", seed)
        return
    with _quiet():
        parts = make_splits(df, test_size, val_size, "diagnosis", seed)
        again = make_splits(df.sort_index(), test_size, val_size, "diagnosis", seed)
    assert_partition(df, parts)
    assert parts["test"]["subject_id"].nunique() == n_test and parts["val"]["subject_id"].nunique() == n_val
    for name in parts:  # same seed, any row order: the same subjects
        assert subjects(parts[name]) == subjects(again[name])


@settings(max_examples=30, deadline=None)
@given(df=longitudinal(), k=st.integers(2, 5), seed=st.integers(0, 3))
def test_folds_never_leak_and_each_subject_is_validated_once(df, k, seed):
    n = df["subject_id"].nunique()
    if n < k:
        with pytest.raises(ManifestError):
            make_folds(df, k, "diagnosis", seed)
        return
    with _quiet():
        folds = make_folds(df, k, "diagnosis", seed)
    assert len(folds) == k
    for fold in folds:
        assert_partition(df, fold)
    val_subjects = [subjects(f["val"]) for f in folds]
    assert sorted(s for v in val_subjects for s in v) == sorted(subjects(df))
    sizes = [len(v) for v in val_subjects]
    assert max(sizes) - min(sizes) <= 1


@contextlib.contextmanager
def _quiet():
    """Small random cohorts often pool classes: the warning is expected there."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SplitWarning)
        yield


def test_stratification_follows_the_largest_remainder_quota():
    """Each class gets floor or ceil of its share of the test and val subjects."""
    df = cohort(200, seed=3, weights=[0.5, 0.3, 0.2])
    parts = make_splits(df, 0.2, 0.1, "diagnosis", seed=7)
    labels = subject_labels(df, "diagnosis")
    n = len(labels)
    for name, size in (("test", 0.2), ("val", 0.1)):
        got = subject_labels(parts[name], "diagnosis").value_counts()
        total = round(n * size)
        for cls, n_cls in labels.value_counts().items():
            quota = total * n_cls / n
            assert math.floor(quota) <= got.get(cls, 0) <= math.ceil(quota), (name, cls)


def test_different_seeds_give_different_splits_and_same_seed_the_same():
    df = cohort(60, seed=1)
    a, b, c = (make_splits(df, 0.2, 0.1, "diagnosis", s) for s in (0, 0, 1))
    assert all(a[p].index.equals(b[p].index) for p in a)
    assert subjects(a["test"]) != subjects(c["test"])


def test_small_classes_are_pooled_with_a_warning():
    df = cohort(30, seed=2, classes=("CN", "AD"))
    df.loc[df["subject_id"] == "S000", "diagnosis"] = "FTD"
    with pytest.warns(SplitWarning, match="FTD"):
        parts = make_splits(df, 0.2, 0.1, "diagnosis", seed=0)
    assert_partition(df, parts)


def test_subject_label_is_the_first_visit_label():
    df = cohort(1, seed=0)
    df = pd.concat([df.iloc[:1]] * 3).set_axis(pd.RangeIndex(2, 5))
    df["session_id"] = ["m24", "bl", "m12"]
    df["diagnosis"] = ["AD", "CN", "MCI"]
    assert subject_labels(df, "diagnosis").tolist() == ["CN"]
    df["diagnosis"] = ["AD", np.nan, "AD"]  # nothing at baseline: the most common label
    assert subject_labels(df, "diagnosis").tolist() == ["AD"]


def test_baseline_only_eval_keeps_first_session_of_every_modality():
    df = cohort(40, seed=4)
    parts = make_splits(df, 0.25, 0.25, "diagnosis", seed=0, baseline_only_eval=True)
    full = make_splits(df, 0.25, 0.25, "diagnosis", seed=0)
    assert subjects(parts["test"]) == subjects(full["test"])
    assert parts["train"].index.equals(full["train"].index)
    for name in ("val", "test"):
        assert set(parts[name]["session_id"]) == {"bl"}
        expected = full[name][full[name]["session_id"] == "bl"]
        assert parts[name].index.equals(expected.index)  # T1w and FDG of the first session kept


def test_first_visits_orders_visit_codes_not_text():
    df = pd.DataFrame({"subject_id": ["A", "A", "A"], "session_id": ["m12", "m06", "ses-x"], "age": [71, 70.5, 60]})
    assert first_visits(df)["session_id"].tolist() == ["m06"]


def test_numeric_stratify_column_is_binned():
    df = cohort(80, seed=5)
    parts = make_splits(df, 0.25, 0.0, "age", seed=0)
    assert_partition(df, parts)
    assert set(subject_labels(df, "age")) == {"age q1", "age q2", "age q3", "age q4"}


def test_bad_requests():
    df = cohort(10)
    with pytest.raises(ManifestError, match="no such column"):
        make_splits(df, 0.2, 0.1, "DX_missing", 0)
    with pytest.raises(ConfigError, match="nothing to train on"):
        make_splits(df, 0.6, 0.4, "diagnosis", 0)
    with _quiet(), pytest.raises(ManifestError, match="too few"):
        make_splits(cohort(2), 0.4, 0.4, "diagnosis", 0)
    bad = df.copy()
    bad.loc[bad.index[3], "subject_id"] = np.nan
    with pytest.raises(ManifestError, match=f"row {bad.index[3]}: no subject_id"):
        make_splits(bad, 0.2, 0.1, "diagnosis", 0)
    with pytest.raises(ConfigError, match="at least 2"):
        make_folds(df, 1, "diagnosis", 0)


def test_unstratified_and_all_missing_labels():
    df = cohort(20)
    parts = make_splits(df, 0.2, 0.1, None, 0)
    assert_partition(df, parts)
    df["diagnosis"] = np.nan
    with pytest.warns(SplitWarning, match="no values"):
        assert_partition(df, make_splits(df, 0.2, 0.1, "diagnosis", 0))


def test_split_report_counts_match_direct_computation():
    df = cohort(50, seed=6)
    parts = make_splits(df, 0.2, 0.2, "diagnosis", seed=0)
    report = split_report(parts, "diagnosis").set_index("part")
    for name, part in parts.items():
        first = part[part["session_id"] == "bl"].drop_duplicates("subject_id")
        assert report.at[name, "n_subjects"] == part["subject_id"].nunique()
        assert report.at[name, "n_scans"] == len(part)
        assert report.at[name, "age_mean"] == pytest.approx(first["age"].mean(), abs=0.01)
        assert report.at[name, "age_sd"] == pytest.approx(first["age"].std(ddof=1), abs=0.01)
        assert report.at[name, "pct_female"] == pytest.approx(100 * (first["sex"] == "F").mean(), abs=0.1)
        for cls in ("CN", "MCI", "AD"):
            assert report.at[name, f"n_{cls}"] == first[first["diagnosis"] == cls]["subject_id"].nunique()
