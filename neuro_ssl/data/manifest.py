"""The canonical manifest: one row per image, canonical column names, every dialect mapped in.

This module is the only place that knows the canonical columns and their aliases
(``docs/manifests.md`` lists them). ``read_manifest`` accepts CSV or TSV in any of the known
dialects (ADNIMERGE, IDA, ClinicaDL, BIDS participants, plain CSV) and returns a DataFrame with:

- canonical columns ``subject_id, session_id, image, modality, age, sex, diagnosis, site``
  (``image`` resolved to an absolute path; ``age`` float; identifiers strings);
- every other column kept, under its own name;
- the index holding the 1-based line number of each row in the source file (header = line 1),
  so every later message can name the row a user sees in a spreadsheet.

Reading never fails on bad *values* (``validate`` reports those, all at once); it fails with a
one-line :class:`~neuro_ssl.errors.ManifestError` only when the file cannot be a manifest at all.
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from neuro_ssl.errors import ManifestError

CANONICAL_COLUMNS = ("subject_id", "session_id", "image", "modality", "age", "sex", "diagnosis", "site")

#: aliases per canonical column, in order of preference (matched case-insensitively).
ALIASES: dict[str, tuple[str, ...]] = {
    "subject_id": ("subject_id", "PTID", "participant_id", "Subject", "subject"),
    "session_id": ("session_id", "VISCODE", "VISCODE2", "Visit", "session"),
    "image": ("image", "image_path", "path", "filename", "file", "t1w", "nifti"),
    "modality": ("modality",),
    "age": ("age",),
    "sex": ("sex", "PTGENDER", "gender"),
    "diagnosis": ("diagnosis", "DX", "Group", "dx"),
    "site": ("site", "SITE", "center"),
}
#: used only when none of the aliases above is present.
FALLBACK_ALIASES: dict[str, tuple[str, ...]] = {
    "subject_id": ("RID",),
    "diagnosis": ("DX_bl",),
}
#: strings read as missing, whatever the column.
MISSING_TOKENS = ("", "NA", "N/A", "n/a", "na", "NaN", "nan", "None", "null", "NULL", ".")

_SEX_CODES = {"m": "M", "male": "M", "man": "M", "f": "F", "female": "F", "woman": "F"}
_DIAGNOSIS_CODES = {
    "cn": "CN", "nl": "CN", "control": "CN", "hc": "CN", "healthy": "CN",
    "mci": "MCI", "emci": "EMCI", "lmci": "LMCI", "smc": "SMC",
    "ad": "AD", "dementia": "AD", "alzheimer's disease": "AD", "alzheimers": "AD",
}
#: a class name used with ``--classes`` matches these diagnosis values.
DIAGNOSIS_GROUPS: dict[str, frozenset[str]] = {
    "CN": frozenset({"CN"}),
    "MCI": frozenset({"MCI", "EMCI", "LMCI"}),
    "AD": frozenset({"AD"}),
}
_ID_LIKE = re.compile(r"(^|_)(id|ptid|rid|viscode2?|visit|session|subject|participant)($|_)|image.?data.?id", re.I)


def canonical_sex(value) -> object:
    """``Male``/``male``/``M`` -> ``M``; unknown codes are returned unchanged (validate flags them)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return np.nan
    return _SEX_CODES.get(str(value).strip().lower(), value)


def canonical_diagnosis(value) -> object:
    """``Dementia`` and ``AD`` mean the same; case and ADNI spellings are unified."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return np.nan
    return _DIAGNOSIS_CODES.get(str(value).strip().lower(), value)


def diagnosis_matches(value, class_name: str) -> bool:
    """True when a diagnosis value belongs to a class named with ``--classes`` (MCI takes EMCI/LMCI)."""
    cls = canonical_diagnosis(class_name)
    group = DIAGNOSIS_GROUPS.get(str(cls), frozenset({str(cls)}))
    return str(canonical_diagnosis(value)) in group


def sniff_delimiter(text: str, path: Path) -> str:
    """Tab for ``.tsv``; otherwise the delimiter among , TAB ; that splits the header best."""
    first = text.splitlines()[0] if text else ""
    if path.suffix.lower() == ".tsv" and "\t" in first:
        return "\t"
    counts = {d: first.count(d) for d in (",", "\t", ";")}
    best = max(counts, key=counts.get)
    return best if counts[best] > 0 else ","


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a CSV/TSV with every cell as a string (leading zeros kept), BOM stripped.

    The index is the 1-based line number in the file (header is line 1).
    """
    path = Path(path)
    if not path.exists():
        raise ManifestError(f"{path}: file not found")
    if path.is_dir():
        raise ManifestError(f"{path}: is a folder, expected a CSV or TSV file")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path}: not a UTF-8 text table (byte {exc.start} cannot be decoded)") from None
    except PermissionError:
        raise ManifestError(f"{path}: permission denied") from None
    if not text.strip():
        raise ManifestError(f"{path}: the file is empty")
    delimiter = sniff_delimiter(text, path)
    try:
        df = pd.read_csv(
            io.StringIO(text), sep=delimiter, dtype=str, keep_default_na=False,
            skipinitialspace=True, quoting=csv.QUOTE_MINIMAL,
        )
    except pd.errors.ParserError as exc:
        raise ManifestError(f"{path}: cannot be parsed as a table ({_one_line(exc)})") from None
    df.columns = [str(c).strip() for c in df.columns]
    df = df.apply(lambda col: col.str.strip())
    df = df.replace({tok: np.nan for tok in MISSING_TOKENS})
    df.index = pd.RangeIndex(2, 2 + len(df))
    df.attrs["source"] = str(path)
    df.attrs["delimiter"] = delimiter
    return df


def find_column(columns: Iterable[str], aliases: Iterable[str]) -> str | None:
    """The first column matching one of ``aliases`` (case-insensitive), in alias order."""
    lower = {c.lower(): c for c in columns}
    for alias in aliases:
        if alias.lower() in lower:
            return lower[alias.lower()]
    return None


def normalize_manifest(df: pd.DataFrame, base_dir: str | os.PathLike | None = None,
                       source: str | None = None) -> pd.DataFrame:
    """Map a raw table onto canonical columns; keep the other columns; resolve image paths.

    ADNIMERGE semantics: ``AGE`` is the baseline age; with ``Years_bl`` (or ``EXAMDATE`` and
    ``EXAMDATE_bl``) the age at the visit is computed and the baseline age kept as ``age_bl``.
    ``DX_bl`` becomes ``diagnosis`` only when no visit label exists, else ``diagnosis_bl``.
    """
    source = source or df.attrs.get("source", "manifest")
    out = df.copy()
    used: dict[str, str] = {}
    for canon, aliases in ALIASES.items():
        col = find_column(out.columns, aliases) or find_column(out.columns, FALLBACK_ALIASES.get(canon, ()))
        if col is not None:
            used[canon] = col
    if "subject_id" not in used:
        raise ManifestError(
            f"{source}: no subject column (looked for {', '.join(ALIASES['subject_id'] + FALLBACK_ALIASES['subject_id'])};"
            f" found {_describe_columns(out.columns)})"
        )
    if "image" not in used:
        raise ManifestError(
            f"{source}: no image column (looked for {', '.join(ALIASES['image'])}; found {_describe_columns(out.columns)})"
        )
    age_source = used.get("age")
    # Rename the chosen columns; anything else already named like a canonical column is kept aside.
    rename = {}
    for canon, col in used.items():
        if col != canon and canon in out.columns:
            rename[canon] = f"{canon}_original"
        rename[col] = canon
    out = out.rename(columns=rename)
    dx_bl = find_column(out.columns, ("DX_bl",))
    if dx_bl is not None and used.get("diagnosis") != dx_bl:
        out = out.rename(columns={dx_bl: "diagnosis_bl"})
        out["diagnosis_bl"] = out["diagnosis_bl"].map(canonical_diagnosis)

    if "session_id" not in out.columns:
        out["session_id"] = "bl"
    if "modality" not in out.columns:
        out["modality"] = "T1w"
    for canon in ("age", "sex", "diagnosis", "site"):
        if canon not in out.columns:
            out[canon] = pd.Series(np.nan, index=out.index, dtype=object)

    out["subject_id"] = out["subject_id"].astype("string").astype(object)
    out["session_id"] = out["session_id"].fillna("bl").astype(str)
    out["modality"] = out["modality"].fillna("T1w").astype(str)
    out["sex"] = out["sex"].map(canonical_sex)
    out["diagnosis"] = out["diagnosis"].map(canonical_diagnosis)
    age_numeric = pd.to_numeric(out["age"], errors="coerce").astype(float)
    if (age_numeric.isna() & out["age"].notna()).any():
        out["age_raw"] = out["age"]  # kept so validate can quote the values that are not numbers
    out["age"] = age_numeric
    if age_source == "AGE":
        _adni_age_at_visit(out)

    base = Path(base_dir) if base_dir is not None else Path(source).resolve().parent
    out["image"] = [
        str((base / p).resolve()) if isinstance(p, str) and not os.path.isabs(p) else p
        for p in out["image"]
    ]
    extras = [c for c in out.columns if c not in CANONICAL_COLUMNS]
    for col in extras:
        out[col] = _infer_column(out[col], col)
    out = out[list(CANONICAL_COLUMNS) + extras]
    out.attrs["source"] = str(source)
    return out


def read_manifest(path: str | os.PathLike) -> pd.DataFrame:
    """Read any known dialect of manifest as the canonical manifest (see module docstring)."""
    raw = read_table(path)
    if raw.empty:
        raise ManifestError(f"{path}: the manifest has a header but no rows")
    return normalize_manifest(raw, base_dir=Path(path).resolve().parent, source=str(path))


def write_manifest(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a canonical manifest atomically; image paths relative to the manifest's folder.

    TSV when the name ends in ``.tsv``. Relative paths keep a study folder movable.
    """
    from neuro_ssl._utils.files import write_csv

    path = Path(path)
    out = df.copy()
    folder = path.resolve().parent
    out["image"] = [_relative_to(p, folder) for p in out["image"]]
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    write_csv(path, out, sep=sep, index=False, na_rep="")
    return path


def _relative_to(p, folder: Path):
    if not isinstance(p, str) or not p:
        return p
    try:
        return os.path.relpath(p, folder)
    except ValueError:  # different drive on Windows
        return p


def _adni_age_at_visit(out: pd.DataFrame) -> None:
    """ADNIMERGE's AGE is baseline age: add Years_bl (or the exam-date gap) to get age at visit."""
    years = None
    ycol = find_column(out.columns, ("Years_bl",))
    if ycol is not None:
        years = pd.to_numeric(out[ycol], errors="coerce")
    else:
        d, dbl = find_column(out.columns, ("EXAMDATE",)), find_column(out.columns, ("EXAMDATE_bl",))
        if d is not None and dbl is not None:
            gap = pd.to_datetime(out[d], errors="coerce") - pd.to_datetime(out[dbl], errors="coerce")
            years = gap.dt.days / 365.25
    if years is None:
        return
    out["age_bl"] = out["age"]
    out["age"] = out["age"] + years.fillna(0.0)


def _infer_column(series: pd.Series, name: str) -> pd.Series:
    """Numbers become numbers, except identifiers and codes with leading zeros (``011`` stays)."""
    if not pd.api.types.is_string_dtype(series) or _ID_LIKE.search(name):
        return series
    values = series.dropna()
    if values.empty:
        return series
    as_text = values.astype(str)
    if as_text.str.match(r"^0\d").any():
        return series
    numeric = pd.to_numeric(as_text, errors="coerce")
    if numeric.notna().all():
        return pd.to_numeric(series, errors="coerce")
    return series


def _describe_columns(columns) -> str:
    cols = list(columns)
    if len(cols) == 1 and any(d in cols[0] for d in (";", "|", "\t", ",")):
        return f"one column {cols[0]!r}: is the delimiter something other than , TAB or ;?"
    shown = ", ".join(cols[:12]) + (" ..." if len(cols) > 12 else "")
    return f"columns {shown}" if cols else "no columns"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
