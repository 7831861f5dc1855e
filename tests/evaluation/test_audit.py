"""The shortcut audit: summaries against numpy, cross-validation by subject, scores against
scikit-learn, and end to end on synthetic cohorts with and without a planted confound."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import r2_score, roc_auc_score

from neuro_ssl.cli.main import main
from neuro_ssl.evaluation import audit


def test_image_summaries_match_numpy():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(2, 6, 7, 8)).astype(np.float32)
    mask = np.zeros((6, 7, 8), dtype=bool)
    mask[1:5, 2:6, 2:7] = True
    out = audit.image_summaries(image, mask, voxel_ml=0.008, names=("", "_FDG"))
    for k, suffix in enumerate(("", "_FDG")):
        x = image[k].astype(np.float64)
        faces = np.concatenate([x[0].ravel(), x[-1].ravel(), x[:, 0].ravel(), x[:, -1].ravel(),
                                x[:, :, 0].ravel(), x[:, :, -1].ravel()])
        assert out[f"background_level{suffix}"] == pytest.approx(np.median(x[~mask]))
        assert out[f"fov_edge_mean{suffix}"] == pytest.approx(faces.mean())
        assert out[f"foreground_std{suffix}"] == pytest.approx(x[mask].std())
        assert out[f"foreground_p90{suffix}"] == pytest.approx(np.percentile(x[mask], 90))
    assert out["brain_mask_volume_ml"] == pytest.approx(mask.sum() * 0.008)
    assert set(audit.IMAGE_FEATURES) <= set(out)


def _cohort(n_subjects=40, scans=2, seed=0):
    rng = np.random.default_rng(seed)
    subjects = np.repeat([f"s{i}" for i in range(n_subjects)], scans)
    y = np.repeat(rng.permutation(np.arange(n_subjects) % 2), scans)
    return subjects, y, rng


def test_folds_keep_every_subject_on_one_side():
    subjects, y, _ = _cohort(n_subjects=23, scans=3)
    for task in ("classification", "regression"):
        splits = audit.subject_folds(y, subjects, task, folds=5, seed=1)
        assert len(splits) == 5
        for train, test in splits:
            assert not set(subjects[train]) & set(subjects[test])
        assert sorted(np.concatenate([test for _, test in splits])) == list(range(len(y)))


def test_constant_feature_scores_exactly_chance_and_a_separating_one_scores_one():
    """Pooled out-of-fold scores without each fold's intercept: a constant feature is a tie (0.5)
    whatever the class balance of the folds; a feature that separates the classes scores 1."""
    subjects, y, rng = _cohort()
    constant = audit.score_feature(np.zeros(len(y)), y, subjects, "classification", n_boot=50)
    assert constant.value == 0.5
    separating = audit.score_feature(y + 0.01 * rng.normal(size=len(y)), y, subjects, "classification", n_boot=50)
    assert separating.value == 1.0 and separating.balanced_accuracy == 1.0


def test_scores_agree_with_scikit_learn():
    subjects, y, rng = _cohort(n_subjects=60)
    x = y[:, None] * 0.8 + rng.normal(size=(len(y), 3))
    scores = audit.cross_validated_predictions(x, y, subjects, "classification", folds=5, seed=0)
    ours = audit.score_feature(x, y, subjects, "classification", n_boot=100, seed=0)
    assert ours.value == pytest.approx(roc_auc_score(y, scores[:, 1]), abs=1e-12)
    assert ours.ci_low <= ours.value <= ours.ci_high
    target = x[:, 0] * 2.0 + rng.normal(size=len(y))
    predicted = audit.cross_validated_predictions(x, target, subjects, "regression", folds=5)
    assert audit.r_squared(target, predicted) == pytest.approx(r2_score(target, predicted), abs=1e-12)
    with pytest.raises(ValueError, match="fewer than 2 subjects"):
        audit.subject_folds(np.array([0, 0, 1]), np.array(["a", "a", "b"]), "classification")


def test_covariates_one_hot_text_and_keep_numbers():
    frame = pd.DataFrame({"age": [70.0, np.nan, 80.0], "scanner": ["A", "B", None]})
    np.testing.assert_array_equal(audit.covariate_matrix(frame["age"])[:, 0], [70.0, np.nan, 80.0])
    np.testing.assert_array_equal(audit.covariate_matrix(frame["scanner"]), [[1, 0], [0, 1], [0, 0]])
    manifest = pd.DataFrame({"age": [1.0], "sex": ["M"], "site": [None], "FLDSTRENG": ["3 Tesla MRI"],
                             "Manufacturer": ["GE"], "MMSE": [29]})
    assert audit.covariate_columns(manifest) == ["age", "sex", "FLDSTRENG", "Manufacturer"]


# ----- end to end: numbers checked for cohort seeds 0-4 (see docs/evaluation.md) -----

@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
    """100 subjects, one visit, 8 mm: a clean cohort and one with the planted scanner confound."""
    from neuro_ssl.data.synth import make_cohort

    root = tmp_path_factory.mktemp("audit")
    return {name: make_cohort(root / name, n_subjects=100, seed=0, voxel_mm=8.0, visits=(1, 1), confound=confound)
            for name, confound in (("clean", None), ("confounded", "scanner"))}


def _audit(manifest, out, *extra):
    code = main(["audit", str(manifest), "--out", str(out), "--label", "diagnosis", "--classes", "CN,AD",
                 "--spacing", "8", "--shape", "24,24,24", "--n-boot", "200", "--cache-dir", "none", *extra])
    assert code == 0
    return pd.read_csv(out / "audit.csv").set_index("feature")


def test_a_clean_cohort_raises_no_image_shortcut(cohorts, tmp_path, capsys):
    """Masked preprocessing: the background is exactly 0 (AUC 0.5) and no summary reaches 0.70
    (highest over cohort seeds 0-4: 0.54, 0.57, 0.62, 0.64, 0.55). The 0.1 preprocessing leaves
    the background level informative; the audit shows it."""
    table = _audit(cohorts["clean"], tmp_path / "clean")
    printed = capsys.readouterr().out
    assert list(pd.read_csv(tmp_path / "clean" / "audit.csv").columns[:6]) == \
        ["feature", "kind", "auc", "ci_low", "ci_high", "n"]
    assert table.loc["background_level", "auc"] == 0.5 and table.loc["fov_edge_mean", "kind"] == "image"
    assert table.loc[table["kind"] == "image", "auc"].max() < 0.70
    assert "no likely shortcut" in printed and (tmp_path / "clean" / "audit.png").stat().st_size > 5000
    assert {"age", "sex", "site", "FLDSTRENG"} <= set(table.index[table["kind"] == "covariate"])
    old = _audit(cohorts["clean"], tmp_path / "old", "--no-mask-background")
    assert old.loc["background_level", "auc"] != 0.5  # not constant any more: it carries the tissue mix


def test_a_planted_scanner_confound_is_named(cohorts, tmp_path, capsys):
    """Scanner B (little contrast, noisy) scans 95 % of AD and 5 % of CN subjects: the audit names
    foreground_p90 (AUC over cohort seeds 0-4: 0.83, 0.82, 0.76, 0.78, 0.84) and the scanner column."""
    table = _audit(cohorts["confounded"], tmp_path / "conf")
    verdict = capsys.readouterr().out.strip().splitlines()[-2]
    assert verdict.startswith("LIKELY SHORTCUT") and "foreground_p90" in verdict
    assert table.loc["foreground_p90", "auc"] >= 0.70
    assert table.loc["scanner", "kind"] == "covariate" and table.loc["scanner", "auc"] >= 0.8
    assert "confounds: " in verdict and "scanner" in verdict.split("confounds: ")[1]
