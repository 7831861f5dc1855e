"""Every importer run from another working directory, with relative roots, symlinks and ``..``.

Issue 11, point 3: ``manifest import bids --root bids`` from the parent folder wrote every path
doubled (``bids/bids/sub-01/...``) and exited 0. Here each importer runs through the CLI, as a
user types it, with its folders spelled four ways; the manifest it writes must name exactly the
files of the tree (checked with ``os.path.samefile``) and ``validate`` must pass on it from yet
another directory. Also BIDS: a session without its own age (reported, chosen with
``--session-age``) and several runs of one modality (``--run first|last|all``).
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from neuro_ssl.cli.main import main
from neuro_ssl.data.manifest import read_manifest

STEMS = ("store", "work", "store/bids/sub-01")


def nii(path: Path, value: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(int(value)).random((6, 6, 6)).astype(np.float32) + value
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])), path)
    return path


@pytest.fixture
def trees(tmp_path) -> dict[str, list[Path]]:
    """One tree per dialect under tmp_path/store; tmp_path/work holds ``data`` -> ../store (a symlink)."""
    store = tmp_path / "store"
    files = {
        "bids": [nii(store / "bids/sub-01/ses-bl/anat/sub-01_ses-bl_T1w.nii.gz", 1),
                 nii(store / "bids/sub-02/ses-bl/anat/sub-02_ses-bl_T1w.nii.gz", 2)],
        "adni": [nii(store / "ADNI/002_S_0295/MPRAGE/2006-04-18/I45108/scan.nii.gz", 3),
                 nii(store / "ADNI/ADNI_011_S_0002_MR_MPRAGE_I77777.nii.gz", 4)],
        "clinicadl": [nii(store / "caps/subjects/sub-1/ses-M000/t1_linear/sub-1_ses-M000_T1w.nii.gz", 5),
                      nii(store / "caps/subjects/sub-2/ses-M000/t1_linear/sub-2_ses-M000_T1w.nii.gz", 6)],
        "csv": [nii(store / "scans/a.nii.gz", 7), nii(store / "scans/b.nii.gz", 8)],
    }
    (store / "bids/participants.tsv").write_text("participant_id\tage\tsex\nsub-01\t70\tF\nsub-02\t71\tM\n")
    (store / "ADNI.csv").write_text("Image Data ID,Subject,Visit,Age,Sex,Group\n"
                                    "I45108,002_S_0295,1,84,M,CN\nI77777,011_S_0002,1,74,F,AD\n")
    (store / "labels.tsv").write_text("participant_id\tsession_id\tage\nsub-1\tses-M000\t70\nsub-2\tses-M000\t80\n")
    (store / "table.csv").write_text("ID,scan,AgeYears\nS1,a.nii.gz,70\nS2,b.nii.gz,71\n")
    (tmp_path / "work").mkdir()
    os.symlink("../store", tmp_path / "work" / "data")
    return files


def _args(dialect: str, prefix: str) -> list[str]:
    """The import command with every folder and table spelled from ``prefix`` (the store as seen from cwd)."""
    at = (lambda name: f"{prefix}{name}") if prefix else (lambda name: name)
    return {
        "bids": ["bids", "--root", at("bids")],
        "adni": ["adni", "--images", at("ADNI"), "--csv", at("ADNI.csv")],
        "clinicadl": ["clinicadl", "--tsv", at("labels.tsv"), "--caps", at("caps")],
        "csv": ["csv", "--csv", at("table.csv"), "--columns", "subject_id=ID,image=scan,age=AgeYears",
                "--image-root", at("scans")],
    }[dialect]


#: (working directory under tmp_path, how the store is spelled from there)
SPELLINGS = {
    "relative": ("store", ""),                        # the issue: --root bids from the parent folder
    "symlink": ("work", "data/"),                     # through a symlinked folder
    "symlink_dotdot": ("work", "data/../store/"),     # .. after a symlink: the OS goes above its target
    "dotdot": ("store/bids/sub-01", "../../"),        # plain .. from deeper down
}


@pytest.mark.parametrize("spelling", SPELLINGS)
@pytest.mark.parametrize("dialect", ["bids", "adni", "clinicadl", "csv"])
def test_importer_paths_hold_from_any_working_directory(trees, tmp_path, monkeypatch, dialect, spelling):
    cwd, prefix = SPELLINGS[spelling]
    monkeypatch.chdir(tmp_path / cwd)
    out = tmp_path / "out" / "manifest.csv"
    assert main(["manifest", "import", *_args(dialect, prefix), "--out", os.path.relpath(out), "--strict"]) == 0
    monkeypatch.chdir(tmp_path)  # read and validate from somewhere else again
    images = sorted(read_manifest(out)["image"])
    assert len(images) == len(trees[dialect])
    assert all(os.path.exists(p) for p in images), images
    assert sorted(os.path.realpath(p) for p in images) == sorted(str(p.resolve()) for p in trees[dialect])
    assert main(["validate", str(out)]) == 0


def _longitudinal_bids(root: Path, sessions_tsv: str | None) -> None:
    for ses, value in (("ses-bl", 1), ("ses-m24", 2)):
        nii(root / f"sub-01/{ses}/anat/sub-01_{ses}_T1w.nii.gz", value)
    nii(root / "sub-02/ses-bl/anat/sub-02_ses-bl_T1w.nii.gz", 3)
    (root / "participants.tsv").write_text("participant_id\tage\nsub-01\t70.0\nsub-02\t66.0\n")
    if sessions_tsv is not None:
        (root / "sub-01/sub-01_sessions.tsv").write_text(sessions_tsv)


@pytest.mark.parametrize("sessions_tsv", ["session_id\tage\nses-bl\tn/a\nses-m24\tn/a\n", "session_id\tmmse\nses-bl\t29\n", None])
def test_bids_session_without_age_is_reported_and_chosen(tmp_path, capsys, sessions_tsv):
    _longitudinal_bids(tmp_path / "bids", sessions_tsv)
    out = tmp_path / "m.csv"
    assert main(["manifest", "import", "bids", "--root", str(tmp_path / "bids"), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "2 sessions of subjects with several sessions have no age in their sessions.tsv" in err, err
    assert "--session-age missing" in err
    ages = read_manifest(out).set_index("session_id").query("subject_id == 'sub-01'")["age"]
    assert ages.tolist() == [70.0, 70.0]  # the default, now said out loud
    assert main(["manifest", "import", "bids", "--root", str(tmp_path / "bids"), "--out", str(out),
                 "--session-age", "missing"]) == 0
    df = read_manifest(out).set_index(["subject_id", "session_id"])
    assert df["age"].isna().tolist() == [True, True, False]  # sub-02 has one session: its age is its own


def test_bids_session_ages_from_sessions_tsv_need_no_note(tmp_path, capsys):
    _longitudinal_bids(tmp_path / "bids", "session_id\tage\nses-bl\t70.1\nses-m24\t72.2\n")
    assert main(["manifest", "import", "bids", "--root", str(tmp_path / "bids"), "--out", str(tmp_path / "m.csv")]) == 0
    assert "no age" not in capsys.readouterr().err
    assert read_manifest(tmp_path / "m.csv")["age"].tolist() == [70.1, 72.2, 66.0]


@pytest.mark.parametrize("rule, kept", [("first", ["1"]), ("last", ["10"]), ("all", ["1", "2", "10"])])
def test_bids_runs_are_kept_as_a_column_and_chosen_by_rule(tmp_path, capsys, rule, kept):
    root = tmp_path / "bids"
    for run, value in (("1", 1), ("2", 2), ("10", 3)):
        nii(root / f"sub-01/ses-bl/anat/sub-01_ses-bl_run-{run}_T1w.nii.gz", value)
    nii(root / "sub-02/ses-bl/anat/sub-02_ses-bl_T1w.nii.gz", 4)
    out = tmp_path / "m.csv"
    assert main(["manifest", "import", "bids", "--root", str(root), "--out", str(out), "--run", rule]) == 0
    assert "1 sessions have several runs of one modality" in capsys.readouterr().err
    table = pd.read_csv(out, dtype=str)
    assert sorted(table.loc[table["subject_id"] == "sub-01", "run"], key=int) == kept
    assert main(["validate", str(out)]) == 0  # runs are told apart, not duplicates
