"""Fine-tuning end to end on a tiny NIfTI cohort: modes, labels, budgets, determinism, resume."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from neuro_ssl.data.manifest import read_manifest
from neuro_ssl.errors import ConfigError, ManifestError
from neuro_ssl.evaluation.evaluate import evaluate_run
from neuro_ssl.evaluation.labels import TARGET, check_classes_present, prepare_labels, select_label_budget
from neuro_ssl.models import load_model
from neuro_ssl.training import finetune as ft

_spec = importlib.util.spec_from_file_location(
    "neuro_ssl_tests_tiny_cohort", Path(__file__).resolve().parents[1] / "evaluation" / "tiny_cohort.py")
tc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tc)

PRETRAINED_ON = ["900_S_0900", "901_S_0901"]  # not in the cohort


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("ft_cohort")
    manifest = tc.write_cohort(root)
    parts = tc.split_manifest(manifest, root, {"train": range(0, 12), "val": range(12, 18), "test": range(18, 24)})
    encoder = tc.save_random_encoder(root / "pretrain" / "encoder.pt", subjects=PRETRAINED_ON)
    frames = {name: read_manifest(path) for name, path in parts.items()}
    return {"root": root, "encoder": encoder, "manifest": manifest, **parts, "frames": frames}


def _config(cohort, **overrides):
    base = dict(mode="linear", label="diagnosis", classes=("CN", "AD"), epochs=2, batch_size=4, lr=1e-2,
                encoder=str(cohort["encoder"]), seed=0, device="cpu")
    return {**base, **overrides}


def _state(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "model.pt", map_location="cpu", weights_only=True)["state_dict"]


@pytest.mark.parametrize("mode", ["linear", "full", "scratch"])
def test_modes_end_to_end(cohort, tmp_path, mode):
    frames = cohort["frames"]
    summary = ft.finetune(_config(cohort, mode=mode, epochs=3), frames["train"], tmp_path / "run", val_df=frames["val"])
    for name in ("model.pt", "model.yaml", "checkpoint.pt", "config.yaml", "metrics.csv"):
        assert (tmp_path / "run" / name).is_file(), name
    model, meta = load_model(tmp_path / "run" / "model.pt")
    assert meta["task"] == "classification" and meta["classes"] == ["CN", "AD"] and meta["mode"] == mode
    assert meta["preprocess"]["shape"] == list(tc.SHAPE)
    train_subjects = set(frames["train"]["subject_id"][frames["train"]["diagnosis"].isin(["CN", "AD"])])
    assert set(meta["finetune_subjects"]) == train_subjects
    expected = train_subjects | set(meta["val_subjects"]) | (set() if mode == "scratch" else set(PRETRAINED_ON))
    assert set(meta["subjects"]) == expected
    history = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert list(history["epoch"]) == [1, 2, 3] and history["train_loss"].notna().all()
    assert summary["best_epoch"] == int(history.loc[history["best"], "epoch"].iloc[-1])

    metrics = evaluate_run(tmp_path / "run", frames["test"], tmp_path / "eval", n_boot=200)
    predictions = pd.read_csv(tmp_path / "eval" / "predictions.csv", dtype={"subject_id": str})
    test_rows = frames["test"][frames["test"]["diagnosis"].isin(["CN", "AD"])]
    assert len(predictions) == len(test_rows) == metrics["n"]
    assert set(predictions["true_label"]) == {"CN", "AD"}
    np.testing.assert_allclose(predictions[["prob_CN", "prob_AD"]].sum(axis=1), 1.0, rtol=1e-6)
    if mode == "linear":  # an obvious lesion; even random-encoder features separate it
        assert metrics["auc"]["value"] > 0.9


def test_saved_head_reproduces_validation_loss(cohort, tmp_path):
    """Feature standardization is folded into the saved head: model.pt scores val exactly as training did."""
    frames = cohort["frames"]
    ft.finetune(_config(cohort, epochs=3), frames["train"], tmp_path / "run", val_df=frames["val"])
    history = pd.read_csv(tmp_path / "run" / "metrics.csv")
    best = history[history["best"]].iloc[-1]
    evaluate_run(tmp_path / "run", frames["val"], tmp_path / "eval", n_boot=20, allow_overlap=True)
    pred = pd.read_csv(tmp_path / "eval" / "predictions.csv")
    p_true = np.where(pred["true_label"] == "AD", pred["prob_AD"], pred["prob_CN"])
    assert -np.mean(np.log(p_true)) == pytest.approx(best["val_loss"], rel=1e-4, abs=1e-6)


def test_brain_age_regression_outputs_years(cohort, tmp_path):
    frames = cohort["frames"]
    ft.finetune(_config(cohort, label="age", classes=(), epochs=4, lr=5e-2), frames["train"], tmp_path / "run",
                val_df=frames["val"])
    _, meta = load_model(tmp_path / "run" / "model.pt")
    assert meta["task"] == "regression" and meta["classes"] == []
    history = pd.read_csv(tmp_path / "run" / "metrics.csv")
    best = history[history["best"]].iloc[-1]
    metrics = evaluate_run(tmp_path / "run", frames["val"], tmp_path / "eval", n_boot=50, allow_overlap=True)
    assert metrics["mae"]["value"] == pytest.approx(best["val_mae"], rel=1e-4)  # target scale folded into the head
    pred = pd.read_csv(tmp_path / "eval" / "predictions.csv")
    assert 40 < pred["predicted_value"].mean() < 100  # years, not standardized units
    assert set(metrics) >= {"mae", "rmse", "r"}


def test_label_budget_counts_subjects_and_is_nested(cohort):
    labelled, spec = prepare_labels(cohort["frames"]["train"], "diagnosis", "auto", ("CN", "AD"))
    two, drawn = select_label_budget(labelled, 2, seed=3)
    assert drawn == {"0": 2, "1": 2}
    per_class = two.groupby(TARGET)["subject_id"].nunique()
    assert per_class.to_dict() == {0: 2, 1: 2}
    for subject in two["subject_id"].unique():  # every scan of a drawn subject (with that class) is kept
        assert (labelled["subject_id"] == subject).sum() == (two["subject_id"] == subject).sum()
    again, _ = select_label_budget(labelled, 2, seed=3)
    pd.testing.assert_frame_equal(two, again)
    one, _ = select_label_budget(labelled, 1, seed=3)
    assert set(one["subject_id"]) <= set(two["subject_id"])
    draws = {tuple(sorted(select_label_budget(labelled, 2, seed=s)[0]["subject_id"].unique())) for s in range(6)}
    assert len(draws) > 1
    many, drawn = select_label_budget(labelled, 50, seed=0)
    assert drawn == {"0": 4, "1": 4} and len(many) == len(labelled)
    ages, _ = prepare_labels(cohort["frames"]["train"], "age")
    three, drawn = select_label_budget(ages, 3, seed=0, by_class=False)  # regression: N subjects in all
    assert drawn == {"all": 3} and three["subject_id"].nunique() == 3


def test_label_budget_in_a_run(cohort, tmp_path):
    summary = ft.finetune(_config(cohort, labels_per_class=2), cohort["frames"]["train"], tmp_path / "run")
    _, meta = load_model(tmp_path / "run" / "model.pt")
    assert summary["label_budget"] == meta["label_budget"] == {"CN": 2, "AD": 2}
    assert len(meta["finetune_subjects"]) == 4 and meta["val_subjects"] == []


def test_same_seed_same_weights_bit_for_bit(cohort, tmp_path):
    frames = cohort["frames"]
    for name in ("a", "b"):
        ft.finetune(_config(cohort, mode="full", epochs=2), frames["train"], tmp_path / name, val_df=frames["val"])
    ft.finetune(_config(cohort, mode="full", epochs=2, seed=1), frames["train"], tmp_path / "c", val_df=frames["val"])
    a, b, c = _state(tmp_path / "a"), _state(tmp_path / "b"), _state(tmp_path / "c")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


def test_resume_after_a_crash_ends_with_the_same_weights(cohort, tmp_path, monkeypatch):
    frames = cohort["frames"]
    config = _config(cohort, mode="full", epochs=3)
    ft.finetune(config, frames["train"], tmp_path / "straight", val_df=frames["val"])

    original = ft._Trainer._train_epoch

    def crash_in_third_epoch(self, epoch):
        if epoch == 2:
            raise KeyboardInterrupt("simulated kill")
        return original(self, epoch)

    monkeypatch.setattr(ft._Trainer, "_train_epoch", crash_in_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        ft.finetune(config, frames["train"], tmp_path / "resumed", val_df=frames["val"])
    assert not (tmp_path / "resumed" / "model.pt").exists()
    monkeypatch.setattr(ft._Trainer, "_train_epoch", original)
    ft.finetune(config, frames["train"], tmp_path / "resumed", val_df=frames["val"], resume=True)
    a, b = _state(tmp_path / "straight"), _state(tmp_path / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert list(pd.read_csv(tmp_path / "resumed" / "metrics.csv")["epoch"]) == [1, 2, 3]
    with pytest.raises(ConfigError, match="different options"):
        ft.finetune({**config, "lr": 0.5}, frames["train"], tmp_path / "resumed", resume=True)


def test_labels_alias_dementia_and_group_mci(cohort):
    df = read_manifest(cohort["manifest"])
    assert (df["diagnosis"] == "AD").any()  # read as AD from "Dementia"
    rows, spec = prepare_labels(df, "diagnosis", "auto", ("CN", "MCI", "AD"))
    raw = pd.read_csv(cohort["manifest"])
    assert (rows[TARGET] == 1).sum() == raw["diagnosis"].isin(["MCI", "EMCI"]).sum()
    assert spec.dropped == {"without a label": 0, "in none of the classes CN,MCI,AD": 0}
    rows, spec = prepare_labels(df, "diagnosis", "auto", ("CN", "AD"))
    assert spec.dropped["in none of the classes CN,AD"] == raw["diagnosis"].isin(["MCI", "EMCI"]).sum()
    assert "dropped" in spec.describe()


def test_label_errors_are_one_line(cohort):
    df = read_manifest(cohort["manifest"])
    with pytest.raises(ManifestError, match="no column 'DXCHANGE'"):
        prepare_labels(df, "DXCHANGE")
    with pytest.raises(ManifestError, match="row 2: column 'diagnosis' is not numeric"):
        prepare_labels(df, "diagnosis", "regression")
    rows, spec = prepare_labels(df, "diagnosis", "auto", ("CN", "LMCI"))
    with pytest.raises(ManifestError, match="class LMCI has no rows"):
        check_classes_present(rows[rows[TARGET] == 0], spec)
    with pytest.raises(ConfigError, match="needs --encoder"):
        ft.finetune({"mode": "linear"}, df, Path("/nonexistent"))
    rows, spec = prepare_labels(df, "MMSE", "auto")
    assert spec.task == "regression" and rows[TARGET].dtype == float
    rows, spec = prepare_labels(df, "MMSE", "classification", ("21", "29"))
    assert spec.classes == ("21", "29") and set(rows[TARGET]) <= {0, 1}
