"""validate_manifest over a corpus of real broken files and bad rows: every problem, its row and file."""

from __future__ import annotations

import gzip
import io
import json
import os

import nibabel as nib
import numpy as np

from neuro_ssl.data import validate as validate_module
from neuro_ssl.data.manifest import read_manifest
from neuro_ssl.data.validate import validate_manifest

AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


def good_data(seed=0, shape=(8, 8, 8)):
    return np.random.default_rng(seed).normal(100, 10, size=shape).astype(np.float32)


def nifti_gz(data, mutate=None) -> bytes:
    raw = bytearray(nib.Nifti1Image(data, AFFINE).to_bytes())
    if mutate is not None:
        header = nib.Nifti1Header.from_fileobj(io.BytesIO(bytes(raw)), check=False)
        mutate(header)
        raw[:348] = header.binaryblock
    return gzip.compress(bytes(raw))


def _zero_dim(h):
    h["dim"][3] = 0


def _zero_scale(h):
    h["srow_x"] = [0, 0, 0, 0]
    h["sform_code"] = 1
    h["qform_code"] = 0


def _nan_at(value):
    data = good_data(5)
    data[2, 3, 4] = value
    return data


#: name -> (bytes of the file, expected problem text); None bytes = the file does not exist
BAD_FILES = {
    "missing.nii.gz": (None, "file not found"),
    "truncated.nii.gz": (nifti_gz(good_data(1))[:-200], "truncated gzip stream (file ends early)"),
    "garbage.nii.gz": (gzip.compress(np.random.default_rng(2).bytes(2000)), "not a NIfTI file"),
    "zerodim.nii.gz": (nifti_gz(good_data(3), _zero_dim), "header has a zero dimension"),
    "flat.nii.gz": (nifti_gz(good_data(4, (8, 8))), "2D image (8x8)"),
    "fourd.nii.gz": (nifti_gz(good_data(5, (8, 8, 8, 3))), "4D image with 3 volumes"),
    "nan.nii.gz": (nifti_gz(_nan_at(np.nan)), "1 NaN voxel of 512"),
    "inf.nii.gz": (nifti_gz(_nan_at(-np.inf)), "1 Inf voxel of 512"),
    "zeros.nii.gz": (nifti_gz(np.zeros((8, 8, 8), np.float32)), "all voxels are zero"),
    "affine.nii.gz": (nifti_gz(good_data(6), _zero_scale), "absurd affine"),
    "text.nii": (b"subject_id,image\nS1,a.nii\n" * 20, "not a NIfTI file (the file is text)"),
}


def write_corpus(tmp_path):
    """A manifest (with a blank line, so rows are file lines, not positions) over real files."""
    images = tmp_path / "images"
    images.mkdir()
    for seed, name in enumerate(["good1.nii.gz", "good2.nii.gz", "good3.nii.gz", "good4.nii.gz"]):
        (images / name).write_bytes(nifti_gz(good_data(10 + seed)))
    (images / "one_volume.nii.gz").write_bytes(nifti_gz(good_data(20, (8, 8, 8, 1))))
    for name, (raw, _) in BAD_FILES.items():
        if raw is not None:
            (images / name).write_bytes(raw)
    rows = [  # subject, session, image, age, sex, diagnosis
        ("S01", "bl", "good1.nii.gz", "70", "F", "CN"),
        ("S01", "m12", "one_volume.nii.gz", "71", "F", "CN"),
    ]
    rows += [(f"B{i:02d}", "bl", name, "70", "M", "AD") for i, name in enumerate(BAD_FILES)]
    rows += [
        ("S01", "bl", "good2.nii.gz", "70", "F", "CN"),         # duplicate subject/session/modality
        ("S02", "bl", "good3.nii.gz", "seventy", "M", "CN"),    # non-numeric age
        ("S03", "bl", "good4.nii.gz", "-3", "M", "CN"),         # impossible age
        ("S04", "bl", "good4.nii.gz", "130", "X", "FTD"),       # same file again, age, sex code, diagnosis
        ("S05", "bl", "good1.nii.gz", "", "Female", "Dementia"),  # same file as the first row; age missing
    ]
    def csv_line(r):
        return ",".join((r[0], r[1], f"images/{r[2]}", *r[3:]))

    lines = ["subject_id,session_id,image,age,sex,diagnosis", csv_line(rows[0]), ""] + [csv_line(r) for r in rows[1:]]
    path = tmp_path / "manifest.csv"
    path.write_text("\n".join(lines) + "\n")
    numbers = [2] + list(range(4, 4 + len(rows) - 1))  # line 3 is blank
    line_of = {(r[2] if r[0].startswith("B") else (r[0], r[2])): n for r, n in zip(rows, numbers)}
    return path, line_of


def by_row(problems):
    out = {}
    for p in problems:
        out.setdefault(p.row, []).append(p)
    return out


def test_every_problem_at_once_with_its_row_and_file(tmp_path):
    path, line_of = write_corpus(tmp_path)
    df = read_manifest(path)
    report = validate_manifest(df)
    errors = by_row(report.errors)
    for name, (_, expected) in BAD_FILES.items():
        line = line_of[name]
        assert [p.problem for p in errors[line] if p.column == "image"] and expected in errors[line][0].problem, name
        assert errors[line][0].file == str(tmp_path / "images" / name)
        assert report.lines()[report.errors.index(errors[line][0])].startswith(f"{path} row {line}: {tmp_path / 'images' / name}: ")
    assert line_of[("S01", "good1.nii.gz")] == 2 and 2 not in errors  # good rows are clean
    assert line_of[("S01", "one_volume.nii.gz")] == 4 and 4 not in errors  # 4D with one volume is fine
    dup = line_of[("S01", "good2.nii.gz")]
    assert "duplicate of row 2 (same subject S01, session bl, modality T1w)" in errors[dup][0].problem
    assert "'seventy' is not a number" in errors[line_of[("S02", "good3.nii.gz")]][0].problem
    assert "-3 is impossible" in errors[line_of[("S03", "good4.nii.gz")]][0].problem
    s04 = {p.column: p.problem for p in errors[line_of[("S04", "good4.nii.gz")]]}
    assert "130 is impossible" in s04["age"] and "unknown sex code 'X'" in s04["sex"]
    assert f"the same file as row {line_of[('S03', 'good4.nii.gz')]}" in s04["image"]
    assert "the same file as row 2" in errors[line_of[("S05", "good1.nii.gz")]][0].problem
    assert "unknown diagnosis 'FTD'" in s04["diagnosis"]
    warnings = {(p.row, p.column): p.problem for p in report.warnings}
    assert warnings[(line_of[("S05", "good1.nii.gz")], "age")] == "missing"
    assert not report.ok
    assert report.bad_rows == sorted(errors)
    assert len(report.bad_rows) == len(BAD_FILES) + 5
    declared = validate_manifest(df, check_images=False, extra_diagnoses=["FTD"])
    assert not [p for p in declared.errors if p.column == "diagnosis"]
    assert report.summary().startswith(f"{path}: FAILED: {len(df)} rows")


def test_json_report_shape(tmp_path):
    path, _ = write_corpus(tmp_path)
    report = validate_manifest(read_manifest(path), check_images=False)
    data = json.loads(json.dumps(report.to_dict()))
    assert set(data) >= {"errors", "warnings", "n_rows", "ok", "bad_rows"}
    assert data["ok"] is False and data["n_rows"] == len(BAD_FILES) + 7
    assert all(set(item) == {"row", "file", "column", "problem", "severity"} for item in data["errors"] + data["warnings"])
    # without reading images only the missing file is an image problem
    image_problems = [e for e in data["errors"] if e["column"] == "image" and "same file" not in e["problem"]]
    assert [e["problem"] for e in image_problems] == ["file not found"]


def test_each_image_is_read_once_and_workers_agree(tmp_path, monkeypatch):
    path, _ = write_corpus(tmp_path)
    df = read_manifest(path)
    calls = []
    real = validate_module.check_volume
    monkeypatch.setattr(validate_module, "check_volume", lambda p, frames="single": calls.append(p) or real(p, frames))
    totals = []

    def progress(iterable, total, **kwargs):
        totals.append(total)
        return iterable

    serial = validate_manifest(df, workers=1, progress=progress)
    assert sorted(calls) == sorted(set(df["image"])) and totals == [len(set(df["image"]))]
    threaded = validate_manifest(df, workers=3)
    assert threaded.to_dict() == serial.to_dict()


def test_clean_manifest_with_warnings_is_ok(tmp_path):
    (tmp_path / "a.nii.gz").write_bytes(nifti_gz(good_data(1)))
    (tmp_path / "manifest.csv").write_text("subject_id,image,diagnosis\nS1,a.nii.gz,PD\n")
    undeclared = validate_manifest(read_manifest(tmp_path / "manifest.csv"))
    assert not undeclared.ok and [p.column for p in undeclared.errors] == ["diagnosis"]
    report = validate_manifest(read_manifest(tmp_path / "manifest.csv"), extra_diagnoses=("PD",))
    assert report.ok and report.bad_rows == []
    assert {p.column for p in report.warnings} == {"age"}  # no ages at all


def test_unreadable_permissions_depend_on_who_runs(tmp_path):
    """chmod 000 stops a normal user; root reads it anyway (and then the image is fine)."""
    image = tmp_path / "locked.nii.gz"
    image.write_bytes(nifti_gz(good_data(1)))
    (tmp_path / "manifest.csv").write_text("subject_id,image,age\nS1,locked.nii.gz,70\n")
    image.chmod(0)
    try:
        report = validate_manifest(read_manifest(tmp_path / "manifest.csv"))
        if os.access(image, os.R_OK):  # running as root
            assert report.ok
        else:
            assert [p.problem for p in report.errors] == ["permission denied"] and report.bad_rows == [2]
    finally:
        image.chmod(0o644)


def test_subject_consistency_sex_and_baseline_age(tmp_path):
    for name in "abcdefgh":
        (tmp_path / f"{name}.nii.gz").write_bytes(nifti_gz(good_data(ord(name))))
    (tmp_path / "adnimerge.csv").write_text(
        "PTID,VISCODE,AGE,Years_bl,PTGENDER,image,modality\n"
        "S1,bl,70.0,0,Female,a.nii.gz,T1w\n"
        "S1,m12,70.0,1.0,Male,b.nii.gz,T1w\n"      # sex changes
        "S2,bl,80.0,0,Male,c.nii.gz,T1w\n"
        "S2,m24,82.0,2.0,Male,d.nii.gz,T1w\n"      # AGE 82 is not the baseline age 80
        "S3,bl,60.0,0,Male,e.nii.gz,T1w\n"
        "S3,m06,60.0,0.5,Male,f.nii.gz,T1w\n"      # consistent
    )
    report = validate_manifest(read_manifest(tmp_path / "adnimerge.csv"))
    problems = {(p.row, p.column): p.problem for p in report.errors}
    assert problems == {
        (3, "sex"): "M differs from F in row 2 (same subject S1)",
        (5, "age"): "baseline age 82.0 differs from 80.0 in row 4 (same subject S2)",
    }


def test_ages_follow_visit_order_without_baseline_columns(tmp_path):
    for name in "abcde":
        (tmp_path / f"{name}.nii.gz").write_bytes(nifti_gz(good_data(ord(name))))
    (tmp_path / "m.csv").write_text(
        "subject_id,session_id,age,image,modality\n"
        "S1,m12,71,a.nii.gz,T1w\n"
        "S1,bl,80,b.nii.gz,T1w\n"                  # the baseline is older than month 12
        "S2,bl,70,c.nii.gz,T1w\n"
        "S2,bl,73,d.nii.gz,FDG\n"                  # same session, different age
        "S2,m24,72,e.nii.gz,T1w\n"
    )
    report = validate_manifest(read_manifest(tmp_path / "m.csv"))
    problems = {(p.row, p.column): p.problem for p in report.errors}
    assert set(problems) == {(2, "age"), (5, "age")}
    assert "71 at session m12 is younger than 80 at the earlier session bl in row 3" in problems[(2, "age")]
    assert "73 differs from 70 in row 4 (same subject S2, same session bl)" in problems[(5, "age")]


def test_synthetic_cohort_validates_clean_and_splits_without_leaks(tiny_cohort):
    """The shared synth cohort (ADNIMERGE-like columns, T1w + FDG) passes every check."""
    from neuro_ssl.data.splits import make_splits

    df = read_manifest(tiny_cohort)
    report = validate_manifest(df, workers=2)
    assert report.ok, report.lines()
    parts = make_splits(df, 0.25, 0.25, "diagnosis", seed=0, baseline_only_eval=True)
    seen = [set(p["subject_id"]) for p in parts.values()]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    assert set(parts["test"]["session_id"]) == {"bl"}
