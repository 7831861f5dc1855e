"""`neuro-ssl manifest import`, `validate` and `split` through main(): exit codes and messages."""

from __future__ import annotations

import gzip
import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from neuro_ssl.cli.main import main
from neuro_ssl.data.manifest import read_manifest


def nii(path, seed=0, shape=(6, 6, 6)):
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(seed).normal(100, 10, size=shape).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])), path)
    return path


@pytest.fixture
def study(tmp_path):
    """12 subjects, 1-2 visits, real images; returns the manifest path."""
    rows = ["subject_id,session_id,image,age,sex,diagnosis"]
    for s in range(12):
        for v, session in enumerate(["bl", "m12"][: 1 + s % 2]):
            nii(tmp_path / "img" / f"s{s}_{session}.nii.gz", seed=s * 10 + v)
            rows.append(f"S{s:02d},{session},img/s{s}_{session}.nii.gz,{60 + s + v},{'MF'[s % 2]},{['CN', 'AD'][s % 3 == 0]}")
    path = tmp_path / "manifest.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_validate_clean_manifest_exits_0(study, capsys):
    assert main(["validate", str(study)]) == 0
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1].startswith(f"{study}: OK: 18 rows, 0 errors")


def test_validate_reports_rows_and_files_and_exits_1(study, tmp_path, capsys):
    broken = tmp_path / "img" / "s3_bl.nii.gz"
    broken.write_bytes(broken.read_bytes()[:-100])  # truncated
    text = study.read_text().replace("S05,bl,img/s5_bl.nii.gz,65", "S05,bl,img/s5_bl.nii.gz,-65")
    study.write_text(text + "S99,bl,img/absent.nii.gz,70,F,CN\n")
    assert main(["validate", str(study)]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert f"{study} row 6: {broken}: truncated gzip stream (file ends early)" in lines
    assert f"{study} row 9: age: -65 is impossible (expected 0 to 120 years)" in lines
    assert f"{study} row 20: {tmp_path / 'img' / 'absent.nii.gz'}: file not found" in lines
    assert lines[-1] == f"{study}: FAILED: 19 rows, 3 errors in 3 rows, 0 warnings"


def test_validate_json(study, tmp_path, capsys):
    (tmp_path / "img" / "s0_bl.nii.gz").write_bytes(gzip.compress(b"not an image at all" * 10))
    assert main(["validate", str(study), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["n_rows"] == 18
    assert report["errors"] == [{
        "row": 2, "file": str(tmp_path / "img" / "s0_bl.nii.gz"), "column": "image",
        "problem": "not a NIfTI file (the decompressed content is text)", "severity": "error",
    }]
    assert main(["validate", str(study), "--json", "--no-images"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True


@pytest.mark.parametrize("content, message", [
    ("subject_id|image\nS1|a.nii\n", "delimiter looks like '|'"),
    ("ID,scan\nS1,a.nii\n", "no subject column"),
    ("\ufeffsubject_id,image\nS1,a.nii,x,y\n", "row 2: 4 fields but the header has 2"),
])
def test_validate_unusable_manifest_is_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"neuro-ssl validate: error: {path}") and message in err and "\n" not in err
    assert main(["validate", str(path), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and message in report["errors"][0]["problem"]


def test_usage_errors_exit_2(study, tmp_path, capsys):
    assert main(["validate"]) == 2
    assert main(["split", str(study), "--out", str(tmp_path / "s"), "--test-size", "1.5"]) == 2
    assert "expected a number in [0, 1)" in capsys.readouterr().err
    assert main(["manifest", "import", "csv", "--csv", str(study), "--columns", "subjet_id=ID",
                 "--out", str(tmp_path / "m.csv")]) == 2
    assert "did you mean 'subject_id'" in capsys.readouterr().err
    assert main(["split", str(study), "--out", str(tmp_path / "s"), "--stratify", "nope"]) == 1  # the data lacks it


def test_split_writes_leak_free_manifests_and_report(study, tmp_path, capsys):
    out = tmp_path / "splits"
    assert main(["split", str(study), "--out", str(out), "--test-size", "0.25", "--val-size", "0.25", "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    assert "n_subjects" in printed and "train" in printed and "+-" in printed
    parts = {name: read_manifest(out / f"{name}.csv") for name in ("train", "val", "test")}
    assert sum(len(p) for p in parts.values()) == 18
    sets = [set(p["subject_id"]) for p in parts.values()]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    original = read_manifest(study).set_index(["subject_id", "session_id"])["image"]
    for part in parts.values():  # image paths, written relative to DIR, resolve to the same files
        assert all(original[(s, v)] == img for s, v, img in zip(part["subject_id"], part["session_id"], part["image"]))
    report = pd.read_csv(out / "split_report.csv")
    assert report["part"].tolist() == ["train", "val", "test"] and report["n_scans"].sum() == 18


def test_split_folds_with_test_and_baseline_only_eval(study, tmp_path):
    out = tmp_path / "cv"
    assert main(["split", str(study), "--out", str(out), "--folds", "3", "--test-size", "0.25",
                 "--baseline-only-eval", "--stratify", "none"]) == 0
    test = read_manifest(out / "test.csv")
    assert set(test["session_id"]) == {"bl"}
    val_subjects = []
    for k in (1, 2, 3):
        train, val = read_manifest(out / f"fold_{k}" / "train.csv"), read_manifest(out / f"fold_{k}" / "val.csv")
        assert not set(train["subject_id"]) & set(val["subject_id"])
        assert not (set(train["subject_id"]) | set(val["subject_id"])) & set(test["subject_id"])
        val_subjects += list(val["subject_id"].unique())
    assert len(val_subjects) == len(set(val_subjects)) == 12 - test["subject_id"].nunique()


def test_manifest_import_csv_then_validate(tmp_path, capsys):
    nii(tmp_path / "scans" / "a.nii.gz", 1)
    nii(tmp_path / "scans" / "b.nii.gz", 2)
    (tmp_path / "t.csv").write_text("ID,scan,AgeYears\n01,scans/a.nii.gz,70\n02,scans/b.nii.gz,71\n")
    out = tmp_path / "out" / "manifest.csv"
    assert main(["manifest", "import", "csv", "--csv", str(tmp_path / "t.csv"),
                 "--columns", "subject_id=ID,image=scan,age=AgeYears", "--out", str(out)]) == 0
    assert "2 images of 2 subjects (T1w 2)" in capsys.readouterr().out
    assert "../scans/a.nii.gz" in out.read_text()
    assert main(["validate", str(out)]) == 0


def test_manifest_import_adni_reports_unmatched_and_strict(tmp_path, capsys):
    nii(tmp_path / "ADNI" / "002_S_0001" / "MPRAGE" / "2006-01-01" / "I100" / "x.nii.gz", 1)
    nii(tmp_path / "ADNI" / "stray_I999.nii.gz", 2)
    (tmp_path / "ida.csv").write_text("Image Data ID,Subject,Group,Sex,Age,Visit,Modality\nI100,002_S_0001,CN,F,70,1,MRI\nI200,002_S_0002,AD,M,71,1,MRI\n")
    args = ["manifest", "import", "adni", "--images", str(tmp_path / "ADNI"), "--csv", str(tmp_path / "ida.csv"),
            "--out", str(tmp_path / "m.csv")]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "1 unmatched images, 1 unmatched table rows" in captured.out
    assert "stray_I999" in captured.err and "row 3 (I200)" in captured.err
    assert read_manifest(tmp_path / "m.csv")["subject_id"].tolist() == ["002_S_0001"]
    assert main(args + ["--strict"]) == 1
    (tmp_path / "other.csv").write_text("Image Data ID,Subject\nI5,A\n")
    assert main(args[:5] + ["--csv", str(tmp_path / "other.csv"), "--out", str(tmp_path / "m2.csv")]) == 1
    assert "no image under" in capsys.readouterr().err


def test_manifest_import_bids_and_clinicadl(tmp_path, capsys):
    nii(tmp_path / "bids" / "sub-01" / "anat" / "sub-01_T1w.nii.gz", 1)
    (tmp_path / "bids" / "participants.tsv").write_text("participant_id\tage\tsex\nsub-01\t70\tF\n")
    assert main(["manifest", "import", "bids", "--root", str(tmp_path / "bids"), "--out", str(tmp_path / "b.csv")]) == 0
    assert read_manifest(tmp_path / "b.csv")["age"].tolist() == [70.0]
    nii(tmp_path / "caps" / "subjects" / "sub-01" / "ses-M000" / "t1_linear" / "sub-01_ses-M000_T1w.nii.gz", 2)
    (tmp_path / "p.tsv").write_text("participant_id\tsession_id\tdiagnosis\nsub-01\tses-M000\tCN\n")
    assert main(["manifest", "import", "clinicadl", "--tsv", str(tmp_path / "p.tsv"), "--caps", str(tmp_path / "caps"),
                 "--out", str(tmp_path / "c.tsv")]) == 0
    assert read_manifest(tmp_path / "c.tsv")["diagnosis"].tolist() == ["CN"]
    assert main(["manifest", "import", "clinicadl", "--tsv", str(tmp_path / "p.tsv"), "--caps", str(tmp_path / "caps"),
                 "--out", str(tmp_path / "p.tsv")]) == 2  # refuses to overwrite its input


@pytest.mark.parametrize("edit, code, expected", [
    (lambda t: "\ufeff" + t, 0, "OK: 18 rows"),  # a BOM is read, not reported
    (lambda t: t + t.splitlines()[1] + "\n", 1, "row 20: session_id: duplicate of row 2 (same subject S00"),
    (lambda t: t.replace("S01,bl,img/s1_bl.nii.gz,61", "S01,bl,img/s1_bl.nii.gz,sixty-one"), 1,
     "row 3: age: 'sixty-one' is not a number"),
    (lambda t: t.replace("img/s2_bl.nii.gz,62,M,CN", "img/s2_bl.nii.gz,62,M,FTD"), 1,
     "row 5: diagnosis: unknown diagnosis 'FTD'"),
])
def test_validate_manifest_problems(study, capsys, edit, code, expected):
    study.write_text(edit(study.read_text()))
    assert main(["validate", str(study)]) == code
    assert expected in capsys.readouterr().out
