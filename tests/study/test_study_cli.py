"""``neuro-ssl study`` end to end on a tiny cohort: every cell, honest intervals, a real figure,
a stop and a resume, the report section, a regression label, and bad input that leaves nothing."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from neuro_ssl.cli.main import main

TINY = ["--pretrain-epochs", "1", "--finetune-epochs", "1", "--arch", "resnet10", "--width", "0.25",
        "--spacing", "6", "--shape", "32,32,32", "--batch-size", "4", "--workers", "0", "--seed", "0"]
DESIGN = ["--classes", "CN,AD", "--methods", "scratch,simclr", "--modes", "linear,full", "--budgets", "1,all",
          "--draws", "2", "--n-boot", "200", "--no-val"]  # early stopping on val: the regression test
CELLS = set(itertools.product(["scratch", "simclr"], ["linear", "full"], ["1", "all"], [0, 1]))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> dict[str, Path]:
    """20 synthetic subjects at 4 mm (1-2 visits), split 55/15/30 by subject."""
    from neuro_ssl.data.synth import make_cohort

    root = tmp_path_factory.mktemp("study_cohort")
    manifest = make_cohort(root / "cohort", n_subjects=20, seed=0, voxel_mm=4.0, visits=(1, 2))
    assert main(["split", str(manifest), "--out", str(root / "splits"), "--test-size", "0.3", "--val-size", "0.15",
                 "--stratify", "diagnosis", "--seed", "0"]) == 0
    return {"manifest": manifest, "splits": root / "splits", "root": root}


def _study(cohort, out: Path, *extra: str) -> int:
    return main(["study", "--manifest", str(cohort["manifest"]), "--splits", str(cohort["splits"]), "--out", str(out),
                 *DESIGN, *TINY, *extra])


def _stop_after(monkeypatch, n_cells: int) -> None:
    """The n+1-th fine-tuning cell is interrupted (Ctrl-C) before it finishes."""
    from neuro_ssl.study import units

    real, done = units._finetune_and_evaluate, []

    def cell(*args, **kwargs):
        if len(done) == n_cells:
            raise KeyboardInterrupt
        done.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(units, "_finetune_and_evaluate", cell)


def test_study_end_to_end_with_a_stop_and_a_resume(cohort, tmp_path, monkeypatch, capsys):
    out = tmp_path / "study"
    _stop_after(monkeypatch, 3)
    assert _study(cohort, out) == 130
    assert "interrupted" in capsys.readouterr().err
    monkeypatch.undo()
    assert _study(cohort, out) == 0
    printed = capsys.readouterr().out
    assert "study: 13 unit(s) ran, 7 current" in printed  # 2 encoders + 2 label-free + 3 cells were done

    study = pd.read_csv(out / "study.csv", dtype={"budget": str})
    assert len(study) == 16 and set(zip(study["method"], study["mode"], study["budget"], study["draw"])) == CELLS
    assert (study["metric"] == "auc").all() and study["value"].between(0, 1).all() and (study["n"] > 0).all()
    assert (study["ci_low"] <= study["value"]).all() and (study["value"] <= study["ci_high"]).all()
    assert (study["ci_low"] < study["ci_high"]).any()  # real intervals, not points
    assert (study["seconds"] > 0).all() and "shortcut_baseline_auc" in study.columns
    summary = pd.read_csv(out / "summary.csv", dtype={"budget": str})
    assert len(summary) == 8 and (summary["draws"] == 2).all()
    means = study.groupby(["method", "mode", "budget"])["value"].mean()
    assert np.allclose(summary.set_index(["method", "mode", "budget"])["mean"].loc[means.index], means)

    free = pd.read_csv(out / "label_free.csv").set_index("method")
    assert list(free.index) == ["scratch", "simclr"]
    assert free["alignment"].between(0, 4).all() and free["uniformity"].between(-8, 0).all()
    assert free["knn_accuracy"].between(0, 1).all() and np.isfinite(free["age_mae_years"]).all()

    _check_cells_trained_on_the_drawn_subjects(out, cohort)
    _check_figure(out / "curves.png")
    page = (out / "report.html").read_text()
    assert "Label-efficiency study" in page and "Label-free, on the held-out test scans" in page

    assert _study(cohort, out) == 0  # everything current: nothing reruns
    assert "study: 0 unit(s) ran, 20 current" in capsys.readouterr().out
    _check_report_finds_the_study(tmp_path)


def _check_cells_trained_on_the_drawn_subjects(out: Path, cohort) -> None:
    draws = pd.read_csv(out / "draws.csv", dtype={"budget": str, "subject_id": str})
    test = set(pd.read_csv(cohort["splits"] / "test.csv", dtype=str)["subject_id"])
    assert not set(draws["subject_id"]) & test
    for draw in (0, 1):
        one = draws[(draws["draw"] == draw) & (draws["budget"] == "1")]
        assert one.groupby("class")["subject_id"].nunique().to_dict() == {"AD": 1, "CN": 1}
        assert set(one["subject_id"]) <= set(draws[(draws["draw"] == draw) & (draws["budget"] == "all")]["subject_id"])
    for method, mode, budget, draw in CELLS:
        meta = yaml.safe_load((out / "runs" / method / mode / budget / f"draw_{draw}" / "model.yaml").read_text())
        drawn = draws[(draws["budget"] == budget) & (draws["draw"] == draw)]
        assert set(meta["finetune_subjects"]) == set(drawn["subject_id"])
        assert meta["seed"] == drawn["seed"].iloc[0]
        assert not (out / "runs" / method / mode / budget / f"draw_{draw}" / "checkpoint.pt").exists()


def _check_figure(png: Path) -> None:
    import matplotlib.image

    pixels = matplotlib.image.imread(png)
    assert pixels.shape[0] > 200 and pixels.shape[1] > 400
    assert pixels[..., :3].mean(axis=2).var() > 1e-3  # not a blank canvas


def _check_report_finds_the_study(folder: Path) -> None:
    from neuro_ssl.report.run_report import write_run_report

    page = write_run_report(folder / "report.html", title="by hand").read_text()  # no study= given
    assert "Label-efficiency study: study" in page and "study/study.csv" in page


def test_regression_label_and_a_split_made_by_the_study(cohort, tmp_path, capsys):
    out = tmp_path / "age"
    code = main(["study", "--manifest", str(cohort["manifest"]), "--out", str(out), "--label", "age",
                 "--methods", "scratch", "--modes", "linear", "--budgets", "3", "--draws", "1", "--n-boot", "100",
                 "--knn-k", "3", *TINY])
    assert code == 0, capsys.readouterr().err
    study = pd.read_csv(out / "study.csv")
    assert len(study) == 1 and study["metric"].iloc[0] == "mae" and study["subjects_per_class"].iloc[0] == 3
    assert study["ci_low"].iloc[0] <= study["value"].iloc[0] <= study["ci_high"].iloc[0]
    assert "knn_mae" in pd.read_csv(out / "label_free.csv").columns
    test = set(pd.read_csv(out / "splits" / "test.csv", dtype=str)["subject_id"])
    assert test and not set(pd.read_csv(out / "draws.csv", dtype=str)["subject_id"]) & test


def _leaky_encoder(path: Path, subjects) -> Path:
    from neuro_ssl.models import build_encoder, save_encoder

    meta = {"preprocess": {"spacing_mm": [6.0] * 3, "shape": [32] * 3, "normalization": "auto", "modalities": ["T1w"]},
            "subjects": sorted(subjects)}
    return save_encoder(path, build_encoder("resnet10", 1, "batch", 0.25), meta)


@pytest.mark.parametrize("case, code, message", [
    ("method", 2, "unknown method 'simclrr' (did you mean 'simclr'?)"),
    ("splits", 1, "needs train.csv and test.csv"),  # missing files: data (docs/cli.md), as --manifest
    ("classes", 1, "class XX has no rows in the training data"),  # the data lacks it: exit 1, as finetune
    ("leaky", 1, "pretrain on the training split"),  # no --allow-overlap to suggest in a study
    ("encoder_missing", 1, "--encoders mine="),
    ("one_class", 2, "needs two or more classes"),
    ("no_method", 2, "--methods, --modes and --budgets need at least one value each"),
    ("not_empty", 2, "is not empty and holds no study"),
])
def test_bad_input_is_one_line_and_leaves_no_folder(cohort, tmp_path, capsys, case, code, message):
    out = tmp_path / "study"
    args = {"method": ["--methods", "scratch,simclrr"], "classes": ["--classes", "CN,XX"],
            "encoder_missing": ["--encoders", f"mine={tmp_path / 'nope' / 'encoder.pt'}"],
            "one_class": ["--classes", "AD"], "no_method": ["--methods", ""]}.get(case, [])
    splits = tmp_path if case == "splits" else cohort["splits"]
    if case == "leaky":
        test = pd.read_csv(cohort["splits"] / "test.csv", dtype=str)["subject_id"]
        args = ["--encoders", f"mine={_leaky_encoder(tmp_path / 'mine.pt', test)}"]
    if case == "not_empty":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    argv = ["study", "--manifest", str(cohort["manifest"]), "--splits", str(splits), "--out", str(out), *DESIGN, *TINY]
    assert main(argv + args) == code
    err = capsys.readouterr().err.strip()
    last = err.splitlines()[-1]  # argparse's own errors print the usage synopsis above the line
    assert message in last and last.startswith("neuro-ssl study: error:")
    assert len(err.splitlines()) == 1 or err.startswith("usage: neuro-ssl study")
    assert not out.exists() or sorted(p.name for p in out.iterdir()) == ["notes.txt"]
