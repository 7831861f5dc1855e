"""`neuro-ssl demo --size tiny` end to end, in a real subprocess, and every artefact it writes."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
CLASSIFICATION_METRICS = ("auc", "balanced_accuracy", "sensitivity", "specificity", "mcc", "f1_macro")
SUMMARY_COLUMNS = ("subject_id", "session_id", "image", "saliency", "predicted", "confidence",
                   "coverage_pct", "peak_x_mm", "peak_y_mm", "peak_z_mm")


def _demo(out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NEURO_SSL_QUIET": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "neuro_ssl", "demo", "--size", "tiny", "--out", str(out)],
                          capture_output=True, text=True, timeout=900, env=env, cwd=out.parent)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """The tiny demo, run once for every check of this module: (run folder, completed process)."""
    out = tmp_path_factory.mktemp("demo") / "run"
    return out, _demo(out)


def _resolve(base: Path, path: str) -> Path:
    return Path(path) if os.path.isabs(path) else base / path


@pytest.mark.slow
def test_demo_exits_zero_and_ends_with_the_report_path(demo_run):
    out, proc = demo_run
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[-1] == f"Report: {(out / 'report.html').resolve()}"
    steps = ["synth", "validate", "split", "pretrain", "finetune[linear]", "finetune[full]", "evaluate[linear]",
             "evaluate[full]", "embed", "cluster", "saliency", "report"]
    for index, step in enumerate(steps, start=1):  # progress visible for every step
        assert any(line.startswith(f"[{index}/{len(steps)}] {step}: done in ") for line in lines), step


@pytest.mark.slow
def test_cohort_validation_and_splits(demo_run):
    out, _ = demo_run
    cohort = out / "cohort"
    manifest = pd.read_csv(cohort / "manifest.csv", dtype=str)
    assert len(manifest) >= 14 and all((cohort / p).is_file() for p in manifest["image_path"])
    assert (cohort / "truth" / "diagnosis_region.nii.gz").is_file()
    validation = json.loads((out / "validation.json").read_text())
    assert validation["ok"] is True and validation["n_errors"] == 0 and validation["n_rows"] == len(manifest)
    parts = {name: pd.read_csv(out / "splits" / f"{name}.csv", dtype=str) for name in ("train", "val", "test")}
    subjects = [set(p["subject_id"]) for p in parts.values()]
    assert not (subjects[0] & subjects[1] or subjects[0] & subjects[2] or subjects[1] & subjects[2])
    assert sum(len(p) for p in parts.values()) == len(manifest)


@pytest.mark.slow
def test_pretraining_and_finetuning_runs(demo_run):
    out, _ = demo_run
    for name in ("encoder.pt", "checkpoint.pt", "config.yaml", "metrics.csv"):
        assert (out / "pretrain" / name).is_file(), name
    curve = pd.read_csv(out / "pretrain" / "metrics.csv")
    assert len(curve) == 2 and np.isfinite(curve["loss"]).all()
    import yaml

    assert yaml.safe_load((out / "pretrain" / "config.yaml").read_text())["loss"] == "yaware"
    for mode in ("linear", "full"):
        run = out / f"finetune_{mode}"
        assert (run / "model.pt").is_file() and (run / "metrics.csv").is_file()
        assert yaml.safe_load((run / "config.yaml").read_text())["mode"] == mode


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["linear", "full"])
def test_evaluation_metrics_are_finite_numbers_with_intervals(demo_run, mode):
    out, _ = demo_run
    folder = out / f"evaluate_{mode}"
    metrics = json.loads((folder / "metrics.json").read_text())
    for name in CLASSIFICATION_METRICS:
        entry = metrics[name]
        assert math.isfinite(entry["value"]), (name, entry)
        if math.isfinite(entry["ci_low"]) and math.isfinite(entry["ci_high"]):
            assert entry["ci_low"] <= entry["ci_high"]
    assert 0.0 <= metrics["auc"]["value"] <= 1.0
    assert [str(c) for c in metrics["classes"]] == ["CN", "AD"]
    predictions = pd.read_csv(folder / "predictions.csv", dtype={"subject_id": str})
    assert list(predictions.columns[:4]) == ["subject_id", "session_id", "true_label", "predicted_label"]
    probabilities = predictions[["prob_CN", "prob_AD"]].to_numpy(dtype=float)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
    assert len(predictions) == metrics["n"]
    assert list(folder.glob("*.png"))


@pytest.mark.slow
def test_embeddings_and_clusters(demo_run):
    out, _ = demo_run
    embeddings = pd.read_csv(out / "embeddings" / "embeddings.csv", dtype={"subject_id": str})
    assert list(embeddings.columns[:3]) == ["subject_id", "session_id", "f0"]
    test = pd.read_csv(out / "splits" / "test.csv", dtype=str)
    assert len(embeddings) == len(test)
    scores = json.loads((out / "clusters" / "cluster_metrics.json").read_text())
    assert math.isfinite(scores["ari"]) and 0.0 <= scores["nmi"] <= 1.0
    assert (out / "clusters" / "clusters.csv").is_file()


@pytest.mark.slow
def test_every_saliency_volume_has_its_scans_grid(demo_run):
    import nibabel as nib

    out, _ = demo_run
    folder = out / "saliency"
    summary = pd.read_csv(folder / "summary.csv", dtype={"subject_id": str})
    assert list(summary.columns[: len(SUMMARY_COLUMNS)]) == list(SUMMARY_COLUMNS)
    assert "region_truth_region" in summary.columns
    test = pd.read_csv(out / "splits" / "test.csv", dtype=str)
    assert len(summary) == len(test)
    for row in summary.itertuples():
        scan = nib.load(_resolve(folder, row.image))
        saliency = nib.load(_resolve(folder, row.saliency))
        assert saliency.shape == scan.shape, row.saliency
        assert np.allclose(saliency.affine, scan.affine, atol=1e-4), row.saliency
        values = np.asarray(saliency.dataobj)
        assert np.isfinite(values).all() and values.min() >= 0
    regions = pd.read_csv(folder / "regions.csv")
    assert set(regions["region"]) == {"truth_region"}
    assert 0 < regions["chance_share"].iloc[0] < 1
    assert (folder / "index.html").is_file()


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.targets: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("href", "src") and value:
                self.targets.append(value)


@pytest.mark.slow
def test_report_links_resolve_and_show_the_key_figures(demo_run):
    out, _ = demo_run
    report = out / "report.html"
    text = report.read_text()
    parser = _Links()
    parser.feed(text)
    local = [t for t in parser.targets if not t.startswith(("data:", "#", "http:", "https:"))]
    missing = [t for t in local if not (report.parent / unquote(urlparse(t).path)).exists()]
    assert not missing, missing
    assert all(not os.path.isabs(unquote(t)) for t in local)  # relative: the folder can move
    linked = {os.path.normpath(unquote(t)) for t in local}
    for artefact in ("saliency/index.html", "evaluate_linear/metrics.json", "evaluate_full/metrics.json",
                     "pretrain/encoder.pt", "splits/test.csv", "validation.json", "clusters/cluster_metrics.json",
                     "embeddings/embeddings.csv"):
        assert artefact in linked, artefact
    assert sum(t.startswith("data:image/png;base64,") for t in parser.targets) >= 3
    for figure in ("AUC linear", "AUC full", "ARI", "saliency in planted region", "14 subjects"):
        assert figure in text, figure


@pytest.mark.slow
def test_second_run_skips_every_step(demo_run):
    out, first = demo_run
    assert first.returncode == 0
    again = _demo(out)
    assert again.returncode == 0, again.stderr[-3000:]
    lines = again.stdout.strip().splitlines()
    assert sum(line.endswith(": skipped (current)") for line in lines) == 12
    assert lines[-1] == f"Report: {(out / 'report.html').resolve()}"


def test_packaged_demo_pipeline_and_pipelines_demo_yaml_agree():
    from neuro_ssl.pipeline.demo import DEMO_YAML, demo_pipeline
    from neuro_ssl.pipeline.spec import load_pipeline

    shipped = REPO / "pipelines" / "demo.yaml"
    assert shipped.read_bytes() == DEMO_YAML.read_bytes(), "copy neuro_ssl/pipeline/demo.yaml to pipelines/demo.yaml"
    for size, preset in (("tiny", "tiny"), ("small", "small"), ("default", None)):
        ours = demo_pipeline("X", size, seed=3)
        theirs = load_pipeline(shipped, overrides={"out": "X", "seed": 3}, preset=preset)
        assert [(s.name, s.command, s.args, s.options, s.outputs) for s in ours.steps] == \
            [(s.name, s.command, s.args, s.options, s.outputs) for s in theirs.steps]


def test_demo_on_a_given_manifest_skips_synth_and_splits_into_the_run(tmp_path, capsys):
    from neuro_ssl.cli.main import main

    manifest = tmp_path / "mine.csv"
    manifest.write_text("subject_id,session_id,image,age,diagnosis\ns1,bl,a.nii.gz,70,CN\n")
    code = main(["demo", "--size", "tiny", "--out", str(tmp_path / "run"), "--manifest", str(manifest),
                 "--skip-bad", "--dry-run"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert lines[1] == "[1/12] synth: skipped (disabled)"
    assert f"neuro-ssl validate {manifest} --json" in lines[2]
    assert f"neuro-ssl split {manifest} --out {tmp_path}/run/splits" in lines[3]
    saliency = next(line for line in lines if "saliency: would run" in line)
    assert "--skip-bad" in saliency and "--regions-column" not in saliency
    assert main(["demo", "--manifest", str(tmp_path / "nope.csv"), "--dry-run"]) == 1  # a missing input: data
    assert "--manifest" in capsys.readouterr().err
