"""data/manifest.py over real CSV/TSV files: dialects, aliases, ADNIMERGE ages, row numbers, strings."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from neuro_ssl.data.manifest import (
    CANONICAL_COLUMNS, canonical_diagnosis, canonical_sex, diagnosis_matches, find_column,
    is_identifier_column, read_manifest, read_table, visit_sort_key, visit_years, write_manifest,
)
from neuro_ssl.errors import ManifestError

ADNIMERGE = """RID,PTID,VISCODE,EXAMDATE,EXAMDATE_bl,DX_bl,AGE,PTGENDER,DX,Years_bl,SITE,MMSE,IMAGEUID,image_path
2,011_S_0002,bl,2005-09-08,2005-09-08,CN,74.3,Male,CN,0,11,29,35475,img/a.nii.gz
2,011_S_0002,m24,2007-09-12,2005-09-08,CN,74.3,Male,MCI,2.01232,11,NA,045678,img/b.nii.gz
3,011_S_0003,bl,2005-09-12,2005-09-12,AD,81.3,Female,Dementia,0,11,20,32237,img/c.nii.gz
3,011_S_0003,m12,2006-09-12,2005-09-12,AD,81.3,Female,Dementia,,11,,,img/d.nii.gz
"""


def write(path, text: str, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


def test_adnimerge_columns_and_ages(tmp_path):
    df = read_manifest(write(tmp_path / "adnimerge.csv", ADNIMERGE))
    assert list(df.columns[: len(CANONICAL_COLUMNS)]) == list(CANONICAL_COLUMNS)
    assert df["subject_id"].tolist() == ["011_S_0002", "011_S_0002", "011_S_0003", "011_S_0003"]
    assert df["session_id"].tolist() == ["bl", "m24", "bl", "m12"]
    assert df["sex"].tolist() == ["M", "M", "F", "F"]
    assert df["diagnosis"].tolist() == ["CN", "MCI", "AD", "AD"]  # Dementia means AD
    assert df["diagnosis_bl"].tolist() == ["CN", "CN", "AD", "AD"]  # DX_bl kept aside: DX exists
    assert df["site"].tolist() == ["11"] * 4
    # age at visit = baseline AGE + Years_bl; the last row lacks Years_bl: the exam-date gap is used
    gap_years = (pd.Timestamp("2006-09-12") - pd.Timestamp("2005-09-12")).days / 365.25
    np.testing.assert_allclose(df["age"], [74.3, 74.3 + 2.01232, 81.3, 81.3 + gap_years])
    np.testing.assert_allclose(df["age_bl"], [74.3, 74.3, 81.3, 81.3])
    assert df["MMSE"].dtype == np.float64 and np.isnan(df["MMSE"].iloc[1])
    assert df["IMAGEUID"].tolist()[:3] == ["35475", "045678", "32237"]  # an identifier: never a float
    assert df["RID"].tolist()[0] == "2"
    assert df["image"].iloc[0] == os.path.join(str(tmp_path), "img", "a.nii.gz")
    assert df.index.tolist() == [2, 3, 4, 5]
    assert df.attrs["source"].endswith("adnimerge.csv")


def test_adni_months_from_viscode_when_no_date_or_years(tmp_path):
    text = "PTID,VISCODE,AGE,Years_bl,image\nS1,bl,70,0,a.nii\nS1,m18,70,,b.nii\nS1,ses-M036,70,,c.nii\n"
    df = read_manifest(write(tmp_path / "m.csv", text))
    np.testing.assert_allclose(df["age"], [70.0, 71.5, 73.0])


def test_plain_uppercase_age_without_adni_columns_is_age_at_visit(tmp_path):
    df = read_manifest(write(tmp_path / "m.csv", "subject,VISCODE,AGE,image\nS1,m24,70,a.nii\n"))
    assert df["age"].tolist() == [70.0] and "age_bl" not in df.columns


def test_dx_bl_is_the_diagnosis_only_without_a_visit_label(tmp_path):
    df = read_manifest(write(tmp_path / "m.csv", "PTID,DX_bl,image\nS1,LMCI,a.nii\nS2,Dementia,b.nii\n"))
    assert df["diagnosis"].tolist() == ["LMCI", "AD"] and "diagnosis_bl" not in df.columns


def test_identifiers_stay_strings_and_text_columns_use_nan(tmp_path):
    text = "subject_id,session_id,image,age,sex,code,score\n011,01,a.nii,70,F,007,1.5\n012,,b.nii,71,,008,2\n"
    df = read_manifest(write(tmp_path / "m.csv", text))
    assert df["subject_id"].tolist() == ["011", "012"]
    assert df["session_id"].tolist() == ["01", "bl"]  # a missing session is the baseline
    assert df["code"].tolist() == ["007", "008"]  # leading zeros: a code, not a number
    assert df["score"].tolist() == [1.5, 2.0]
    assert pd.api.types.is_string_dtype(df["subject_id"])
    assert df["sex"].iloc[1] is np.nan or np.isnan(df["sex"].iloc[1])  # NaN, never pd.NA
    assert isinstance(df["subject_id"].iloc[0], str)


@pytest.mark.parametrize("column", ["RID", "IMAGEUID", "Image Data ID", "PTID", "VISCODE2", "subjectId", "ses"])
def test_identifier_column_names(column):
    assert is_identifier_column(column)


@pytest.mark.parametrize("column", ["MMSE", "Years_bl", "ADAS13", "valid", "fluid_volume"])
def test_measurement_column_names(column):
    assert not is_identifier_column(column)


def test_row_numbers_are_file_lines_with_blank_lines_and_quoted_breaks(tmp_path):
    text = 'subject_id,image,note\r\nS1,a.nii,"two\r\nlines"\r\n\r\nS2,b.nii,x\r\nS3,c.nii,y\r\n'
    df = read_table(write(tmp_path / "m.csv", text))
    assert df.index.tolist() == [2, 5, 6]
    assert df.loc[2, "note"] == "two\r\nlines"


def test_bom_utf16_tsv_semicolon_and_spaces(tmp_path):
    bom = read_manifest(write(tmp_path / "bom.csv", "\ufeffsubject_id,image\nS1,a.nii\n"))
    assert bom.columns[0] == "subject_id" and bom["subject_id"].iloc[0] == "S1"
    utf16 = read_manifest(write(tmp_path / "u16.csv", "subject_id,image\nS1,a.nii\n", encoding="utf-16"))
    assert utf16["subject_id"].tolist() == ["S1"]
    tsv = read_manifest(write(tmp_path / "m.tsv", "participant_id\tsession_id\tt1w\tage\nsub-01\tses-1\ta.nii\t7,5\n"))
    assert tsv["subject_id"].tolist() == ["sub-01"] and tsv["age"].tolist() == [7.5]
    semi = read_manifest(write(tmp_path / "semi.csv", "Subject ; path ; Age\n S1 ; a.nii ; 71,5 \n"))
    assert semi["subject_id"].tolist() == ["S1"] and semi["age"].tolist() == [71.5]


def test_missing_tokens(tmp_path):
    text = "subject_id,image,age,sex,diagnosis,site\n" + "".join(
        f"S{i},a{i}.nii,{tok},{tok},{tok},{tok}\n" for i, tok in enumerate(["", "NA", "n/a", "N/A", "nan", "None", "null", "."])
    )
    df = read_manifest(write(tmp_path / "m.csv", text))
    assert df[["age", "sex", "diagnosis", "site"]].isna().all().all()
    assert "age_raw" not in df.columns


def test_non_numeric_age_is_kept_for_validate(tmp_path):
    df = read_manifest(write(tmp_path / "m.csv", "subject_id,image,age\nS1,a.nii,seventy\nS2,b.nii,71\n"))
    assert np.isnan(df["age"].iloc[0]) and df["age_raw"].iloc[0] == "seventy"
    assert df["age"].iloc[1] == 71.0 and pd.isna(df["age_raw"].iloc[1])


def test_absolute_and_home_paths(tmp_path):
    df = read_manifest(write(tmp_path / "m.csv", f"subject_id,image\nS1,{tmp_path}/x/../a.nii\nS2,~/b.nii\n"))
    assert df["image"].tolist() == [str(tmp_path / "a.nii"), os.path.expanduser("~/b.nii")]


@pytest.mark.parametrize("text, message", [
    ("subject_id|image|age\nS1|a.nii|70\n", "delimiter looks like '|'"),
    ("ID,scan\nS1,a.nii\n", "no subject column (looked for subject_id, PTID"),
    ("subject_id,age\nS1,70\n", "no image column"),
    ("subject_id,image\nS1,a.nii,extra,more\n", "row 2: 4 fields but the header has 2"),
    ("", "the file is empty"),
    ("subject_id,image\n", "header but no rows"),
])
def test_unusable_tables_give_one_line_errors(tmp_path, text, message):
    path = write(tmp_path / "bad.csv", text)
    with pytest.raises(ManifestError) as info:
        read_manifest(path)
    assert message in str(info.value) and str(path) in str(info.value)


def test_excel_binary_and_missing_files(tmp_path):
    with pytest.raises(ManifestError, match="Excel"):
        read_table(write(tmp_path / "m.csv", "PK\x03\x04rest-of-a-zip"))
    (tmp_path / "bin.csv").write_bytes(b"\x00\x01\x02binary")
    with pytest.raises(ManifestError, match="binary"):
        read_table(tmp_path / "bin.csv")
    with pytest.raises(ManifestError, match="file not found"):
        read_table(tmp_path / "absent.csv")
    with pytest.raises(ManifestError, match="is a folder"):
        read_table(tmp_path)


def test_duplicate_and_blank_header_names(tmp_path):
    df = read_table(write(tmp_path / "m.csv", "subject_id,image,score,score,\nS1,a.nii,1,2,x\n"))
    assert df.columns.tolist() == ["subject_id", "image", "score", "score.1", "column_5"]


def test_write_then_read_round_trip(tmp_path):
    df = read_manifest(write(tmp_path / "adnimerge.csv", ADNIMERGE))
    out = write_manifest(df, tmp_path / "out" / "manifest.tsv")
    text = out.read_text()
    assert "\t../img/a.nii.gz\t" in text  # relative to the manifest's own folder
    back = read_manifest(out)
    pd.testing.assert_series_equal(back["image"], df["image"].set_axis(back.index), check_names=False)
    np.testing.assert_allclose(back["age"], df["age"])  # age at visit is not shifted twice
    for column in ("subject_id", "session_id", "sex", "diagnosis", "IMAGEUID"):
        assert back[column].tolist() == df[column].tolist()


def test_find_column_prefers_exact_name():
    assert find_column(["AGE", "age"], ("age",)) == "age"
    assert find_column(["Age", "x"], ("age",)) == "Age"
    assert find_column(["x"], ("age",)) is None


def test_codes():
    assert canonical_sex(" male ") == "M" and canonical_sex("F") == "F" and canonical_sex("X") == "X"
    assert canonical_diagnosis("Dementia") == "AD" and canonical_diagnosis("emci") == "EMCI"
    assert pd.isna(canonical_sex(pd.NA)) and pd.isna(canonical_diagnosis(None))
    assert diagnosis_matches("LMCI", "MCI") and diagnosis_matches("Dementia", "AD")
    assert not diagnosis_matches("CN", "AD") and not diagnosis_matches(np.nan, "CN")


@pytest.mark.parametrize("session, years", [
    ("bl", 0.0), ("sc", 0.0), ("m06", 0.5), ("M24", 2.0), ("ses-M036", 3.0), ("Month 12", 1.0),
    ("ADNI1/GO Month 6", 0.5), ("y2", 2.0), ("ADNI Screening", 0.0), ("ses-01", None), ("followup", None),
])
def test_visit_years(session, years):
    assert visit_years(session) == years


def test_visit_sort_key_orders_visits():
    sessions = ["m24", "ses-02", "bl", "m06", "ses-01", "other"]
    assert sorted(sessions, key=visit_sort_key) == ["bl", "m06", "m24", "ses-01", "ses-02", "other"]


EXAMPLES = __import__("pathlib").Path(__file__).resolve().parents[2] / "data_manifests"


def test_canonical_example_is_clean_but_for_its_absent_images():
    from neuro_ssl.data.validate import validate_manifest

    df = read_manifest(EXAMPLES / "canonical.csv")
    report = validate_manifest(df, check_images=False)
    assert {p.problem for p in report.errors} == {"file not found"} and not report.warnings
    assert df["site"].tolist()[0] == "002"


def test_json_schema_agrees_with_the_reader():
    import json

    from neuro_ssl.data.manifest import KNOWN_DIAGNOSES, KNOWN_SEXES

    schema = json.loads((EXAMPLES / "manifest.schema.json").read_text())
    props = schema["properties"]
    assert set(CANONICAL_COLUMNS) <= set(props) and schema["required"] == ["subject_id", "image"]
    assert set(props["sex"]["enum"]) - {None} == set(KNOWN_SEXES)
    assert set(props["diagnosis"]["enum"]) - {None} == set(KNOWN_DIAGNOSES)
    # every row of the canonical example satisfies the schema's types, enums and bounds
    types = {"string": str, "number": (int, float), "null": type(None)}
    for record in read_manifest(EXAMPLES / "canonical.csv").to_dict("records"):
        for column, rule in props.items():
            if column not in record:
                continue
            value = None if (isinstance(record[column], float) and np.isnan(record[column])) else record[column]
            allowed = rule["type"] if isinstance(rule["type"], list) else [rule["type"]]
            assert isinstance(value, tuple(types[t] for t in allowed)), (column, value)
            assert "enum" not in rule or value in rule["enum"]
            if isinstance(value, float):
                assert rule.get("minimum", -np.inf) <= value <= rule.get("maximum", np.inf)


def test_every_path_column_is_rebased_when_written_elsewhere(tmp_path):
    """A manifest copied into splits/ still finds its images *and* its per-scan masks."""
    from neuro_ssl.data.manifest import read_manifest, write_manifest

    (tmp_path / "images").mkdir()
    (tmp_path / "truth").mkdir()
    src = tmp_path / "manifest.csv"
    src.write_text("PTID,image_path,truth_region,note\n002_S_0001,images/a.nii.gz,truth/a_mask.nii.gz,x.txt\n")
    df = read_manifest(src)
    assert df.loc[2, "truth_region"] == str(tmp_path / "truth" / "a_mask.nii.gz")
    assert df.loc[2, "note"] == "x.txt"  # not a volume: left as written
    out = tmp_path / "splits" / "train.csv"
    write_manifest(df, out)
    again = read_manifest(out)
    assert again.loc[2, "image"] == str(tmp_path / "images" / "a.nii.gz")
    assert again.loc[2, "truth_region"] == str(tmp_path / "truth" / "a_mask.nii.gz")
    assert "../truth/a_mask.nii.gz" in out.read_text()
