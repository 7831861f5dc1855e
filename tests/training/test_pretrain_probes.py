"""Online probes: known limits of the ridge / logistic probes, subject grouping, embedding order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from neuro_ssl.models import build_encoder
from neuro_ssl.training.probes import diagnosis_auc, embed_dataset, probe_embeddings, ridge_age_mae


def test_ridge_recovers_a_linear_age_and_ignores_noise():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4))
    age = 70 + x @ np.array([3.0, -2.0, 1.0, 0.5]) + rng.normal(scale=0.1, size=60)
    groups = np.arange(60)
    assert ridge_age_mae(x, age, groups) < 0.2
    noise = rng.normal(size=(60, 40))
    mean_predictor = np.mean(np.abs(age - age.mean()))
    assert ridge_age_mae(noise, age, groups) == pytest.approx(mean_predictor, rel=0.25)


def test_ridge_folds_keep_a_subjects_scans_together():
    """Two identical scans per subject: ungrouped folds would find each scan's twin; grouped cannot."""
    rng = np.random.default_rng(1)
    x = np.repeat(rng.normal(size=(30, 50)), 2, axis=0)
    age = np.repeat(rng.uniform(55, 90, size=30), 2)
    grouped = ridge_age_mae(x, age, np.repeat(np.arange(30), 2))
    leaky = ridge_age_mae(x, age, np.arange(60))
    assert leaky < 0.5 * grouped
    assert grouped > 0.7 * np.mean(np.abs(age - age.mean()))


def test_missing_ages_are_left_out():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(20, 2))
    age = 60 + 5 * x[:, 0]
    age[[3, 7]] = np.nan
    assert ridge_age_mae(x, age, np.arange(20)) < 0.5


def test_diagnosis_auc_limits():
    rng = np.random.default_rng(3)
    labels = np.array(["CN", "AD"] * 15, dtype=object)
    separable = np.c_[(labels == "AD") * 4.0 + rng.normal(scale=0.3, size=30), rng.normal(size=30)]
    assert diagnosis_auc(separable, labels, np.arange(30)) > 0.97
    assert 0.2 < diagnosis_auc(rng.normal(size=(30, 3)), labels, np.arange(30)) < 0.8
    assert np.isnan(diagnosis_auc(separable, np.array(["CN"] * 30, dtype=object), np.arange(30)))
    three = np.array(["CN", "MCI", "AD"] * 10, dtype=object)
    codes = np.array([{"CN": 0, "MCI": 1, "AD": 2}[v] for v in three])
    assert diagnosis_auc(np.c_[codes * 3.0 + rng.normal(scale=0.2, size=30)], three, np.arange(30)) > 0.95


def test_diagnosis_auc_is_nan_not_an_error_when_a_class_has_one_subject():
    """A small validation manifest (found by the docs test): 2 scans of AD, both of one subject.
    Grouped folds would train without AD; sklearn raised. Now: no AUC (NaN), as documented."""
    features = np.random.default_rng(0).normal(size=(6, 3))
    labels = np.array(["CN", "CN", "CN", "CN", "AD", "AD"], dtype=object)
    assert np.isnan(diagnosis_auc(features, labels, np.array(["a", "a", "b", "b", "c", "c"])))


def test_embeddings_follow_dataset_order_in_eval_mode():
    torch.manual_seed(0)
    encoder = build_encoder("resnet10", width=0.25).train()
    images = [torch.randn(1, 16, 16, 16) for _ in range(5)]
    dataset = [{"image": im} for im in images]
    features = embed_dataset(encoder, dataset, batch_size=2)
    assert encoder.training  # restored
    with torch.no_grad():
        expected = encoder.eval()(torch.stack(images)).double().numpy()
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-6)


def test_probe_embeddings_reads_manifest_columns():
    rng = np.random.default_rng(4)
    manifest = pd.DataFrame({"subject_id": [f"s{i}" for i in range(24)], "age": rng.uniform(60, 80, 24),
                             "diagnosis": ["CN", "AD", None, "CN", "AD", "CN"] * 4})
    features = np.c_[manifest["age"].to_numpy(), rng.normal(size=24)]
    out = probe_embeddings(features, manifest)
    assert out["probe_n"] == 24 and out["probe_age_mae"] < 0.5 and 0 <= out["probe_dx_auc"] <= 1
