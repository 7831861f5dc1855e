"""sMCI / pMCI / unknown at a horizon: a hand-made table of subjects with the right label for each."""

from __future__ import annotations

import textwrap

import pandas as pd
import pytest

from neuro_ssl.data.manifest import read_manifest
from neuro_ssl.data.progression import label_progression, parse_date
from neuro_ssl.errors import ConfigError, ManifestError

# ADNIMERGE-style rows (Years_bl, DX, DX_bl), some subjects timed by exam dates only (ISO or
# M/DD/YYYY), rows of one subject out of order, diagnoses missing at some visits.
VISITS = textwrap.dedent("""\
    PTID,VISCODE,modality,image_path,DX,DX_bl,Years_bl,EXAMDATE
    S01,bl,T1w,s01_bl.nii.gz,MCI,LMCI,0,
    S01,bl,FDG,s01_bl_fdg.nii.gz,MCI,LMCI,0,
    S01,m12,T1w,s01_m12.nii.gz,Dementia,LMCI,1.01,
    S01,m24,T1w,s01_m24.nii.gz,Dementia,LMCI,2.0,
    S02,bl,T1w,s02_bl.nii.gz,MCI,EMCI,0,
    S02,m12,T1w,s02_m12.nii.gz,MCI,EMCI,1.0,
    S02,m36,T1w,s02_m36.nii.gz,MCI,EMCI,3.02,
    S02,m48,T1w,s02_m48.nii.gz,Dementia,EMCI,4.0,
    S03,bl,T1w,s03_bl.nii.gz,MCI,EMCI,0,
    S03,m12,T1w,s03_m12.nii.gz,MCI,EMCI,1.0,
    S03,m24,T1w,s03_m24.nii.gz,MCI,EMCI,2.0,
    S03,m36,T1w,s03_m36.nii.gz,MCI,EMCI,3.0,
    S03,m48,T1w,s03_m48.nii.gz,MCI,EMCI,4.0,
    S04,bl,T1w,s04_bl.nii.gz,MCI,EMCI,0,
    S04,m12,T1w,s04_m12.nii.gz,MCI,EMCI,1.0,
    S05,bl,T1w,s05_bl.nii.gz,MCI,LMCI,0,
    S05,m12,T1w,s05_m12.nii.gz,Dementia,LMCI,1.0,
    S05,m24,T1w,s05_m24.nii.gz,MCI,LMCI,2.0,
    S05,m36,T1w,s05_m36.nii.gz,MCI,LMCI,3.0,
    S06,bl,T1w,s06_bl.nii.gz,MCI,EMCI,0,
    S06,m12,T1w,s06_m12.nii.gz,,EMCI,1.0,
    S06,m24,T1w,s06_m24.nii.gz,NA,EMCI,2.0,
    S06,m36,T1w,s06_m36.nii.gz,MCI,EMCI,3.0,
    S07,m24,T1w,s07_m24.nii.gz,Dementia,LMCI,2.0,
    S07,m12,T1w,s07_m12.nii.gz,MCI,LMCI,1.0,
    S07,bl,T1w,s07_bl.nii.gz,MCI,LMCI,0,
    S08,m36,T1w,s08_m36.nii.gz,MCI,EMCI,,5/06/2013
    S08,bl,T1w,s08_bl.nii.gz,MCI,EMCI,,5/03/2010
    S08,m12,T1w,s08_m12.nii.gz,MCI,EMCI,,5/10/2011
    S09,bl,T1w,s09_bl.nii.gz,MCI,LMCI,,2010-01-15
    S09,m12,T1w,s09_m12.nii.gz,Dementia,LMCI,,2011-01-20
    S10,bl,T1w,s10_bl.nii.gz,CN,CN,0,
    S10,m12,T1w,s10_m12.nii.gz,MCI,CN,1.0,
    S11,bl,T1w,s11_bl.nii.gz,Dementia,AD,0,
    S11,m12,T1w,s11_m12.nii.gz,Dementia,AD,1.0,
    S12,bl,T1w,s12_bl.nii.gz,,LMCI,0,
    S12,m12,T1w,s12_m12.nii.gz,MCI,LMCI,1.0,
    S12,m36,T1w,s12_m36.nii.gz,MCI,LMCI,3.0,
    S13,bl,T1w,s13_bl.nii.gz,MCI,LMCI,0,
    S13,m36,T1w,s13_m36.nii.gz,Dementia,LMCI,3.0,
    S14,bl,T1w,s14_bl.nii.gz,MCI,EMCI,0,
    S14,m12,T1w,s14_m12.nii.gz,MCI,EMCI,1.0,
    S14,m48,T1w,s14_m48.nii.gz,Dementia,EMCI,4.0,
    S15,bl,T1w,s15_bl.nii.gz,MCI,EMCI,0,
    S15,m12,T1w,s15_m12.nii.gz,CN,EMCI,1.0,
    S15,m36,T1w,s15_m36.nii.gz,MCI,EMCI,3.0,
    S16,bl,T1w,s16_bl.nii.gz,MCI,EMCI,0,
    S16,m12,T1w,s16_m12.nii.gz,MCI,EMCI,1.0,
    S16,m36,T1w,s16_m36.nii.gz,,EMCI,3.0,
    """)

EXPECTED = {
    "S01": ("pMCI", "converter at 12 months"),
    "S02": ("sMCI", "converter after the horizon: MCI at 36 months, AD at 48"),
    "S03": ("sMCI", "stable with long follow-up"),
    "S04": ("unknown", "stable with short follow-up (12 months)"),
    "S05": ("pMCI", "reverter: AD at 12, MCI at 24 (reported)"),
    "S06": ("sMCI", "diagnoses missing at 12 and 24 months, MCI at 36"),
    "S07": ("pMCI", "visits out of order, AD at 24"),
    "S08": ("sMCI", "M/DD/YYYY exam dates only, out of order, 36.1 months"),
    "S09": ("pMCI", "ISO exam dates only, AD at 12 months"),
    "S10": (None, "CN at baseline"),
    "S11": (None, "AD at baseline"),
    "S12": ("sMCI", "baseline DX missing, DX_bl LMCI"),
    "S13": ("pMCI", "AD exactly at the horizon"),
    "S14": ("unknown", "gap across the horizon: MCI at 12, AD at 48"),
    "S15": ("sMCI", "MCI -> CN -> MCI (reported), MCI at 36"),
    "S16": ("unknown", "the only visit at the horizon has no diagnosis"),
}


@pytest.fixture()
def visits(tmp_path) -> pd.DataFrame:
    path = tmp_path / "visits.csv"
    path.write_text(VISITS)
    return read_manifest(path)


def _by_subject(result) -> dict:
    return {row.subject_id: row for row in result.subjects.itertuples(index=False)}


def test_each_hand_made_subject_gets_its_label(visits):
    result = label_progression(visits, horizon_months=36)
    subjects = _by_subject(result)
    got = {s: (None if pd.isna(r.progression) or r.progression is None else r.progression) for s, r in subjects.items()}
    assert got == {s: label for s, (label, _) in EXPECTED.items()}, \
        {s: (got[s], why) for s, (label, why) in EXPECTED.items() if got[s] != label}


def test_the_label_sits_on_the_baseline_scan_only(visits):
    out = label_progression(visits, horizon_months=36).manifest
    labelled = out[out["progression"].notna()]
    assert set(zip(labelled["subject_id"], labelled["session_id"])) == {
        (s, "bl") for s, (label, _) in EXPECTED.items() if label is not None}
    s01 = out[(out["subject_id"] == "S01") & (out["session_id"] == "bl")]
    assert list(s01["modality"]) == ["T1w", "FDG"] and set(s01["progression"]) == {"pMCI"}
    assert out.loc[out["subject_id"] == "S07"].sort_values("years_from_baseline")["session_id"].tolist() == \
        ["bl", "m12", "m24"]


def test_times_come_from_years_bl_or_exam_dates(visits):
    result = label_progression(visits, horizon_months=36)
    out = result.manifest.set_index(["subject_id", "session_id"])
    assert out.loc[("S01", "m12"), "years_from_baseline"] == pytest.approx(1.01)
    days = (pd.Timestamp("2013-05-06") - pd.Timestamp("2010-05-03")).days  # M/DD/YYYY read month first
    assert out.loc[("S08", "m36"), "years_from_baseline"] == pytest.approx(days / 365.25, abs=1e-4)
    assert result.time_source == "years+dates"
    subjects = _by_subject(result)
    assert subjects["S08"].follow_up_months == pytest.approx(12 * days / 365.25, abs=0.01)
    assert subjects["S07"].first_conversion_months == pytest.approx(24.0)


def test_reversions_and_ignored_visits_are_reported(visits):
    result = label_progression(visits, horizon_months=36)
    subjects = _by_subject(result)
    assert subjects["S05"].reversions == "AD->MCI at 24.0 months"
    assert subjects["S15"].reversions == "MCI->CN at 12.0 months"
    assert all(subjects[s].reversions == "" for s in EXPECTED if s not in ("S05", "S15"))
    assert "2 visit(s) without diagnosis ignored" in subjects["S06"].note
    assert "AD later, at 48.0 months" in subjects["S02"].note
    summary = dict(zip(result.summary["label"], result.summary["subjects"]))
    assert summary == {"pMCI": 5, "sMCI": 6, "unknown": 3, "not MCI at baseline": 2,
                       "no diagnosis or time at baseline": 0, "reverted (reported)": 2}


def test_horizon_window_and_other_stages(visits):
    short = _by_subject(label_progression(visits, horizon_months=12))
    assert short["S04"].progression == "sMCI" and short["S13"].progression == "unknown"
    assert short["S14"].progression == "sMCI" and short["S07"].progression == "sMCI"
    exact = visits.copy()
    exact.loc[exact["subject_id"] == "S03", "Years_bl"] = exact.loc[exact["subject_id"] == "S03", "Years_bl"].replace(
        {3.0: 2.96, 4.0: 2.97})
    assert _by_subject(label_progression(exact, 36))["S03"].progression == "unknown"
    assert _by_subject(label_progression(exact, 36, window_months=1))["S03"].progression == "sMCI"
    cn = _by_subject(label_progression(visits, horizon_months=12, from_dx="CN", to_dx="MCI"))
    assert cn["S10"].progression == "pCN" and pd.isna(cn["S01"].progression)


def test_visit_codes_time_the_visits_when_asked(visits):
    result = label_progression(visits, horizon_months=36, time="visits")
    assert result.time_source == "visits"
    assert _by_subject(result)["S08"].follow_up_months == pytest.approx(36.0)


@pytest.mark.parametrize("text, expected", [
    ("2012-05-03", (2012, 5, 3)), ("5/03/2012", (2012, 5, 3)), ("12/31/2011", (2011, 12, 31)),
    ("20120503", (2012, 5, 3)), ("2012-05-03 10:20:00", (2012, 5, 3)),
])
def test_adni_date_formats(text, expected):
    when = parse_date(text)
    assert (when.year, when.month, when.day) == expected


def test_bad_dates_and_options_are_refused_with_one_line(visits, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("PTID,VISCODE,image_path,DX,Acq Date\nA,bl,a.nii.gz,MCI,5/03/2010\nA,m12,b.nii.gz,MCI,31/12/2011\n")
    with pytest.raises(ManifestError, match=r"bad.csv row 3: Acq Date: date '31/12/2011'"):
        label_progression(read_manifest(path), 36)
    with pytest.raises(ConfigError, match="--horizon"):
        label_progression(visits, horizon_months=0)
    with pytest.raises(ConfigError, match="same stage"):
        label_progression(visits, from_dx="MCI", to_dx="LMCI")
    with pytest.raises(ConfigError, match="--window"):
        label_progression(visits, horizon_months=12, window_months=12)


def test_cli_writes_the_manifest_subjects_and_summary(tmp_path, capsys):
    from neuro_ssl.cli.main import main

    (tmp_path / "visits.csv").write_text(VISITS)
    out = tmp_path / "labelled" / "progression.csv"
    assert main(["manifest", "progression", str(tmp_path / "visits.csv"), "--out", str(out), "--horizon", "36"]) == 0
    printed = capsys.readouterr().out
    assert "pMCI / sMCI at 36 months (MCI -> AD), visit times from years+dates" in printed
    assert "reverted: S05: AD->MCI at 24.0 months" in printed
    written = read_manifest(out)
    assert written.loc[written["subject_id"] == "S04", "progression"].dropna().tolist() == ["unknown"]
    assert str(tmp_path / "s01_bl.nii.gz") in set(written["image"])  # paths rebased onto OUT's folder
    summary = pd.read_csv(out.with_name("progression_summary.csv"))
    assert summary.set_index("label").loc["sMCI", "subjects"] == 6
    assert len(pd.read_csv(out.with_name("progression_subjects.csv"))) == len(EXPECTED)


def test_cli_refuses_bad_input_with_one_line_and_writes_nothing(tmp_path, capsys):
    from neuro_ssl.cli.main import main

    path = tmp_path / "bad.csv"
    path.write_text("PTID,VISCODE,image_path,DX,EXAMDATE\nA,bl,a.nii.gz,MCI,2010-13-01\n")
    assert main(["manifest", "progression", str(path), "--out", str(tmp_path / "out.csv")]) == 1
    assert "bad.csv row 2: EXAMDATE: date '2010-13-01'" in capsys.readouterr().err
    assert main(["manifest", "progression", str(path), "--out", str(path)]) == 2
    assert main(["manifest", "progression", str(path), "--out", str(tmp_path / "o.csv"), "--horizon", "-3"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]
