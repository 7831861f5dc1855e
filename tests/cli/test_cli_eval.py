"""finetune / evaluate / embed / cluster through the CLI: artefacts, exit codes, one-line errors."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from neuro_ssl.cli.main import main

_spec = importlib.util.spec_from_file_location(
    "neuro_ssl_tests_tiny_cohort", Path(__file__).resolve().parents[1] / "evaluation" / "tiny_cohort.py")
tc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tc)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_eval")
    manifest = tc.write_cohort(root)
    parts = tc.split_manifest(manifest, root, {"train": range(0, 12), "val": range(12, 18), "test": range(18, 24)})
    encoder = tc.save_random_encoder(root / "pretrain" / "encoder.pt", subjects=["900_S_0900"])
    test_subjects = pd.read_csv(parts["test"], dtype=str)["subject_id"].unique()
    leaky = tc.save_random_encoder(root / "leaky" / "encoder.pt", subjects=list(test_subjects[:3]))
    run = root / "run_linear"
    code = main(["finetune", "--manifest", str(parts["train"]), "--val-manifest", str(parts["val"]),
                 "--encoder", str(encoder), "--out", str(run), "--mode", "linear", "--label", "diagnosis",
                 "--classes", "CN,AD", "--epochs", "3", "--batch-size", "4", "--lr", "0.01", "--device", "cpu"])
    assert code == 0
    return {"root": root, "manifest": manifest, "encoder": encoder, "leaky": leaky, "run": run, **parts}


def _one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"neuro-ssl {command}: error: "), err
    return err[0]


def test_evaluate_writes_every_artefact_with_numbers(study, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["evaluate", "--run", str(study["run"]), "--manifest", str(study["test"]), "--out", str(out),
                 "--n-boot", "200", "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    assert "auc" in printed and "subject bootstrap" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    for name in ("auc", "balanced_accuracy", "sensitivity", "specificity", "mcc", "f1_macro"):
        entry = metrics[name]
        assert set(entry) == {"value", "ci_low", "ci_high"} and isinstance(entry["value"], float)
        assert entry["ci_low"] <= entry["value"] <= entry["ci_high"]
    assert metrics["classes"] == ["CN", "AD"] and metrics["positive_class"] == "AD"
    assert metrics["allow_overlap"] is False and metrics["overlap_subjects"] == 0
    assert np.sum(metrics["confusion_matrix"]) == metrics["n"]
    assert set(metrics["per_class"]) == {"CN", "AD"}
    predictions = pd.read_csv(out / "predictions.csv", dtype=str)
    assert list(predictions.columns) == ["subject_id", "session_id", "true_label", "predicted_label", "prob_CN", "prob_AD"]
    assert len(predictions) == metrics["n"] and predictions["subject_id"].nunique() == metrics["n_subjects"]
    for png in ("roc.png", "confusion.png"):
        assert Image.open(out / png).format == "PNG"
    baseline = metrics["shortcut_baseline_auc"]  # trivial summaries of the same inputs, same scans
    assert "shortcut baseline" in printed
    assert baseline["value"] is None or baseline["ci_low"] <= baseline["value"] <= baseline["ci_high"]
    assert baseline["value"] is not None or "subjects" in baseline["note"]


def test_leakage_is_refused_then_overridden_and_recorded(study, tmp_path, capsys):
    run = tmp_path / "leaky_run"
    assert main(["finetune", "--manifest", str(study["train"]), "--encoder", str(study["leaky"]), "--out", str(run),
                 "--mode", "linear", "--classes", "CN,AD", "--epochs", "1", "--device", "cpu"]) == 0
    capsys.readouterr()
    args = ["evaluate", "--run", str(run), "--manifest", str(study["test"]), "--out", str(tmp_path / "e"), "--n-boot", "50"]
    assert main(args) == 1
    line = _one_line_error(capsys, "evaluate")
    assert "of its" in line and "--allow-overlap" in line
    assert not (tmp_path / "e" / "metrics.json").exists()
    assert main(args + ["--allow-overlap"]) == 0
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics["allow_overlap"] is True and 1 <= metrics["overlap_subjects"] <= 3
    assert "warning: --allow-overlap" in capsys.readouterr().out


@pytest.mark.parametrize("extra, code, needle", [
    (["--label", "NOPE", "--classes", "CN,AD"], 1, "no column 'NOPE'"),
    (["--classes", "CN,LMCI"], 1, "class LMCI has no rows"),  # the data lacks it: exit 1 (issue 11)
    (["--task", "regression", "--label", "diagnosis"], 1, "is not numeric"),
    (["--classes", "CN,AD", "--mode", "full", "--encoder", "missing.pt"], 1, "checkpoint not found"),
])
def test_finetune_bad_requests_exit_with_one_line(study, tmp_path, capsys, extra, code, needle):
    argv = ["finetune", "--manifest", str(study["train"]), "--out", str(tmp_path / "r"), "--mode", "scratch",
            "--epochs", "1", "--arch", "resnet10", "--shape", "16", "--spacing", "5"] + extra
    assert main(argv) == code
    assert needle in _one_line_error(capsys, "finetune")


def test_linear_without_encoder_is_a_usage_error(study, tmp_path, capsys):
    assert main(["finetune", "--manifest", str(study["train"]), "--out", str(tmp_path / "r"), "--mode", "linear"]) == 2
    assert "needs --encoder" in _one_line_error(capsys, "finetune")


def test_scratch_regression_and_scatter(study, tmp_path, capsys):
    run = tmp_path / "age"
    assert main(["finetune", "--manifest", str(study["train"]), "--out", str(run), "--mode", "scratch", "--label", "age",
                 "--arch", "resnet10", "--width", "0.25", "--shape", "16", "--spacing", "5", "--epochs", "1",
                 "--batch-size", "4", "--device", "cpu"]) == 0
    assert main(["evaluate", "--run", str(run), "--manifest", str(study["test"]), "--out", str(tmp_path / "e"),
                 "--n-boot", "50"]) == 0
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics["task"] == "regression" and metrics["mae"]["value"] > 0
    assert {"true_value", "predicted_value"} <= set(pd.read_csv(tmp_path / "e" / "predictions.csv").columns)
    assert Image.open(tmp_path / "e" / "scatter.png").format == "PNG"


def test_embed_and_cluster(study, tmp_path, capsys):
    emb = tmp_path / "embeddings.csv"
    assert main(["embed", "--encoder", str(study["encoder"]), "--manifest", str(study["manifest"]), "--out", str(emb)]) == 0
    table = pd.read_csv(emb, dtype={"subject_id": str, "session_id": str})
    manifest = pd.read_csv(study["manifest"], dtype=str)
    assert list(table.columns[:3]) == ["subject_id", "session_id", "f0"] and len(table) == len(manifest)
    assert table.columns[-1] == f"f{table.shape[1] - 3}"
    assert set(zip(table["subject_id"], table["session_id"])) == set(zip(manifest["subject_id"], manifest["session_id"]))

    ft_emb = tmp_path / "ft.csv"
    assert main(["embed", "--run", str(study["run"]), "--manifest", str(study["test"]), "--out", str(ft_emb)]) == 0
    assert pd.read_csv(ft_emb).shape[1] == table.shape[1]

    out = tmp_path / "clusters"
    assert main(["cluster", "--embeddings", str(emb), "--manifest", str(study["manifest"]), "--out", str(out),
                 "--against", "diagnosis", "--seed", "0"]) == 0
    metrics = json.loads((out / "cluster_metrics.json").read_text())
    assert 2 <= metrics["k"] <= 8 and -1 <= metrics["ari"] <= 1 and 0 <= metrics["nmi"] <= 1
    assert metrics["n_unmatched"] == 0 and metrics["n_labelled"] == len(manifest)
    clusters = pd.read_csv(out / "clusters.csv")
    assert {"cluster", "map_x", "map_y", "diagnosis", "age"} <= set(clusters.columns)
    assert Image.open(out / "map.png").format == "PNG"
    assert "ARI" in capsys.readouterr().out

    assert main(["cluster", "--embeddings", str(study["manifest"]), "--manifest", str(study["manifest"]),
                 "--out", str(out)]) == 1
    assert "not an embeddings table" in _one_line_error(capsys, "cluster")


def test_cross_validation_table(study, tmp_path, capsys):
    out = tmp_path / "cv"
    assert main(["finetune", "--manifest", str(study["manifest"]), "--encoder", str(study["encoder"]), "--out", str(out),
                 "--mode", "linear", "--classes", "CN,AD", "--folds", "3", "--epochs", "2", "--n-boot", "50",
                 "--device", "cpu"]) == 0
    table = pd.read_csv(out / "folds.csv")
    assert list(table["fold"]) == ["1", "2", "3", "mean", "sd"]
    assert table["auc"].iloc[:3].mean() == pytest.approx(table["auc"].iloc[3])
    assert table["n_test"].iloc[:3].sum() == pd.read_csv(study["manifest"])["diagnosis"].isin(["CN", "Dementia"]).sum()
    tested = [set(pd.read_csv(out / f"fold_{i}" / "eval" / "predictions.csv", dtype=str)["subject_id"]) for i in (1, 2, 3)]
    assert not (tested[0] & tested[1]) and not (tested[1] & tested[2]) and not (tested[0] & tested[2])
    assert "+-" in capsys.readouterr().out


def test_real_pretraining_run_feeds_projection_embeddings_and_the_guard(study, tmp_path, capsys):
    """A real (tiny) pretraining run: --projection reads its head; its subjects are guarded."""
    from neuro_ssl.data.manifest import read_manifest
    from neuro_ssl.training.pretrain import pretrain

    pre = tmp_path / "pre"
    pretrain({"loss": "simclr", "arch": "resnet10", "width": 0.25, "proj_dims": [32, 16], "spacing_mm": [5.0] * 3,
              "shape": [16, 16, 16], "epochs": 1, "batch_size": 4, "workers": 0, "device": "cpu", "seed": 0},
             read_manifest(study["train"]), pre)
    emb = tmp_path / "z.csv"
    assert main(["embed", "--encoder", str(pre / "encoder.pt"), "--manifest", str(study["test"]), "--out", str(emb),
                 "--projection"]) == 0
    assert pd.read_csv(emb).shape[1] == 2 + 16
    run = tmp_path / "ft"
    assert main(["finetune", "--manifest", str(study["val"]), "--encoder", str(pre / "encoder.pt"), "--out", str(run),
                 "--mode", "linear", "--classes", "CN,AD", "--epochs", "1", "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--run", str(run), "--manifest", str(study["train"]), "--out", str(tmp_path / "e")]) == 1
    assert "were used to train, validate or pretrain" in _one_line_error(capsys, "evaluate")
    assert main(["embed", "--run", str(run), "--manifest", str(study["test"]), "--out", str(emb), "--projection"]) == 2
    assert "--projection needs a pretraining --encoder" in _one_line_error(capsys, "embed")


def test_bad_scan_stops_with_its_row_or_is_skipped(study, tmp_path, capsys):
    table = pd.read_csv(study["train"], dtype=str)
    table["image"] = [str(study["root"] / p) for p in table["image"]]  # the copy lives elsewhere
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"\x1f\x8b this is not a volume")
    table.loc[0, "image"] = str(broken)
    manifest = tmp_path / "train_bad.csv"
    table.to_csv(manifest, index=False)
    argv = ["finetune", "--manifest", str(manifest), "--encoder", str(study["encoder"]), "--out", str(tmp_path / "r"),
            "--mode", "linear", "--classes", "CN,AD", "--epochs", "1", "--device", "cpu"]
    assert main(argv) == 1
    line = _one_line_error(capsys, "finetune")
    assert "train_bad.csv row 2" in line and "broken.nii.gz" in line
    assert main(argv + ["--skip-bad"]) == 0
    assert "skipped 1 row(s)" in capsys.readouterr().out
    skipped = pd.read_csv(tmp_path / "r" / "skipped.csv", dtype=str)
    assert list(skipped.columns) == ["row", "subject_id", "session_id", "image", "reason"]
    assert skipped.loc[0, "row"] == "2" and skipped.loc[0, "image"] == str(broken)
    assert "broken.nii.gz" in skipped.loc[0, "reason"]


def test_one_class_test_set_gives_null_auc(study, tmp_path, capsys):
    cn_only = pd.read_csv(study["test"], dtype=str)
    cn_only = cn_only[cn_only["diagnosis"] == "CN"].assign(image=lambda t: [str(study["root"] / p) for p in t["image"]])
    path = tmp_path / "cn.csv"
    cn_only.to_csv(path, index=False)
    assert main(["evaluate", "--run", str(study["run"]), "--manifest", str(path), "--out", str(tmp_path / "e"),
                 "--n-boot", "50"]) == 0
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics["auc"] == {"value": None, "ci_low": None, "ci_high": None}
    assert metrics["sensitivity"]["value"] is None and metrics["specificity"]["value"] is not None
    assert "undefined" in capsys.readouterr().out


def test_config_yaml_repeats_the_run(study, tmp_path):
    """RUN/config.yaml holds every option and the manifests: --config repeats the run, bit for bit."""
    import torch

    again = tmp_path / "again"
    assert main(["finetune", "--config", str(study["run"] / "config.yaml"), "--out", str(again)]) == 0
    a = torch.load(study["run"] / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(again / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
