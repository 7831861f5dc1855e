"""``neuro-ssl report --out report.html RUN_OR_DIR...``: finds what each folder holds, renders one
self-contained page, warnings first, readable labels (issue 12, points 1, 6 and 8).

The folders are written here as the commands write them (the same file names and columns), so
no model is trained: the report reads files, it never computes results.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from neuro_ssl.cli.main import main
from neuro_ssl.study.tables import summary_table


def _ci(value, low, high):
    return {"value": value, "ci_low": low, "ci_high": high}


def _write_runs(root: Path) -> dict[str, Path]:
    """One folder of each kind, with the files the commands write; the runs have problems to flag."""
    runs = root / "runs"
    pre = runs / "yaware"
    pre.mkdir(parents=True)
    (pre / "encoder.pt").write_bytes(b"w")
    (pre / "config.yaml").write_text("loss: yaware\nmeta: [age]\n")
    pd.DataFrame({"epoch": [1, 2, 3], "step": [4, 8, 12], "loss": [4.1, 3.9, 3.8], "lr": [3e-4] * 3,
                  "probe_age_mae": [6.4, 7.2, 8.3], "probe_dx_auc": [float("nan")] * 3, "probe_n": [8] * 3,
                  "probe_dx_note": ["only CN in the probe set (8 scan(s)); an AUC needs two diagnoses"] * 3}
                 ).to_csv(pre / "metrics.csv", index=False)
    ft = runs / "ad_cn"
    ft.mkdir()
    (ft / "model.pt").write_bytes(b"w")
    pd.DataFrame({"epoch": [1, 2], "step": [1, 2], "train_loss": [0.7, 0.6], "val_auc": [0.6, 0.7]}
                 ).to_csv(ft / "metrics.csv", index=False)
    ev = ft / "test"  # evaluate --out RUN/test, as the evaluate examples do
    ev.mkdir()
    metrics = {"task": "classification", "classes": ["CN", "AD"], "label": "diagnosis", "n": 18, "n_subjects": 9,
               "auc": _ci(0.779, 0.55, 0.93), "balanced_accuracy": _ci(0.5, 0.5, 0.5),
               "sensitivity": _ci(0.0, 0.0, 0.0), "specificity": _ci(1.0, 1.0, 1.0), "mcc": _ci(0, 0, 0),
               "f1_macro": _ci(0.4, 0.4, 0.4), "confusion_matrix": [[12, 0], [6, 0]],
               "shortcut_baseline_auc": _ci(0.81, 0.6, 0.95), "rows_skipped": []}
    (ev / "metrics.json").write_text(json.dumps(metrics))
    pd.DataFrame({"subject_id": ["s1"], "session_id": ["bl"], "true_label": ["AD"], "predicted_label": ["CN"]}
                 ).to_csv(ev / "predictions.csv", index=False)
    results = root / "results"
    sal = results / "saliency"
    (sal / "maps").mkdir(parents=True)
    (sal / "index.html").write_text("<html></html>")
    pd.DataFrame({"subject_id": ["s1", "s2"], "session_id": ["bl", "bl"], "saliency": ["maps/a.nii.gz", "maps/b.nii.gz"],
                  "predicted": ["CN", "CN"], "true_label": ["AD", "CN"], "correct": ["false", "true"],
                  "coverage_pct": [12.0, 14.0]}).to_csv(sal / "summary.csv", index=False)
    pd.DataFrame({"region": ["truth_region"], "mean_share": [0.005], "chance_share": [0.02], "n_scans": [2],
                  "ratio_to_chance": [0.25]}).to_csv(sal / "regions.csv", index=False)
    (sal / "checks.json").write_text(json.dumps({"randomization": [{"stage": "all", "spearman": 0.62}],
                                                 "deletion": {"5": {"salient_drop": 0.01, "random_drop": 0.02}}}))
    audit = results / "audit"
    audit.mkdir()
    pd.DataFrame({"feature": ["background", "age"], "kind": ["image", "covariate"], "auc": [0.83, 0.6],
                  "ci_low": [0.7, 0.45], "ci_high": [0.95, 0.75], "n": [18, 18], "balanced_accuracy": [0.8, 0.55],
                  "r2": [float("nan")] * 2, "metric": ["auc", "auc"]}).to_csv(audit / "audit.csv", index=False)
    clusters = results / "clusters"
    clusters.mkdir()
    (clusters / "cluster_metrics.json").write_text(json.dumps(
        {"k": 2, "k_chosen_by": "silhouette", "n": 18, "n_unmatched": 0, "map": "pca", "features_standardized": True,
         "against": "diagnosis", "n_labelled": 18, "ari": 0.1, "nmi": 0.2}))
    study = results / "study"
    study.mkdir()
    draws = pd.DataFrame([{"method": "yaware", "mode": "linear", "budget": "10", "draw": d, "seed": d,
                           "subjects_per_class": 10.0, "metric": "auc", "value": 0.7 + 0.01 * d, "ci_low": 0.6,
                           "ci_high": 0.8, "n": 18, "n_subjects": 18, "best_epoch": 1, "seconds": 1.0} for d in range(2)])
    draws.to_csv(study / "study.csv", index=False)
    summary_table(draws).to_csv(study / "summary.csv", index=False)
    splits = root / "splits"
    splits.mkdir()
    for part in ("train", "val", "test"):
        pd.DataFrame({"subject_id": [f"{part}1", f"{part}2"], "session_id": "bl", "diagnosis": ["CN", "AD"],
                      "age": [70.0, 75.0], "sex": ["F", "M"]}).to_csv(splits / f"{part}.csv", index=False)
    return {"runs": runs, "results": results, "splits": splits, "empty": root / "empty"}


def _cli(argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def test_report_finds_every_kind_and_flags_first(tmp_path):
    paths = _write_runs(tmp_path)
    page = tmp_path / "report.html"
    code, out, err = _cli(["report", "--out", page, paths["runs"], paths["results"], paths["splits"]])
    assert code == 0, err
    for kind in ("pretrain: ", "finetune: ", "evaluations: ", "saliency: ", "audits: ", "clusters: ", "studies: ",
                 "splits: "):
        assert f"found {kind}" in out, (kind, out)
    text = page.read_text()
    assert "http://" not in text and "https://" not in text and "<script src" not in text  # self-contained
    flags_at = text.index('<div class="flags"')
    assert flags_at < text.index("<h2 id=\"s0\"") and flags_at < text.index('<div class="key">')
    box = re.search(r'<div class="flags".*?</div>', text, flags=re.S).group(0)
    expected = [
        "test: predicts CN for every one of the 18 test scans (sensitivity 0.000, specificity 1.000)",
        "test: AUC 0.779 is not above the 0.810 that trivial summaries",
        "pretraining: the age probe&#x27;s error grew from 6.4 to 8.3 years (epoch 1 to 3)",
        "saliency: 0.5 % of the saliency lies in truth_region, below the 2.0 %",
        "saliency check failed: with every weight re-initialized the maps keep a rank correlation of 0.62",
        "saliency check failed: deleting the 5 % most salient brain voxels",
        "audit: background alone predicts the label with AUC 0.83",
    ]
    for sentence in expected:
        assert sentence in box, sentence
    assert len(re.findall(r"<li>", box)) == len(expected)
    assert out.count("warning: ") == len(expected)
    # readable tables: no raw keys as headings, the probe's missing AUC explained, wrong predictions counted
    for raw in ("<th>k_chosen_by</th>", "<th>features_standardized</th>", "<th>mean_share</th>", "<td>n</td>"):
        assert raw not in text, raw
    # the shortcut baseline sits in the metrics table beside the model's AUC (issue 10)
    assert re.search(r"<td>shortcut baseline AUC[^<]*</td><td>0\.810", text), "no shortcut baseline row"
    assert "<th>k chosen by</th>" in text and "<td>test scans (subjects)</td><td>18 (9)</td>" in text
    assert "only CN in the probe set" in text
    assert "1 of 2 prediction(s) with a known true label are wrong" in text


def test_a_sound_run_says_what_was_checked(tmp_path):
    ev = tmp_path / "eval"
    ev.mkdir()
    good = {"task": "classification", "classes": ["CN", "AD"], "n": 20, "n_subjects": 10,
            "auc": _ci(0.9, 0.8, 0.97), "sensitivity": _ci(0.8, 0.6, 1), "specificity": _ci(0.9, 0.7, 1),
            "confusion_matrix": [[9, 1], [2, 8]]}
    (ev / "metrics.json").write_text(json.dumps(good))
    (ev / "predictions.csv").write_text("subject_id,session_id\n")
    code, out, _ = _cli(["report", "--out", tmp_path / "r.html", ev])
    assert code == 0 and "warning:" not in out
    text = (tmp_path / "r.html").read_text()
    assert '<p class="ok" id="flags">No warning from the evaluation eval.</p>' in text


@pytest.mark.parametrize(("case", "words", "exit_code"), [
    ("nothing", "no neuro-ssl outputs found there or one level down", 1),  # the input holds nothing: data
    ("missing", "no such file or folder", 1),  # an input that is not there: a data problem (docs/cli.md)
    ("not_html", "name the page with .html", 2),
])
def test_refusals_are_one_line_and_write_nothing(tmp_path, case, words, exit_code):
    (tmp_path / "nothing").mkdir()
    (tmp_path / "nothing" / "notes.txt").write_text("x")
    page = tmp_path / ("report.txt" if case == "not_html" else "report.html")
    target = tmp_path / ("missing" if case == "missing" else "nothing")
    code, out, err = _cli(["report", "--out", page, target])
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == exit_code and len(lines) == 1 and lines[0].startswith("neuro-ssl report: error: "), (code, err)
    assert words in lines[0]
    assert not page.exists() and not (tmp_path / "report_files").exists()


def test_a_pipeline_folder_is_read_through(tmp_path):
    run = tmp_path / "demo_run"
    (run / ".neuro-ssl-pipeline").mkdir(parents=True)
    parts = _write_runs(run)
    (run / "validation.json").write_text(json.dumps({"errors": [], "warnings": []}))
    code, out, err = _cli(["report", "--out", tmp_path / "by_hand.html", run])
    assert code == 0, err
    assert f"found validation: {run / 'validation.json'}" in out and f"found splits: {parts['splits']}" in out
    assert f"found pretrain: {parts['runs'] / 'yaware'}" in out
