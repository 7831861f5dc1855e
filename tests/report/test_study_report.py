"""Label-efficiency curves and the study section of report.html, from hand-written study files."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import yaml

from neuro_ssl.report.plots import plot_label_efficiency
from neuro_ssl.report.run_report import write_run_report
from neuro_ssl.report.study_report import find_study_folders, is_study_folder
from neuro_ssl.study.tables import summary_table


def _study_folder(folder, metric="auc"):
    rng = np.random.default_rng(0)
    rows = []
    for method, mode, (budget, x), draw in itertools.product(["scratch", "yaware"], ["linear", "full"],
                                                               [("5", 5.0), ("10", 10.0), ("all", 31.5)], range(3)):
        value = 0.6 + 0.01 * x + 0.05 * (method == "yaware") + rng.normal(0, 0.03)
        rows.append({"method": method, "mode": mode, "budget": budget, "draw": draw, "seed": draw, "subjects_per_class": x,
                     "metric": metric, "value": value, "ci_low": value - 0.1, "ci_high": min(value + 0.1, 1.0), "n": 40,
                     "n_subjects": 20, "best_epoch": 3, "seconds": 1.0, "shortcut_baseline_auc": 0.55})
    study = pd.DataFrame(rows)
    folder.mkdir(parents=True)
    study.to_csv(folder / "study.csv", index=False)
    summary_table(study).to_csv(folder / "summary.csv", index=False)
    pd.DataFrame([{"method": "scratch", "source": "scratch", "age_mae_years": 6.1, "knn_accuracy": 0.55,
                   "alignment": 0.02, "uniformity": -0.01, "n_scans": 40, "n_subjects": 20}]).to_csv(
        folder / "label_free.csv", index=False)
    (folder / "study.yaml").write_text(yaml.safe_dump({"use_val": False, "draws": 3, "modes": ["linear", "full"],
                                                       "metric_resolved": metric}))
    return folder


def test_curves_have_a_panel_per_mode_and_are_not_blank(tmp_path):
    import matplotlib.image

    folder = _study_folder(tmp_path / "study")
    png = plot_label_efficiency(folder / "study.csv", tmp_path / "curves.png", title="AD vs CN")
    pixels = matplotlib.image.imread(png)
    assert pixels.shape[1] > 1.8 * pixels.shape[0]  # two panels side by side
    assert pixels[..., :3].mean(axis=2).var() > 1e-3


def test_report_section_from_a_study_folder_found_by_itself(tmp_path):
    folder = _study_folder(tmp_path / "run" / "my_study")
    assert is_study_folder(folder) and find_study_folders(tmp_path / "run") == [folder]
    page = write_run_report(tmp_path / "run" / "report.html").read_text()  # study= not given: found
    assert "Label-efficiency study: my_study" in page
    assert "a fixed number of epochs (no label outside the budget)" in page  # read from study.yaml
    assert "reach AUC 0.550" in page
    summary = pd.read_csv(folder / "summary.csv", dtype={"budget": str})
    best = summary[(summary["budget"] == "5") & (summary["mode"] == "linear")].sort_values("mean").iloc[-1]
    assert best["method"] == "yaware" and f"AUC at 5 per class (linear)<b>yaware {best['mean']:.3f}</b>" in page
    cell = summary[(summary["method"] == "scratch") & (summary["mode"] == "full") & (summary["budget"] == "all")].iloc[0]
    assert f"{cell['mean']:.3f} ± {cell['sd']:.3f} (3)" in page
    assert "<th>uniformity</th>" in page
    assert (tmp_path / "run" / "report_files" / "my_study_curves.png").is_file()  # drawn: the folder had none
