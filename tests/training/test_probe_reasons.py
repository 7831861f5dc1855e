"""An online probe without a value says why (issue 12, point 8: ``probe_dx_auc nan`` with no reason)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from neuro_ssl.training.probes import probe_embeddings


def _probe(diagnosis, subjects, age=None):
    n = len(diagnosis)
    manifest = pd.DataFrame({"diagnosis": diagnosis, "subject_id": subjects,
                             "age": age if age is not None else np.linspace(60, 80, n)})
    features = np.random.default_rng(0).normal(size=(n, 5))
    return probe_embeddings(features, manifest)


@pytest.mark.parametrize(("diagnosis", "subjects", "words"), [
    (["CN"] * 6, list("abcdef"), "only CN in the probe set (6 scan(s)); an AUC needs two diagnoses"),
    (["CN"] * 5 + ["AD"], list("abcdef"), "too few probe scans of AD 1 subject(s)/1 scan(s)"),
    ([None] * 6, list("abcdef"), "no probe scan has a diagnosis"),
])
def test_an_undefined_diagnosis_auc_says_why(diagnosis, subjects, words):
    out = _probe(diagnosis, subjects)
    assert np.isnan(out["probe_dx_auc"]) and words in out["probe_dx_note"], out


def test_an_undefined_age_error_says_why_and_a_defined_value_has_no_note():
    out = _probe(["CN", "AD"] * 3, list("abcdef"), age=[70.0, np.nan, np.nan, np.nan, 71.0, np.nan])
    assert np.isnan(out["probe_age_mae"]) and out["probe_age_note"] == "only 2 probe scan(s) have an age; the probe needs 4"
    out = _probe(["CN", "AD"] * 4, list("abcdefgh"))
    assert np.isfinite(out["probe_age_mae"]) and np.isfinite(out["probe_dx_auc"])
    assert "probe_age_note" not in out and "probe_dx_note" not in out


def test_the_pretrain_summary_line_prints_the_reason():
    from neuro_ssl.cli.pretrain import _probe_text

    summary = {"probe_age_mae": 6.41, "probe_dx_auc": float("nan"), "probe_dx_note": "only CN in the probe set"}
    assert _probe_text(summary, "probe_age_mae") == ", probe_age_mae 6.410"
    assert _probe_text(summary, "probe_dx_auc") == ", probe_dx_auc undefined (only CN in the probe set)"
