"""Clinical featurization: training-split statistics, one-hot, TF-IDF, missing values flagged (never NaN, never dropped)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from neuro_ssl.data.clinical import ClinicalFeatures, ClinicalFeaturizer
from neuro_ssl.errors import ManifestError

REPORTS = ["mild memory complaints, hippocampal atrophy", "no complaints, normal scan",
           "memory loss, marked hippocampal atrophy", None, "normal scan", "memory complaints, atrophy"]


def _frame(**overrides) -> pd.DataFrame:
    df = pd.DataFrame({
        "MMSE": [29.0, 30.0, np.nan, 21.0, 27.0, 24.0],
        "APOE4": ["0", "1", "2", "1", "", "0"],  # read as text by the manifest reader: still numeric
        "sex": ["F", "M", "M", None, "F", "F"],
        "report": REPORTS,
    }, index=[2, 3, 5, 6, 7, 9])  # manifest row numbers, not positions
    for key, value in overrides.items():
        df[key] = value
    df.attrs["source"] = "train.csv"
    return df


def test_numbers_standardized_with_training_statistics_categories_one_hot():
    train = _frame()
    featurizer = ClinicalFeaturizer(["MMSE", "APOE4", "sex"]).fit(train)
    mmse = np.array([29.0, 30.0, 21.0, 27.0, 24.0])
    assert featurizer.kinds_ == {"MMSE": "numeric", "APOE4": "numeric", "sex": "categorical"}
    assert featurizer.mean_["MMSE"] == pytest.approx(mmse.mean()) and featurizer.sd_["MMSE"] == pytest.approx(mmse.std())
    assert featurizer.categories_["sex"] == ["F", "M"] and featurizer.group_widths == [1, 1, 2]
    held_out = pd.DataFrame({"MMSE": [30.0, None], "APOE4": [2, 0], "sex": ["M", "X"]}, index=[40, 41])
    features = featurizer.transform(held_out)
    expected_mmse = (30.0 - mmse.mean()) / mmse.std()
    expected_apoe = (np.array([2, 0]) - np.mean([0, 1, 2, 1, 0])) / np.std([0, 1, 2, 1, 0])
    np.testing.assert_allclose(features.values[:, 0], [expected_mmse, 0.0], rtol=1e-6)
    np.testing.assert_allclose(features.values[:, 1], expected_apoe, rtol=1e-6)
    np.testing.assert_array_equal(features.values[:, 2:], [[0, 1], [0, 0]])
    np.testing.assert_array_equal(features.missing, [[False, False, False], [True, False, True]])
    assert features.rows == [40, 41] and features.unseen == {"sex": 1}  # "X": not seen in training -> missing
    assert features.missing_counts == {"MMSE": 1, "APOE4": 0, "sex": 1}


def test_missing_values_are_flagged_never_nan_and_no_row_is_dropped():
    train = _frame()
    features = ClinicalFeaturizer(["MMSE", "APOE4", "sex"], text="report").fit(train).transform(train)
    assert features.values.shape[0] == len(train) == features.missing.shape[0] and features.rows == list(train.index)
    assert np.isfinite(features.values).all()
    np.testing.assert_array_equal(features.missing[:, 0], train["MMSE"].isna().to_numpy())
    assert features.missing[4, 1] and features.missing[3, 2] and features.missing[3, 3]  # "", None, no report
    assert not features.values[3, -features.missing.shape[1]:].any()


def test_text_is_tfidf_fitted_on_the_training_rows_only():
    from sklearn.feature_extraction.text import TfidfVectorizer

    train = _frame()
    featurizer = ClinicalFeaturizer([], text="report").fit(train)
    reference = TfidfVectorizer(max_features=1024, min_df=2).fit([r for r in REPORTS if r])
    assert featurizer.vocabulary_ == {k: int(v) for k, v in reference.vocabulary_.items()}
    held_out = pd.DataFrame({"report": ["hippocampal atrophy, memory complaints", "an unseen word"]})
    features = featurizer.transform(held_out)
    np.testing.assert_allclose(features.values, reference.transform(held_out["report"]).toarray(), rtol=1e-6)
    assert "hippocampal" in featurizer.vocabulary_ and "unseen" not in featurizer.vocabulary_


def test_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    train = _frame()
    featurizer = ClinicalFeaturizer(["MMSE", "sex"], text="report").fit(train)
    torch.save({"state": featurizer.to_dict()}, tmp_path / "f.pt")
    restored = ClinicalFeaturizer.from_dict(torch.load(tmp_path / "f.pt", weights_only=True)["state"])
    a, b = featurizer.transform(train), restored.transform(train)
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.missing, b.missing)
    with pytest.raises(ValueError, match="not a fitted clinical featurization"):
        ClinicalFeaturizer.from_dict({"columns": ["MMSE"]})


def test_class_profile_is_the_median_number_and_the_most_frequent_category():
    train = _frame()
    featurizer = ClinicalFeaturizer(["MMSE", "sex"], text="report").fit(train)
    features = featurizer.transform(train)
    values, missing = featurizer.profile(features)
    present = train["MMSE"].dropna().to_numpy()
    assert values[0] == pytest.approx((np.median(present) - present.mean()) / present.std(), rel=1e-6)
    np.testing.assert_array_equal(values[1:3], [1, 0])  # F is the most frequent
    np.testing.assert_allclose(values[3:], features.values[~features.missing[:, 2], 3:].mean(axis=0), rtol=1e-6)
    assert not missing.any()
    nothing = ClinicalFeatures(features.values[:0], features.missing[:0], [])
    assert featurizer.profile(nothing)[1].all()


def test_user_mistakes_name_file_row_and_column():
    with pytest.raises(ManifestError, match="train.csv: no clinical column CDRSB"):
        ClinicalFeaturizer(["MMSE", "CDRSB"]).fit(_frame())
    with pytest.raises(ManifestError, match="train.csv: clinical column MMSE has no value"):
        ClinicalFeaturizer(["MMSE"]).fit(_frame(MMSE=[None] * 6))
    featurizer = ClinicalFeaturizer(["MMSE"]).fit(_frame())
    bad = pd.DataFrame({"MMSE": ["28", "n/a?"]}, index=[2, 3])
    bad.attrs["source"] = "test.csv"
    with pytest.raises(ManifestError, match=r"test.csv row 3: clinical column MMSE value 'n/a\?' is not a number"):
        featurizer.transform(bad)
    with pytest.raises(ManifestError, match="no word occurs in at least 2 training rows"):
        ClinicalFeaturizer([], text="report").fit(_frame(report=["alpha", "beta", None, "gamma", "", "delta"]))
