"""The warnings a report shows first, each one sentence with its number (issue 12, point 1)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from neuro_ssl.report.findings import audit_flags, chance_auc_bound, evaluation_flags, pretraining_flags, saliency_flags


def _ci(value, low, high):
    return {"value": value, "ci_low": low, "ci_high": high}


def _metrics(auc=(0.9, 0.8, 0.97), sensitivity=0.8, specificity=0.9, confusion=((9, 1), (2, 8)), baseline=0.55):
    return {"task": "classification", "classes": ["CN", "AD"], "auc": _ci(*auc),
            "sensitivity": _ci(sensitivity, 0, 1), "specificity": _ci(specificity, 0, 1),
            "confusion_matrix": [list(r) for r in confusion], "shortcut_baseline_auc": _ci(baseline, 0.4, 0.7)}


def test_a_sound_evaluation_has_no_warning():
    assert evaluation_flags("full", _metrics()) == []
    assert evaluation_flags("age", {"task": "regression", "mae": _ci(4.0, 3.0, 5.0)}) == []


def test_one_class_for_every_scan():
    flags = evaluation_flags("full", _metrics(sensitivity=0.0, specificity=1.0, confusion=((12, 0), (6, 0))))
    assert flags == ["full: predicts CN for every one of the 18 test scans (sensitivity 0.000, specificity 1.000); "
                     "a ranking (AUC) may exist, but no decision does."]
    # sensitivity 0 without one column (a 3-class confusion is not binary): the binary rule reads the rates
    flags = evaluation_flags("linear", {**_metrics(sensitivity=0.0, specificity=0.8), "confusion_matrix": None})
    assert flags == ["linear: no AD test scan is predicted AD (sensitivity 0.000, specificity 0.800)."]


def test_an_auc_interval_that_includes_or_lies_below_chance():
    flags = evaluation_flags("linear", _metrics(auc=(0.779, 0.46, 0.95)))
    assert flags == ["linear: AUC 0.779 [0.460, 0.950]: the 95% interval includes 0.5, so this test set cannot "
                     "tell the model from chance."]
    flags = evaluation_flags("linear", _metrics(auc=(0.167, 0.0, 0.333)))
    assert flags[0].startswith("linear: AUC 0.167 [0.000, 0.333] is below chance")


def test_an_auc_not_above_the_shortcut_baseline():
    flags = evaluation_flags("full", _metrics(auc=(0.81, 0.7, 0.9), baseline=0.83))
    assert flags == ["full: AUC 0.810 is not above the 0.830 that trivial summaries of the same inputs reach "
                     "(background, edges, intensity, volume: the shortcut baseline); see neuro-ssl audit."]
    assert evaluation_flags("full", {**_metrics(), "shortcut_baseline_auc": _ci(None, None, None)}) == []


def test_probes_that_get_worse_over_pretraining():
    table = pd.DataFrame({"epoch": [1, 2, 3, 4], "probe_age_mae": [6.4, 7.0, float("nan"), 8.3],
                          "probe_dx_auc": [0.61, 0.55, 0.5, 0.42]})
    assert pretraining_flags(table) == [
        "pretraining: the age probe's error grew from 6.4 to 8.3 years (epoch 1 to 4): the embedding lost age "
        "information instead of gaining it.",
        "pretraining: the diagnosis probe's AUC is 0.42 at the last probed epoch (4), below chance (0.5)."]
    # with the probe's size known, a dip below 0.5 that chance explains is not flagged (25 scans: bound 0.27)
    assert chance_auc_bound(25) == pytest.approx(0.5 - 1.96 / np.sqrt(75))
    noisy = pd.DataFrame({"epoch": [1, 2], "probe_dx_auc": [0.47, 0.48], "probe_n": [25, 25]})
    assert pretraining_flags(noisy) == []
    worse = pd.DataFrame({"epoch": [1, 2], "probe_dx_auc": [0.47, 0.20], "probe_n": [25, 25]})
    assert pretraining_flags(worse) == ["pretraining: the diagnosis probe's AUC is 0.20 at the last probed epoch "
                                        "(2), below chance (0.5) beyond what chance gives on 25 probe scans (below 0.27)."]
    better = pd.DataFrame({"epoch": [1, 2], "probe_age_mae": [8.0, 6.0], "probe_dx_auc": [0.5, 0.7]})
    assert pretraining_flags(better) == [] and pretraining_flags(pd.DataFrame({"epoch": [1], "loss": [2.0]})) == []


def test_saliency_below_chance_in_the_planted_region():
    regions = pd.DataFrame({"region": ["truth_region", "atlas_occipital"], "mean_share": [0.005, 0.001],
                            "chance_share": [0.02, 0.10], "n_scans": [6, 6], "ratio_to_chance": [0.25, 0.01]})
    assert saliency_flags(regions, None) == [
        "saliency: 0.5 % of the saliency lies in truth_region, below the 2.0 % a uniform map would put there "
        "(ratio to chance 0.25): the maps do not point at it."]  # the atlas region is not the planted one
    on_target = regions.assign(mean_share=[0.2, 0.001], ratio_to_chance=[10.0, 0.01])
    assert saliency_flags(on_target, None) == []


def test_failed_saliency_checks():
    checks = {"randomization": [{"stage": "head", "spearman": 0.9}, {"stage": "all", "spearman": 0.45}],
              "deletion": {"5": {"salient_drop": 0.02, "random_drop": 0.03}}}
    flags = saliency_flags(None, checks)
    assert flags[0].startswith("saliency check failed: with every weight re-initialized the maps keep a rank "
                               "correlation of 0.45 with the trained maps (a pass is below 0.3)")
    assert flags[1] == ("saliency check failed: deleting the 5 % most salient brain voxels changes the explained "
                        "score by 0.020, no more than deleting as many random voxels (0.030).")
    passed = {"randomization": [{"stage": "all", "spearman": 0.1}],
              "deletion": {"5": {"salient_drop": 0.2, "random_drop": 0.01}}}
    assert saliency_flags(None, passed) == []


def test_an_audit_shortcut():
    audit = pd.DataFrame({"feature": ["background", "fov_edge_mean", "age"], "kind": ["image", "image", "covariate"],
                          "auc": [0.83, 0.55, 0.9], "ci_low": [0.7, 0.4, 0.8], "ci_high": [0.95, 0.7, 0.97]})
    assert audit_flags(audit) == ["audit: background alone predicts the label with AUC 0.83 [0.70, 0.95] without "
                                  "looking at anatomy: a likely shortcut."]
