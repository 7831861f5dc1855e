"""report.html from hand-made run files: sections, key figures, escaping, links, missing pieces."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from neuro_ssl.report.run_report import write_run_report


def _metric(value, low, high):
    return {"value": value, "ci_low": low, "ci_high": high}


def _run_folder(base: Path) -> dict:
    splits = base / "splits"
    splits.mkdir(parents=True)
    for part, subjects in (("train", ["s1", "s2", "s3"]), ("val", ["s4"]), ("test", ["s5", "s6"])):
        pd.DataFrame({"subject_id": subjects, "session_id": "bl", "diagnosis": ["CN", "AD", "CN"][: len(subjects)],
                      "age": [70.0, 72.0, 74.0][: len(subjects)], "sex": ["F", "M", "F"][: len(subjects)]}
                     ).to_csv(splits / f"{part}.csv", index=False)
    (base / "validation.json").write_text(json.dumps({"ok": False, "errors": [
        {"row": 7, "file": "<b>x.nii</b>", "problem": "file not found"}], "warnings": []}))
    pre = base / "pretrain"
    pre.mkdir()
    pd.DataFrame({"epoch": [1, 2, 3], "step": [2, 4, 6], "loss": [3.0, 2.5, 2.25], "lr": [1e-3, 5e-4, 0],
                  "probe_age_mae": [6.0, 5.0, 4.5]}).to_csv(pre / "metrics.csv", index=False)
    (pre / "config.yaml").write_text("loss: yaware\\nshape: [32, 32, 32]\\n")
    (pre / "encoder.pt").write_bytes(b"weights")
    evaluations = []
    for mode, auc in (("linear", 0.75), ("full", float("nan"))):
        folder = base / f"evaluate_{mode}"
        folder.mkdir()
        metrics = {name: _metric(auc, 0.5, 0.9) for name in ("auc", "balanced_accuracy", "sensitivity",
                                                              "specificity", "mcc", "f1_macro")}
        (folder / "metrics.json").write_text(json.dumps({**metrics, "n": 2, "classes": ["CN", "AD"],
                                                         "rows_skipped": ["test.csv row 3: gone"]}))
        evaluations.append(folder)
    clusters = base / "clusters"
    clusters.mkdir()
    (clusters / "cluster_metrics.json").write_text(json.dumps({"k": 2, "ari": 0.25, "nmi": 0.5}))
    saliency = base / "saliency"
    saliency.mkdir()
    (saliency / "index.html").write_text("<html></html>")
    pd.DataFrame({"region": ["truth_region"], "mean_share": [0.05], "chance_share": [0.0125],
                  "n_scans": [2], "ratio_to_chance": [4.0]}).to_csv(saliency / "regions.csv", index=False)
    return dict(splits=splits, validation=base / "validation.json", pretrain=pre, evaluations=evaluations,
                clusters=clusters, saliency=saliency, finetune=[base / "finetune_missing"])


def test_report_sections_key_figures_and_links(tmp_path):
    out = write_run_report(tmp_path / "report.html", title="T <&>", **_run_folder(tmp_path))
    text = out.read_text()
    assert "<title>T &lt;&amp;&gt;</title>" in text
    assert "&lt;b&gt;x.nii&lt;/b&gt;" in text and "<b>x.nii</b>" not in text  # user text is escaped
    cards = dict(re.findall(r'<div class="card">([^<]+)<b>([^<]+)</b>', text))
    assert cards["cohort"] == "6 subjects" and cards["validation"] == "1 error(s)"
    assert cards["AUC linear"] == "0.750" and cards["AUC full"] == "n/a"
    assert cards["clusters"] == "ARI 0.250" and cards["pretraining"] == "loss 2.250"
    assert cards["saliency in planted region"] == "5.0 %" and "chance 1.2 %" in text
    assert cards["skipped scans"] == "2"
    assert "0.750 [0.500, 0.900]" in text
    assert "fine-tuning: missing" in text and "model.pt (missing)" in text  # named, not linked
    hrefs = re.findall(r'href="([^"#]+)"', text)
    assert hrefs and all((tmp_path / h).exists() for h in hrefs)
    assert "saliency/index.html" in hrefs and "report_files/pretrain_curves.png" in hrefs
    assert (tmp_path / "report_files" / "pretrain_curves.png").stat().st_size > 1000
    assert text.count("data:image/png;base64,") == 1


def test_report_with_nothing_but_an_output_path(tmp_path):
    out = write_run_report(tmp_path / "r" / "report.html")
    text = out.read_text()
    assert "<h2" in text and "All files" in text and 'class="card"' not in text
