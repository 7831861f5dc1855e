"""Filters that leave no scan say so in one line, with what each filter removed (issue 12, point 5).

``pretrain --loss yaware --meta age --missing-y skip`` on a cohort where no scan has an age used
to print "skipping 60 scan(s)" and then die in the loss with ``ValueError: y contains NaN``: the
FDG rows that the modality filter had set aside were silently taken as the T1w input instead.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
from pathlib import Path

import pandas as pd
import pytest

from neuro_ssl.cli.main import main

_spec = importlib.util.spec_from_file_location(
    "neuro_ssl_tests_tiny_cohort", Path(__file__).resolve().parents[1] / "evaluation" / "tiny_cohort.py")
tc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tc)

NET = ["--arch", "resnet10", "--width", "0.125", "--spacing", "8", "--shape", "16,16,16", "--device", "cpu"]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> dict:
    """T1w scans plus an FDG scan per session (copies of the T1w files: only the rows matter here)."""
    import shutil

    root = tmp_path_factory.mktemp("nothing_left")
    manifest = tc.write_cohort(root, n_subjects=6)
    t1w = pd.read_csv(manifest, dtype=str)
    fdg = t1w.assign(modality="FDG", image=t1w["image"].str.replace(".nii.gz", "_fdg.nii.gz", regex=False))
    for source, copy in zip(t1w["image"], fdg["image"]):
        shutil.copy(root / source, root / copy)
    both = pd.concat([t1w, fdg], ignore_index=True)
    paths = {}
    for name, table in {"no_age": both.assign(age=""), "broken": t1w.assign(image="images/missing.nii.gz"),
                        "labelled": both}.items():
        paths[name] = root / f"{name}.csv"
        table.to_csv(paths[name], index=False)
    paths["n_t1w"] = len(t1w)
    paths["n_cn_ad"] = int(t1w["diagnosis"].isin(["CN", "Dementia"]).sum())
    return paths


def _error_line(argv: list[str]) -> str:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    assert code == 1, (code, lines)
    assert "Traceback" not in err.getvalue()
    assert len(lines) == 1, lines  # the error alone: no "skipping ..." line before it
    return lines[0]


def test_pretraining_with_no_covariate_anywhere(cohort, tmp_path):
    n = cohort["n_t1w"]
    line = _error_line(["pretrain", "--manifest", str(cohort["no_age"]), "--out", str(tmp_path / "run"),
                        "--loss", "yaware", "--meta", "age", "--missing-y", "skip", *NET])
    assert line.startswith(f"neuro-ssl pretrain: error: {cohort['no_age']}: no scan left to pretrain on: "
                           f"of {2 * n} row(s), ")
    assert f"{n} FDG row(s) left out (input: T1w)" in line
    assert f"{n} scan(s) without age skipped (--missing-y skip)" in line
    assert not (tmp_path / "run").exists()


def test_pretraining_when_every_scan_is_unreadable(cohort, tmp_path):
    line = _error_line(["pretrain", "--manifest", str(cohort["broken"]), "--out", str(tmp_path / "run"),
                        "--loss", "simclr", "--skip-bad", *NET])
    assert "no scan left to pretrain on" in line or "no usable rows left" in line, line
    assert f"{cohort['n_t1w']} " in line and "skipped" in line, line


def test_finetuning_when_no_row_is_in_the_classes(cohort, tmp_path):
    line = _error_line(["finetune", "--manifest", str(cohort["labelled"]), "--out", str(tmp_path / "run"),
                        "--mode", "scratch", "--label", "sex", "--classes", "X,Y", *NET])
    n_rows = 2 * cohort["n_t1w"]
    assert line.startswith(f"neuro-ssl finetune: error: {cohort['labelled']}: no scan left to train on")
    assert f"of {n_rows} row(s), {n_rows} in none of the classes X,Y" in line


def test_finetune_says_which_rows_of_other_modalities_it_left_out(cohort, tmp_path):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(["finetune", "--manifest", str(cohort["labelled"]), "--out", str(tmp_path / "run"),
                     "--mode", "scratch", "--label", "diagnosis", "--classes", "CN,AD", "--epochs", "1", *NET])
    assert code == 0
    n_fdg = cohort["n_cn_ad"]  # the FDG rows of the two classes
    assert f"; {n_fdg} FDG row(s) left out (input: T1w)" in out.getvalue(), out.getvalue()
