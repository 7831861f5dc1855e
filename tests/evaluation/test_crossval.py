"""Subject-level folds for --folds K and the mean +- sd table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from neuro_ssl.errors import ManifestError
from neuro_ssl.evaluation import crossval


def _manifest(n_subjects=18, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_subjects):
        for session in ("bl", "m12", "m24")[: 1 + s % 3]:
            rows.append({"subject_id": f"S{s:02d}", "session_id": session, "diagnosis": ["CN", "AD"][s % 2],
                         "age": float(rng.uniform(60, 85))})
    df = pd.DataFrame(rows, index=pd.RangeIndex(2, 2 + len(rows)))
    df.attrs["source"] = "m.csv"
    return df


def test_every_subject_in_one_fold_stratified_and_seeded():
    df = _manifest()
    fold_of = crossval.subject_folds(df, 3, seed=0, stratify="diagnosis")
    assert set(fold_of) == set(df["subject_id"]) and set(fold_of.values()) == {0, 1, 2}
    for k in range(3):  # 9 CN and 9 AD subjects: 3 of each per fold
        members = [s for s, f in fold_of.items() if f == k]
        assert sorted(df.drop_duplicates("subject_id").set_index("subject_id").loc[members, "diagnosis"]).count("AD") == 3
    assert crossval.subject_folds(df.sample(frac=1.0, random_state=4), 3, seed=0, stratify="diagnosis") == fold_of
    assert crossval.subject_folds(df, 3, seed=1, stratify="diagnosis") != fold_of


def test_rounds_partition_the_scans_without_sharing_subjects():
    df = _manifest()
    fold_of = crossval.subject_folds(df, 3, seed=0, stratify="diagnosis")
    tested = []
    for i in range(3):
        train, val, test = crossval.fold_round(df, fold_of, i, 3)
        assert len(train) + len(val) + len(test) == len(df) and test.attrs["source"] == "m.csv"
        sets = [set(p["subject_id"]) for p in (train, val, test)]
        assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
        assert {fold_of[s] for s in sets[1]} == {(i + 1) % 3}
        tested.append(sets[2])
    assert set().union(*tested) == set(df["subject_id"])
    train, val, test = crossval.fold_round(df, crossval.subject_folds(df, 2), 0, 2)
    assert val is None and len(train) + len(test) == len(df)


def test_summary_rows_are_mean_and_sample_sd():
    rows = [{"fold": "1", "n_test": 10, "auc": 0.8}, {"fold": "2", "n_test": 12, "auc": 0.9},
            {"fold": "3", "n_test": 11, "auc": 0.7}]
    table = crossval.summarize_folds(rows)
    assert list(table["fold"]) == ["1", "2", "3", "mean", "sd"]
    assert table["auc"].iloc[3] == pytest.approx(0.8) and table["auc"].iloc[4] == pytest.approx(np.std([0.8, 0.9, 0.7], ddof=1))
    assert "0.800 +- 0.100" in crossval.format_folds(table)


def test_too_few_subjects_for_k():
    with pytest.raises(ManifestError):
        crossval.subject_folds(_manifest(n_subjects=2), 3)
