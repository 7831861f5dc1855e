"""The synthetic cohort as an ADNI download looks: clinical scores, file names, ADNIMERGE and IDA tables.

What a user of ADNI holds after a download is a folder of images whose names carry the Image
Data ID (``..._S<series>_I<image>.nii``), the IDA search table that lists them (``Image Data
ID``, ``Subject``, ``Group``, ``Acq Date`` in M/DD/YYYY, ...) and ADNIMERGE, one row per visit
with baseline ``AGE``, ``Years_bl``, ``EXAMDATE``, ``DX``/``DX_bl`` and the clinical scores,
whose ``IMAGEUID`` names the visit's MRI. The synthetic cohort writes the same, so that the
tool's first step, ``neuro-ssl manifest import adni``, works on it as on a real export.

Clinical scores follow the planted disease severity and age, with the spread and the
missing values of ADNIMERGE (each score absent at a few visits, APOE4 for a few subjects):
MMSE (0-30, falls with severity), CDR-SB (0-18 in steps of 0.5), ADAS-Cog 13 (0-85),
APOE4 (number of e4 alleles, more frequent in AD) and PTEDUCAT (years of education).
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd

#: each site's field strength (ADNIMERGE ``FLDSTRENG``).
FIELD_STRENGTH = {"002": "3 Tesla MRI", "011": "1.5 Tesla MRI", "023": "3 Tesla MRI", "941": "1.5 Tesla MRI"}
#: share of visits at which each score is missing, as in ADNIMERGE.
MISSING_SHARE = {"MMSE": 0.04, "CDRSB": 0.04, "ADAS13": 0.07}
APOE4_MISSING_SHARE = 0.03
#: probability of 0, 1, 2 e4 alleles by baseline group.
APOE4_ALLELES = {"CN": (0.72, 0.25, 0.03), "MCI": (0.5, 0.4, 0.1), "AD": (0.35, 0.48, 0.17)}
FIRST_BASELINE = date(2010, 1, 4)
_PET_DESCRIPTION = "Coreg, Avg, Std Img and Vox Siz, Uniform Resolution"


def subject_draws(group: str, rng: np.random.Generator) -> dict:
    """What a subject keeps over the visits: education, APOE4, the baseline exam date."""
    alleles = rng.choice(3, p=APOE4_ALLELES[group])
    missing = rng.random() < APOE4_MISSING_SHARE
    education = float(np.clip(np.rint(rng.normal(16.3 if group == "CN" else 15.6, 2.8)), 6, 20))
    baseline = FIRST_BASELINE + timedelta(days=int(rng.integers(0, 5 * 365)))
    return {"apoe4": None if missing else int(alleles), "education_years": int(education), "baseline_date": baseline}


def clinical_scores(severity: float, age_years: float, rng: np.random.Generator) -> dict:
    """MMSE, CDRSB, ADAS13 at one visit (None where missing), from severity (0 CN, ~1 AD) and age."""
    mmse = 29.3 - 6.5 * severity - 0.03 * (age_years - 70.0) + rng.normal(0.0, 1.0)
    cdrsb = 4.5 * severity + abs(rng.normal(0.0, 0.25 + 0.6 * severity))
    adas13 = 9.0 + 21.0 * severity + 0.1 * (age_years - 70.0) + rng.normal(0.0, 4.0)
    scores = {
        "MMSE": int(np.clip(np.rint(mmse), 0, 30)),
        "CDRSB": float(np.clip(np.round(2 * cdrsb) / 2, 0.0, 18.0)),
        "ADAS13": float(np.clip(np.round(3 * adas13) / 3, 0.0, 85.0).round(2)),
    }
    for name, share in MISSING_SHARE.items():
        if rng.random() < share:
            scores[name] = None
    return scores


def visit_date(baseline: date, years: float) -> date:
    return baseline + timedelta(days=int(round(years * 365.25)))


def image_id(subject_index: int, visit: int, modality: str) -> int:
    """A unique Image Data ID per scan (the digits after ``I``)."""
    return 300000 + 100 * subject_index + 2 * visit + (0 if modality == "T1w" else 1)


def image_file_name(ptid: str, modality: str, when: date, image: int) -> str:
    """``ADNI_<PTID>_MR_MPRAGE_br_raw_<date>_S<series>_I<id>.nii.gz`` (PET: ``_PT_FDG_...``)."""
    kind = "MR_MPRAGE" if modality == "T1w" else "PT_FDG_Coreg_Avg_Std_Img_and_Vox_Siz_Uniform_Resolution"
    return f"ADNI_{ptid}_{kind}_br_raw_{when:%Y%m%d}120000000_S{image - 200000}_I{image}.nii.gz"


def adnimerge_table(manifest: pd.DataFrame) -> pd.DataFrame:
    """One row per visit with ADNIMERGE's columns; ``IMAGEUID`` is the visit's T1w image ID."""
    visits = manifest[manifest["modality"] == "T1w"]
    baseline_dates = visits.groupby("PTID")["EXAMDATE"].transform("min")
    return pd.DataFrame({
        "RID": visits["PTID"].str.slice(-4).astype(int),
        "PTID": visits["PTID"], "VISCODE": visits["VISCODE"], "SITE": visits["SITE"].astype(int),
        "COLPROT": "ADNI2", "ORIGPROT": "ADNI2", "EXAMDATE": visits["EXAMDATE"],
        "DX_bl": visits["DX_bl"], "AGE": visits["AGE"], "PTGENDER": visits["PTGENDER"],
        "PTEDUCAT": visits["PTEDUCAT"], "APOE4": visits["APOE4"], "MMSE": visits["MMSE"],
        "CDRSB": visits["CDRSB"], "ADAS13": visits["ADAS13"], "DX": visits["DX"],
        "EXAMDATE_bl": baseline_dates, "Years_bl": visits["Years_bl"],
        "Month_bl": (visits["Years_bl"] * 12).round(3), "FLDSTRENG": visits["FLDSTRENG"],
        "IMAGEUID": visits["Image Data ID"].str.slice(1).astype(int),
    })


def ida_table(manifest: pd.DataFrame) -> pd.DataFrame:
    """The IDA search export listing every image (MRI and PET) of the download."""
    group = manifest["DX_bl"]
    acquired = pd.to_datetime(manifest["EXAMDATE"])
    return pd.DataFrame({
        "Image Data ID": manifest["Image Data ID"], "Subject": manifest["PTID"], "Group": group,
        "Sex": manifest["PTGENDER"].str.slice(0, 1), "Age": (manifest["AGE"] + manifest["Years_bl"]).round(1),
        "Visit": manifest["VISCODE"],
        "Modality": np.where(manifest["modality"] == "T1w", "MRI", "PET"),
        "Description": np.where(manifest["modality"] == "T1w", "MPRAGE", _PET_DESCRIPTION),
        "Type": "Original", "Acq Date": [f"{d.month}/{d.day:02d}/{d.year}" for d in acquired],
        "Format": "NiFTI", "Downloaded": "",
    })


__all__ = ["FIELD_STRENGTH", "adnimerge_table", "clinical_scores", "ida_table", "image_file_name", "image_id",
           "subject_draws", "visit_date"]
