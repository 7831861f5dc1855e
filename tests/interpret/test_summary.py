"""Per-scan numbers (coverage, peak in voxels and mm), the table's columns, the group mean."""

from __future__ import annotations

import numpy as np
import pytest

from neuro_ssl.interpret.summary import (
    EXTRA_COLUMNS, SUMMARY_COLUMNS, GroupMean, brain_mask, coverage_pct, summarize_map, summary_table,
)


def test_coverage_counts_brain_voxels_above_half_the_peak():
    brain = np.zeros((10, 10, 10), bool)
    brain[1:9, 1:9, 1:9] = True  # 512 voxels
    saliency = np.zeros((10, 10, 10), np.float32)
    saliency[2:6, 2:6, 2:6] = 1.0  # 64 voxels at the peak
    saliency[6, 2:6, 2:6] = 0.5  # exactly half: not above the threshold
    saliency[0, 0, 0] = 1.0  # outside the brain: not counted
    assert coverage_pct(saliency, brain, 0.5) == pytest.approx(100 * 64 / 512)
    assert coverage_pct(saliency, brain, 0.4) == pytest.approx(100 * 80 / 512)
    assert coverage_pct(np.zeros_like(saliency), brain) == 0.0


def test_peak_in_voxels_and_world_mm():
    affine = np.array([[-1.5, 0, 0, 90], [0, 1.5, 0, -126], [0, 0, 1.5, -72], [0, 0, 0, 1.0]])
    saliency = np.zeros((20, 30, 25), np.float32)
    saliency[4, 17, 9] = 2.0
    out = summarize_map(saliency, affine, brain=np.ones(saliency.shape, bool))
    assert (out["peak_i"], out["peak_j"], out["peak_k"]) == (4, 17, 9)
    assert (out["peak_x_mm"], out["peak_y_mm"], out["peak_z_mm"]) == pytest.approx((84.0, -100.5, -58.5))
    assert out["coverage_pct"] == pytest.approx(100 / saliency.size)
    empty = summarize_map(np.zeros((3, 3, 3)), np.eye(4))
    assert np.isnan(empty["peak_x_mm"]) and empty["coverage_pct"] == 0.0


def test_brain_mask_separates_head_from_background():
    image = np.zeros((12, 12, 12), np.float32)
    image[3:9, 3:9, 3:9] = 100 + np.random.default_rng(0).normal(0, 5, (6, 6, 6))
    image += np.random.default_rng(1).normal(0, 1, image.shape).astype(np.float32)
    mask = brain_mask(image)
    assert mask.sum() == 216 and mask[3:9, 3:9, 3:9].all()


def test_summary_columns_are_exactly_the_contract():
    rows = [{"subject_id": "011", "session_id": "bl", "image": "/a.nii.gz", "saliency": "/m.nii.gz",
             "predicted": "AD", "confidence": 0.9, "coverage_pct": 12.5, "peak_x_mm": 1.0, "peak_y_mm": 2.0,
             "peak_z_mm": 3.0, "peak_i": 1, "peak_j": 2, "peak_k": 3, "region_hippo": 0.4, "ignored": 1}]
    table = summary_table(rows, ["hippo", "ventricles"])
    assert list(table.columns) == [
        "subject_id", "session_id", "image", "saliency", "predicted", "confidence", "coverage_pct",
        "peak_x_mm", "peak_y_mm", "peak_z_mm", "region_hippo", "region_ventricles", "peak_i", "peak_j", "peak_k",
        "true_label", "correct", "constant_map", "layer_grid", "outside_brain_share",
    ]
    assert list(table.columns[: len(SUMMARY_COLUMNS)]) == list(SUMMARY_COLUMNS)
    assert list(table.columns[-len(EXTRA_COLUMNS):]) == list(EXTRA_COLUMNS)
    assert table.loc[0, "subject_id"] == "011" and np.isnan(table.loc[0, "region_ventricles"])


def test_group_mean_only_for_one_shared_grid():
    affine = np.eye(4)
    group = GroupMean()
    group.add(np.full((2, 2, 2), 2.0), affine)
    group.add(np.full((2, 2, 2), 4.0) * np.arange(8).reshape(2, 2, 2), affine)
    mean, mean_affine = group.result()
    expected = (np.ones((2, 2, 2)) + np.arange(8).reshape(2, 2, 2) / 7) / 2  # each map / its max
    np.testing.assert_allclose(mean, expected, rtol=1e-6)
    shifted = affine.copy()
    shifted[0, 3] = 1.0
    group.add(np.ones((2, 2, 2)), shifted)
    assert group.result() is None


@pytest.mark.parametrize("label, classes, values", [
    ("diagnosis", ["CN", "AD"], ["CN", "Dementia", "AD", "ad", "MCI", None, ""]),
    ("diagnosis", ["CN", "MCI", "AD"], ["EMCI", "LMCI", "NL", "Dementia"]),
    ("site", ["A", "B"], ["A", " B ", "C"]),
])
def test_true_label_agrees_with_evaluations_class_matching(label, classes, values):
    """The saliency summary names a row's class as evaluate and finetune do (an independent implementation)."""
    import pandas as pd

    from neuro_ssl.evaluation.labels import class_codes
    from neuro_ssl.interpret.summary import is_correct, true_label

    codes = class_codes(pd.Series([v if v not in ("", None) else None for v in values], dtype=object),
                        tuple(classes), label)
    for value, code in zip(values, codes):
        got = true_label(value, classes, label)
        if code >= 0:
            assert got == classes[code], value
            assert is_correct(classes[code], got, classes) == "true"
            assert is_correct(classes[code - 1], got, classes) == "false"
        else:
            assert got is None or got not in classes, value
            assert is_correct(classes[0], got, classes) == ""


def test_true_label_for_regression_and_missing_columns():
    from neuro_ssl.interpret.summary import is_correct, true_label

    assert true_label("71.5", None, "age", "regression") == 71.5
    assert true_label("n/a", None, "age", "regression") is None
    assert true_label("AD", ["CN", "AD"], None) is None
    assert is_correct(72.0, 71.5, None, "regression") == ""
