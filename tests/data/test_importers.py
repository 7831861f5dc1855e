"""Importers over real folder trees of tiny NIfTI files: ADNI (IDA, ADNIMERGE), ClinicaDL, BIDS, CSV."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from neuro_ssl.data.importers import tracer_modality
from neuro_ssl.data.importers.adni import image_id_from_path, import_adni, normalize_image_id
from neuro_ssl.data.importers.bids import import_bids
from neuro_ssl.data.importers.clinicadl import import_clinicadl, modality_from_filename
from neuro_ssl.data.importers.csv import import_csv, parse_column_mapping
from neuro_ssl.data.manifest import read_manifest, write_manifest
from neuro_ssl.data.validate import validate_manifest
from neuro_ssl.errors import ConfigError, ManifestError


def nii(path: Path, value: float = 1.0) -> Path:
    """A real 6^3 NIfTI whose mean encodes ``value`` (so a test can tell which file went where)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(int(value * 10)).random((6, 6, 6)).astype(np.float32) + value
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])), path)
    return path


def mean_of(path) -> float:
    return float(np.asanyarray(nib.load(path).dataobj).mean())


def roundtrip_ok(result, tmp_path):
    """The imported manifest, written and read back, validates without errors (real images)."""
    out = write_manifest(result.manifest, tmp_path / "out" / "manifest.csv")
    report = validate_manifest(read_manifest(out))
    assert report.ok, report.lines()
    return read_manifest(out)


# ----------------------------------------------------------------------------------- ADNI

@pytest.fixture
def adni_tree(tmp_path):
    root = tmp_path / "ADNI"
    nii(root / "002_S_0295/MPRAGE/2006-04-18_08_20_30.0/I45108/ADNI_002_S_0295_MR_MPRAGE_br_raw_S13408_I45108.nii", 10)
    nii(root / "002_S_0295/MPRAGE/2007-05-01_10_00_00.0/I55555/scan.nii.gz", 20)  # ID only in the folder
    nii(root / "flat/ADNI_011_S_0002_PT_Coreg_Br_20060501_I77777.nii.gz", 30)
    nii(root / "flat/ADNI_011_S_0002_MR_Axial_T2-FLAIR_I88888.nii.gz", 40)
    nii(root / "flat/orphan_I99999.nii.gz", 50)
    nii(root / "flat/no_id_here.nii.gz", 60)
    return root


IDA = """Image Data ID,Subject,Group,Sex,Age,Visit,Modality,Description,Type,Acq Date
I88888,011_S_0002,AD,F,74,1,MRI,Axial T2-FLAIR,Original,5/01/2006
I77777,011_S_0002,AD,F,74,1,PET,ADNI Brain PET: Raw AV45,Original,5/01/2006
I55555,002_S_0295,CN,M,85,3,MRI,MPRAGE,Original,5/01/2007
I45108,002_S_0295,CN,M,84,1,MRI,MPRAGE,Original,4/18/2006
I12121,011_S_0003,MCI,F,70,1,MRI,MPRAGE,Original,5/01/2006
"""


def test_adni_ida_matches_by_image_id_not_row_order(adni_tree, tmp_path):
    (tmp_path / "ida.csv").write_text(IDA)
    result = import_adni(adni_tree, tmp_path / "ida.csv")
    df = result.manifest.set_index("Image Data ID")
    assert sorted(df.index) == ["I45108", "I55555", "I77777", "I88888"]
    assert {i: int(mean_of(df.at[i, "image"])) for i in df.index} == {
        "I45108": 10, "I55555": 20, "I77777": 30, "I88888": 40,
    }
    assert df.loc["I45108", ["subject_id", "session_id", "sex", "diagnosis"]].tolist() == ["002_S_0295", "1", "M", "CN"]
    assert df.at["I55555", "age"] == 85.0
    assert df.loc[["I45108", "I55555", "I77777", "I88888"], "modality"].tolist() == ["T1w", "T1w", "AV45", "FLAIR"]
    assert result.n_unmatched_images == 1 and result.n_unmatched_rows == 1
    notes = "\n".join(result.notes)
    assert "orphan_I99999" in notes and "no_id_here" in notes and "row 6 (I12121)" in notes
    roundtrip_ok(result, tmp_path)


def test_adni_adnimerge_ids_without_prefix(adni_tree, tmp_path):
    (tmp_path / "ADNIMERGE.csv").write_text(
        "RID,PTID,VISCODE,AGE,Years_bl,PTGENDER,DX,DX_bl,IMAGEUID\n"
        "295,002_S_0295,bl,84.8,0,Male,CN,CN,45108\n"
        "295,002_S_0295,m12,84.8,1.04,Male,MCI,CN,55555.0\n"
        "2,011_S_0002,bl,74.3,0,Female,Dementia,AD,77777\n"
        "3,011_S_0003,bl,70.1,0,Female,MCI,LMCI,\n"
    )
    result = import_adni(adni_tree, tmp_path / "ADNIMERGE.csv")
    df = result.manifest.set_index("image_data_id")
    assert sorted(df.index) == ["I45108", "I55555", "I77777"]
    np.testing.assert_allclose(df.loc[["I45108", "I55555"], "age"], [84.8, 85.84])
    assert df.loc[["I45108", "I55555", "I77777"], "diagnosis"].tolist() == ["CN", "MCI", "AD"]
    assert df.at["I77777", "modality"] == "PET"  # ADNIMERGE has no modality; the _PT_ file name tells
    assert any("1 table rows have no IMAGEUID" in n for n in result.notes)
    roundtrip_ok(result, tmp_path)


def test_adni_refuses_ambiguous_ids_and_reports_no_match(adni_tree, tmp_path):
    (tmp_path / "dup.csv").write_text("Image Data ID,Subject\nI45108,A\n45108,B\n")
    with pytest.raises(ManifestError, match=r"rows 2 and 3 \(I45108\)"):
        import_adni(adni_tree, tmp_path / "dup.csv")
    (tmp_path / "none.csv").write_text("IMAGEUID,PTID\n1,A\n2,B\n")
    with pytest.raises(ManifestError, match="no image under .* matched an image ID"):
        import_adni(adni_tree, tmp_path / "none.csv")
    (tmp_path / "noid.csv").write_text("PTID,VISCODE\nA,bl\n")
    with pytest.raises(ManifestError, match="no image ID column"):
        import_adni(adni_tree, tmp_path / "noid.csv")


def test_image_id_parsing(tmp_path):
    assert image_id_from_path(Path("x/ADNI_002_S_0295_MR_MPRAGE_S13408_I045108.nii.gz")) == "45108"
    assert image_id_from_path(Path("ADNI/I123/scan.nii")) == "123"
    assert image_id_from_path(Path("ADNI/IMG/scan_Ix.nii")) is None
    assert [normalize_image_id(v) for v in ("I45", "45", "45.0", " i45 ", "abc", None)] == ["45", "45", "45", "45", None, None]


def test_tracers():
    assert tracer_modality("ADNI Brain PET: Raw FDG") == "FDG"
    assert tracer_modality("18FAV1451") == "AV1451" and tracer_modality("AV-1451 tau scan") == "AV1451"
    assert tracer_modality("status report") == "PET"
    assert modality_from_filename("sub-1_ses-M000_trc-18FFDG_rec-uniform_pet.nii.gz") == "FDG"
    assert modality_from_filename("sub-1_ses-M000_T1w_space-MNI_desc-Crop_res-1x1x1_T1w.nii.gz") == "T1w"


# ------------------------------------------------------------------------------ ClinicaDL

def test_clinicadl_caps(tmp_path):
    caps = tmp_path / "caps" / "subjects"
    stem = "space-MNI152NLin2009cSym"
    for sub, ses, value in [("sub-ADNI01", "ses-M000", 1), ("sub-ADNI01", "ses-M012", 2), ("sub-ADNI02", "ses-M000", 3)]:
        folder = caps / sub / ses / "t1_linear"
        nii(folder / f"{sub}_{ses}_T1w_{stem}_desc-Crop_res-1x1x1_T1w.nii.gz", value)
        nii(folder / f"{sub}_{ses}_T1w_{stem}_res-1x1x1_T1w.nii.gz", value + 100)  # uncropped twin
    nii(caps / "sub-ADNI03/ses-M000/t1_linear/sub-ADNI03_ses-M000_T1w.nii.gz", 9)  # not in the TSV
    tsv = tmp_path / "labels.tsv"
    tsv.write_text(
        "participant_id\tsession_id\tdiagnosis\tage\tsex\n"
        "sub-ADNI02\tses-M000\tAD\t77.0\tF\n"
        "sub-ADNI01\tses-M000\tCN\t70.0\tM\n"
        "sub-ADNI01\tses-M012\tCN\t71.0\tM\n"
        "sub-ADNI01\tses-M024\tCN\t72.0\tM\n"
    )
    result = import_clinicadl(tsv, tmp_path / "caps")
    df = result.manifest
    assert df["subject_id"].tolist() == ["sub-ADNI02", "sub-ADNI01", "sub-ADNI01"]
    assert [int(mean_of(p)) for p in df["image"]] == [3, 1, 2]  # the cropped image, by its own folder
    assert df["diagnosis"].tolist() == ["AD", "CN", "CN"] and df["modality"].tolist() == ["T1w"] * 3
    assert result.n_unmatched_rows == 1 and result.n_unmatched_images == 1
    notes = "\n".join(result.notes)
    assert "row 5 (sub-ADNI01 ses-M024)" in notes and "sub-ADNI03_ses-M000_T1w" in notes
    roundtrip_ok(result, tmp_path)


def test_clinicadl_participants_only_tsv_takes_every_session(tmp_path):
    caps = tmp_path / "caps" / "subjects"
    nii(caps / "sub-1/ses-M000/pet_linear/sub-1_ses-M000_trc-18FFDG_pet.nii.gz", 1)
    nii(caps / "sub-1/ses-M006/pet_linear/sub-1_ses-M006_trc-18FFDG_pet.nii.gz", 2)
    (tmp_path / "p.tsv").write_text("participant_id\tsex\n1\tF\n")
    result = import_clinicadl(tmp_path / "p.tsv", tmp_path / "caps", pattern="pet_linear/*_pet.nii.gz")
    assert result.manifest["session_id"].tolist() == ["ses-M000", "ses-M006"]
    assert result.manifest["modality"].tolist() == ["FDG", "FDG"]
    with pytest.raises(ManifestError, match="not a CAPS folder"):
        import_clinicadl(tmp_path / "p.tsv", tmp_path)


# ----------------------------------------------------------------------------------- BIDS

def test_bids_with_sessions_pet_and_sessions_tsv(tmp_path):
    root = tmp_path / "bids"
    nii(root / "sub-01/ses-bl/anat/sub-01_ses-bl_T1w.nii.gz", 1)
    nii(root / "sub-01/ses-m12/anat/sub-01_ses-m12_run-1_T1w.nii.gz", 2)
    nii(root / "sub-01/ses-bl/pet/sub-01_ses-bl_trc-18FFDG_pet.nii.gz", 3)
    nii(root / "sub-02/ses-bl/anat/sub-02_ses-bl_T1w.nii", 4)
    nii(root / "sub-02/ses-bl/anat/sub-02_ses-bl_FLAIR.nii.gz", 5)  # suffix not asked for
    (root / "participants.tsv").write_text("participant_id\tage\tsex\tgroup\nsub-01\t70\tF\tCN\nsub-02\t80\tmale\tAD\nsub-03\t60\tF\tCN\n")
    (root / "sub-01/sub-01_sessions.tsv").write_text("session_id\tage\nses-bl\t70.2\nses-m12\t71.3\n")
    result = import_bids(root)
    df = result.manifest
    assert len(df) == 4
    key = {(s, ses, m): row for _, row in df.iterrows() for s, ses, m in [(row.subject_id, row.session_id, row.modality)]}
    assert set(key) == {("sub-01", "ses-bl", "T1w"), ("sub-01", "ses-m12", "T1w"), ("sub-01", "ses-bl", "FDG"), ("sub-02", "ses-bl", "T1w")}
    assert key[("sub-01", "ses-m12", "T1w")]["age"] == 71.3  # sessions.tsv wins
    assert key[("sub-02", "ses-bl", "T1w")]["age"] == 80.0 and key[("sub-02", "ses-bl", "T1w")]["sex"] == "M"
    assert key[("sub-01", "ses-bl", "FDG")]["trc"] == "18FFDG" and key[("sub-01", "ses-m12", "T1w")]["run"] == "1"
    assert int(mean_of(key[("sub-01", "ses-bl", "FDG")]["image"])) == 3
    assert key[("sub-02", "ses-bl", "T1w")]["diagnosis"] == "AD"
    assert any("sub-03" in n for n in result.notes)
    roundtrip_ok(result, tmp_path)


def test_bids_without_sessions_or_participants(tmp_path):
    root = tmp_path / "bids"
    nii(root / "sub-A/anat/sub-A_T1w.nii.gz", 1)
    nii(root / "sub-B/anat/sub-B_acq-mprage_T1w.nii.gz", 2)
    result = import_bids(root, suffixes=("T1w",))
    assert result.manifest["subject_id"].tolist() == ["sub-A", "sub-B"]
    assert result.manifest["session_id"].tolist() == ["bl", "bl"]
    assert any("no participants.tsv" in n for n in result.notes)
    with pytest.raises(ManifestError, match="no sub-"):
        import_bids(tmp_path / "bids" / "sub-A")


# ------------------------------------------------------------------------------------ CSV

def test_csv_with_explicit_mapping(tmp_path):
    nii(tmp_path / "scans" / "a.nii.gz", 1)
    nii(tmp_path / "scans" / "b.nii.gz", 2)
    table = tmp_path / "tables" / "study.csv"
    table.parent.mkdir()
    table.write_text("ID,scan,AgeYears,age,Gender,Dx\n007,a.nii.gz,70.5,old,F,CN\n008,b.nii.gz,81,old,Male,Dementia\n")
    mapping = parse_column_mapping("subject_id=ID, image=scan,age=AgeYears,diagnosis=Dx,sex=Gender")
    result = import_csv(table, mapping, image_root=tmp_path / "scans")
    df = result.manifest
    assert df["subject_id"].tolist() == ["007", "008"]
    assert df["age"].tolist() == [70.5, 81.0] and df["age_original"].tolist() == ["old", "old"]
    assert df["sex"].tolist() == ["F", "M"] and df["diagnosis"].tolist() == ["CN", "AD"]
    assert [int(mean_of(p)) for p in df["image"]] == [1, 2]
    assert result.notes == []
    roundtrip_ok(result, tmp_path)


def test_csv_mapping_errors(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("ID,scan\nS1,missing.nii.gz\n")
    with pytest.raises(ConfigError, match="unknown role 'subject' .*did you mean 'subject_id'"):
        parse_column_mapping("subject=ID")
    with pytest.raises(ConfigError, match="expected role=column"):
        parse_column_mapping("subject_id")
    with pytest.raises(ManifestError, match="no column 'Scan' for image .*did you mean 'scan'"):
        import_csv(table, {"subject_id": "ID", "image": "Scan"})
    result = import_csv(table, {"subject_id": "ID", "image": "scan"})
    assert result.n_unmatched_rows == 1 and "row 2" in result.notes[0]


# ---------------------------------------------------- the examples in data_manifests/

EXAMPLES = Path(__file__).resolve().parents[2] / "data_manifests"


@pytest.mark.parametrize("table", ["adni_ida_search.csv", "adnimerge_subset.csv"])
def test_adni_examples_import(tmp_path, table):
    for i, image_id in enumerate(["I45108", "I55555", "I77777", "I32237", "I40731"]):
        nii(tmp_path / "ADNI" / f"ADNI_{i}_{image_id}.nii.gz", i)
    result = import_adni(tmp_path / "ADNI", EXAMPLES / table)
    expected = 5 if table.startswith("adni_ida") else 4  # ADNIMERGE's m06 row has no IMAGEUID
    assert len(result.manifest) == expected and result.n_unmatched_rows == 0
    assert set(result.manifest["subject_id"]) == {"002_S_0295", "011_S_0003", "011_S_0005"}
    roundtrip_ok(result, tmp_path)


def test_clinicadl_bids_and_csv_examples_import(tmp_path):
    labels = read_manifest_like(EXAMPLES / "clinicadl_labels.tsv")
    for i, (sub, ses) in enumerate(labels):
        nii(tmp_path / "caps" / "subjects" / sub / ses / "t1_linear" / f"{sub}_{ses}_T1w.nii.gz", i)
    assert len(import_clinicadl(EXAMPLES / "clinicadl_labels.tsv", tmp_path / "caps").manifest) == len(labels)

    bids = tmp_path / "bids"
    for sub in ("sub-01", "sub-02", "sub-03"):
        nii(bids / sub / "ses-bl" / "anat" / f"{sub}_ses-bl_T1w.nii.gz", 1)
    nii(bids / "sub-01" / "ses-m24" / "anat" / "sub-01_ses-m24_T1w.nii.gz", 2)
    (bids / "participants.tsv").write_bytes((EXAMPLES / "bids_participants.tsv").read_bytes())
    (bids / "sub-01" / "sub-01_sessions.tsv").write_bytes((EXAMPLES / "bids_sub-01_sessions.tsv").read_bytes())
    df = import_bids(bids).manifest.set_index(["subject_id", "session_id"])
    assert df.at[("sub-01", "ses-m24"), "age"] == 73.2 and df.at[("sub-02", "ses-bl"), "diagnosis"] == "AD"

    mapping = parse_column_mapping("subject_id=ID,image=scan,age=AgeYears,sex=Gender,diagnosis=Dx,site=Scanner")
    plain = import_csv(EXAMPLES / "plain_study.csv", mapping).manifest
    assert plain["diagnosis"].tolist() == ["CN", "AD", "MCI"] and plain["subject_id"].tolist() == ["007", "008", "009"]


def read_manifest_like(path) -> list[tuple[str, str]]:
    from neuro_ssl.data.manifest import read_table

    table = read_table(path)
    return list(zip(table["participant_id"], table["session_id"]))


def test_bids_brain_masks_in_the_scans_own_space_fill_the_mask_column(tmp_path, monkeypatch):
    """Issue 10: BIDS ``desc-brain_mask`` files (beside the scan or under derivatives/) become the
    manifest's ``mask``; a template-space mask (space-MNI...) is never taken for a native scan."""
    root = tmp_path / "bids"
    nii(root / "sub-01/ses-bl/anat/sub-01_ses-bl_T1w.nii.gz", 1)
    beside = nii(root / "sub-01/ses-bl/anat/sub-01_ses-bl_desc-brain_mask.nii.gz", 0)
    nii(root / "sub-02/ses-bl/anat/sub-02_ses-bl_run-2_T1w.nii.gz", 2)
    derived = nii(root / "derivatives/skullstrip/sub-02/ses-bl/anat/sub-02_ses-bl_run-2_space-T1w_desc-brain_mask.nii.gz", 0)
    nii(root / "sub-03/ses-bl/anat/sub-03_ses-bl_T1w.nii.gz", 3)
    nii(root / "derivatives/fmriprep/sub-03/ses-bl/anat/sub-03_ses-bl_space-MNI152NLin2009cAsym_desc-brain_mask.nii.gz", 0)
    nii(root / "sub-03/ses-bl/anat/sub-03_ses-bl_acq-other_desc-brain_mask.nii.gz", 0)  # another acquisition's
    monkeypatch.chdir(tmp_path)
    result = import_bids(Path("bids"), suffixes=("T1w",))  # a relative root, as users type it
    masks = dict(zip(result.manifest["subject_id"], result.manifest["mask"]))
    assert masks["sub-01"] == str(beside.resolve()) and masks["sub-02"] == str(derived.resolve())
    assert pd.isna(masks["sub-03"])
    assert any("2 of 3 images have a desc-brain_mask" in n for n in result.notes)
    roundtrip_ok(result, tmp_path)  # validate reads the masks through the same reader
