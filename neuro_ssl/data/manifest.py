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

from neuro_ssl.data.io import VOLUME_SUFFIXES
from neuro_ssl.errors import ManifestError

CANONICAL_COLUMNS = ("subject_id", "session_id", "image", "modality", "age", "sex", "diagnosis", "site")
#: canonical names of optional columns: taken from their aliases when present, never filled in.
OPTIONAL_COLUMNS = ("mask",)
#: canonical columns that hold text (pandas' string dtype, missing = NaN).
TEXT_COLUMNS = ("subject_id", "session_id", "image", "modality", "sex", "diagnosis", "site")

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
    "mask": ("mask", "brain_mask", "mask_path"),
}
#: used only when none of the aliases above is present.
FALLBACK_ALIASES: dict[str, tuple[str, ...]] = {
    "subject_id": ("RID",),
    "diagnosis": ("DX_bl",),
}
#: strings read as missing, whatever the column.
MISSING_TOKENS = ("", "NA", "N/A", "n/a", "na", "NaN", "nan", "None", "null", "NULL", ".")
_MISSING = frozenset(MISSING_TOKENS)

_SEX_CODES = {"m": "M", "male": "M", "man": "M", "f": "F", "female": "F", "woman": "F"}
_DIAGNOSIS_CODES = {
    "cn": "CN", "nl": "CN", "control": "CN", "hc": "CN", "healthy": "CN",
    "mci": "MCI", "emci": "EMCI", "lmci": "LMCI", "smc": "SMC",
    "ad": "AD", "dementia": "AD", "alzheimer's disease": "AD", "alzheimers": "AD",
}
#: values ``validate`` accepts without a warning (after canonicalisation).
KNOWN_SEXES = frozenset({"M", "F"})
KNOWN_DIAGNOSES = frozenset(_DIAGNOSIS_CODES.values())
#: a class name used with ``--classes`` matches these diagnosis values.
DIAGNOSIS_GROUPS: dict[str, frozenset[str]] = {
    "CN": frozenset({"CN"}),
    "MCI": frozenset({"MCI", "EMCI", "LMCI"}),
    "AD": frozenset({"AD"}),
}
_ID_WORDS = frozenset({
    "id", "uid", "rid", "ptid", "imageuid", "loniuid", "viscode", "viscode2", "visit", "session",
    "subject", "participant", "sub", "ses",
})


def _is_missing(value) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # arrays and other containers are values
        return False


def canonical_sex(value) -> object:
    """``Male``/``male``/``M`` -> ``M``; unknown codes are returned unchanged (validate flags them)."""
    if _is_missing(value):
        return np.nan
    return _SEX_CODES.get(str(value).strip().lower(), value)


def canonical_diagnosis(value) -> object:
    """``Dementia`` and ``AD`` mean the same; case and ADNI spellings are unified."""
    if _is_missing(value):
        return np.nan
    return _DIAGNOSIS_CODES.get(str(value).strip().lower(), value)


def diagnosis_matches(value, class_name: str) -> bool:
    """True when a diagnosis value belongs to a class named with ``--classes`` (MCI takes EMCI/LMCI)."""
    if _is_missing(value):
        return False
    cls = canonical_diagnosis(class_name)
    group = DIAGNOSIS_GROUPS.get(str(cls), frozenset({str(cls)}))
    return str(canonical_diagnosis(value)) in group


def is_identifier_column(name: str) -> bool:
    """Columns whose values are codes, never numbers: ``RID``, ``IMAGEUID``, ``Image Data ID``, ``Visit``."""
    text = str(name)
    if re.search(r"(ID|UID)$", text) or re.search(r"image.?data.?id", text, re.I):
        return True
    words = re.split(r"[^a-z0-9]+", re.sub(r"([a-z])([A-Z])", r"\1_\2", text).lower())
    return any(w in _ID_WORDS for w in words)


# ------------------------------------------------------------------------------ visit order

_BASELINE_WORDS = re.compile(r"^(bl|sc|scmri|baseline|screening|m0+|ses-bl|ses-baseline)$|\b(baseline|screening)\b")
_MONTHS = re.compile(r"(?:^|[^a-z])m(?:onth)?\s*0*(\d+)$")
_YEARS = re.compile(r"(?:^|[^a-z])y(?:ear)?\s*0*(\d+)$")
_ORDINAL = re.compile(r"^(?:visit|session|tp|v|t)?\s*0*(\d+)$")


def visit_years(session) -> float | None:
    """Years since baseline encoded in a visit code (``bl`` 0, ``m24``/``ses-M024`` 2, ``y3`` 3), else None."""
    if _is_missing(session):
        return None
    text = _strip_session_prefix(session)
    if _BASELINE_WORDS.search(text):
        return 0.0
    match = _MONTHS.search(text)
    if match:
        return int(match.group(1)) / 12.0
    match = _YEARS.search(text)
    return float(match.group(1)) if match else None


def visit_sort_key(session) -> tuple:
    """Orders the visits of one subject: month/year codes, then ordinals (``ses-01``), then text."""
    years = visit_years(session)
    if years is not None:
        return (0, years, "")
    text = _strip_session_prefix(session) if not _is_missing(session) else ""
    match = _ORDINAL.match(text)
    if match:
        return (1, float(match.group(1)), "")
    return (2, 0.0, text)


def _strip_session_prefix(session) -> str:
    text = str(session).strip().lower()
    return text[4:] if text.startswith("ses-") else text


# ------------------------------------------------------------------------------ reading

def sniff_delimiter(text: str, path: Path) -> str:
    """Tab for ``.tsv``; otherwise the delimiter among , TAB ; that splits the header best."""
    first = text.splitlines()[0] if text else ""
    if Path(path).suffix.lower() == ".tsv" and "\t" in first:
        return "\t"
    counts = {d: first.count(d) for d in (",", "\t", ";")}
    best = max(counts, key=counts.get)
    return best if counts[best] > 0 else ","


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a CSV/TSV with every cell as a string (leading zeros kept), BOM stripped.

    Cells are stripped of surrounding spaces and the ``MISSING_TOKENS`` become NaN. The index
    is the 1-based line number in the file where each row starts (header is line 1; blank
    lines and quoted line breaks are counted, so the number is the one an editor shows).
    """
    path = Path(path)
    text = _read_text(path)
    delimiter = sniff_delimiter(text, path)
    try:
        header, rows, lines = _parse_records(text, delimiter, path)
    except csv.Error as exc:
        raise ManifestError(f"{path}: cannot be parsed as a table ({_one_line(exc)})") from None
    if len(header) == 1 and "|" in header[0]:
        raise ManifestError(
            f"{path}: the header is one column {header[0]!r}: the delimiter looks like '|';"
            " use comma, tab or semicolon"
        )
    columns = _unique_names(header)
    index = pd.Index(lines, dtype="int64")
    df = pd.DataFrame({col: _text([row[i] for row in rows], index) for i, col in enumerate(columns)}, index=index)
    df.attrs["source"] = str(path)
    df.attrs["delimiter"] = delimiter
    return df


def _read_text(path: Path) -> str:
    if not path.exists():
        raise ManifestError(f"{path}: file not found")
    if path.is_dir():
        raise ManifestError(f"{path}: is a folder, expected a CSV or TSV file")
    try:
        raw = path.read_bytes()
    except PermissionError:
        raise ManifestError(f"{path}: permission denied") from None
    if raw.startswith(b"PK\x03\x04"):
        raise ManifestError(f"{path}: is a zip or Excel workbook; save it as CSV (comma) or TSV first")
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = raw.decode("utf-16")
    else:
        if b"\x00" in raw[:4096]:
            raise ManifestError(f"{path}: binary file, not a CSV or TSV table")
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = raw.decode("cp1252", errors="replace")  # Excel on Windows; never fails
    if not text.strip():
        raise ManifestError(f"{path}: the file is empty")
    return text


def _parse_records(text: str, delimiter: str, path: Path) -> tuple[list[str], list[list], list[int]]:
    """(header, rows of stripped cells with missing tokens as None, line number of each row)."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, skipinitialspace=True)
    header: list[str] | None = None
    rows, lines = [], []
    previous_end = 0
    for record in reader:
        start, previous_end = previous_end + 1, reader.line_num
        if not record or all(not cell.strip() for cell in record):
            continue
        cells = [cell.strip() for cell in record]
        if header is None:
            header = cells
            continue
        if len(cells) > len(header):
            if any(cells[len(header):]):
                raise ManifestError(
                    f"{path} row {start}: {len(cells)} fields but the header has {len(header)}"
                    " (an unquoted delimiter inside a value?)"
                )
            cells = cells[: len(header)]
        cells += [""] * (len(header) - len(cells))
        rows.append([None if c in _MISSING else c for c in cells])
        lines.append(start)
    if header is None:
        raise ManifestError(f"{path}: the file is empty")
    return header, rows, lines


def _unique_names(header: list[str]) -> list[str]:
    """Blank header cells become ``column_N``; repeated names get ``.1``, ``.2`` (as pandas does)."""
    names, seen = [], {}
    for i, name in enumerate(header, start=1):
        name = name or f"column_{i}"
        if name in seen:
            seen[name] += 1
            name = f"{name}.{seen[name]}"
        else:
            seen[name] = 0
        names.append(name)
    return names


def _text(values, index=None) -> pd.Series:
    """A text series in pandas' string dtype with NaN for missing (object before pandas 3).

    ``values`` may be a Series (its index is kept) or a list (``index`` is used).
    """
    if isinstance(values, pd.Series):
        index = values.index if index is None else index
        values = values.tolist()
    series = pd.Series(values, index=index, dtype=object)
    series = series.where(series.notna(), np.nan)
    return series.astype("str") if _PANDAS_MAJOR >= 3 else series


_PANDAS_MAJOR = int(pd.__version__.split(".")[0])


def find_column(columns: Iterable[str], aliases: Iterable[str]) -> str | None:
    """The column matching one of ``aliases``, in alias order: exact name first, then any case."""
    columns = list(columns)
    for alias in aliases:
        if alias in columns:
            return alias
        for col in columns:
            if col.lower() == alias.lower():
                return col
    return None


# --------------------------------------------------------------------------- normalizing

def normalize_manifest(df: pd.DataFrame, base_dir: str | os.PathLike | None = None,
                       source: str | None = None) -> pd.DataFrame:
    """Map a raw table onto canonical columns; keep the other columns; resolve image paths.

    ADNIMERGE semantics: ``AGE`` is the baseline age; with ``Years_bl`` (or ``EXAMDATE`` and
    ``EXAMDATE_bl``, or else a month code in ``VISCODE``) the age at the visit is computed and
    the baseline age kept as ``age_bl``. ``DX_bl`` becomes ``diagnosis`` only when no visit
    label exists, else ``diagnosis_bl``.
    """
    source = source or df.attrs.get("source", "manifest")
    used = _choose_columns(df, source)
    out = _rename_to_canonical(df, used)
    _fill_defaults(out)
    for col in ("subject_id", "session_id", "modality", "site"):
        out[col] = _text(out[col])
    out["sex"] = _text([canonical_sex(v) for v in out["sex"]], out.index)
    out["diagnosis"] = _text([canonical_diagnosis(v) for v in out["diagnosis"]], out.index)
    _parse_age(out)
    if used.get("age") == "AGE":
        _adni_age_at_visit(out)
    base = Path(base_dir) if base_dir is not None else Path(absolute_path(source)).parent
    for col in path_columns(out):
        out[col] = _text([_absolute(p, base) for p in out[col]], out.index)
    extras = [c for c in out.columns if c not in CANONICAL_COLUMNS]
    for col in extras:
        out[col] = _infer_column(out[col], col)
    out = out[list(CANONICAL_COLUMNS) + extras]
    out.attrs["source"] = str(source)
    return out


def _choose_columns(df: pd.DataFrame, source) -> dict[str, str]:
    used: dict[str, str] = {}
    for canon, aliases in ALIASES.items():
        col = find_column(df.columns, aliases) or find_column(df.columns, FALLBACK_ALIASES.get(canon, ()))
        if col is not None:
            used[canon] = col
    for canon in ("subject_id", "image"):
        if canon not in used:
            looked = ALIASES[canon] + FALLBACK_ALIASES.get(canon, ())
            raise ManifestError(
                f"{source}: no {canon.split('_')[0]} column (looked for {', '.join(looked)};"
                f" found {_describe_columns(df.columns)})"
            )
    return used


def _rename_to_canonical(df: pd.DataFrame, used: dict[str, str]) -> pd.DataFrame:
    """Chosen columns take canonical names; a column already holding a canonical name moves aside."""
    rename = {}
    for canon, col in used.items():
        if col != canon and canon in df.columns:
            rename[canon] = f"{canon}_original"
        rename[col] = canon
    out = df.rename(columns=rename)
    dx_bl = find_column(out.columns, ("DX_bl",))
    if dx_bl is not None and used.get("diagnosis") != dx_bl:
        out = out.rename(columns={dx_bl: "diagnosis_bl"})
        out["diagnosis_bl"] = _text([canonical_diagnosis(v) for v in out["diagnosis_bl"]], out.index)
    return out


def _fill_defaults(out: pd.DataFrame) -> None:
    if "session_id" not in out.columns:
        out["session_id"] = "bl"
    out["session_id"] = out["session_id"].fillna("bl")
    if "modality" not in out.columns:
        out["modality"] = "T1w"
    out["modality"] = out["modality"].fillna("T1w")
    for canon in ("age", "sex", "diagnosis", "site"):
        if canon not in out.columns:
            out[canon] = pd.Series(np.nan, index=out.index, dtype=object)


def _parse_age(out: pd.DataFrame) -> None:
    """``age`` becomes float; values that are not numbers are kept in ``age_raw`` for validate."""
    raw = out["age"]
    text = raw.where(raw.isna(), raw.astype(str).str.replace(r"^(-?\d+),(\d+)$", r"\1.\2", regex=True))
    numeric = pd.to_numeric(text, errors="coerce").astype(float)
    bad = numeric.isna() & raw.notna()
    if bad.any():
        out["age_raw"] = _text([str(v) if b else np.nan for v, b in zip(raw, bad)], out.index)
    out["age"] = numeric


def _absolute(p, base: Path):
    if _is_missing(p) or not str(p):
        return np.nan
    return absolute_path(p, base)


def absolute_path(path: str | os.PathLike, base: str | os.PathLike | None = None) -> str:
    """``path`` made absolute; a relative one starts from ``base`` (itself made absolute; default: the
    working directory). ``~`` is expanded.

    ``..`` is resolved by the file system (``os.path.realpath``), not by text: after a symlink,
    ``link/..`` is the folder above the link's TARGET, which is where the OS goes, while textual
    ``normpath`` would give the folder holding the link. Paths without ``..`` are only cleaned of
    ``.`` and doubled slashes, so symlinks stay as the user spelled them.
    """
    text = os.path.expanduser(str(path))
    if not os.path.isabs(text):
        text = os.path.join(absolute_path(base) if base is not None else os.getcwd(), text)
    return os.path.realpath(text) if ".." in Path(text).parts else os.path.normpath(text)


def read_manifest(path: str | os.PathLike) -> pd.DataFrame:
    """Read any known dialect of manifest as the canonical manifest (see module docstring)."""
    raw = read_table(path)
    if raw.empty:
        raise ManifestError(f"{path}: the manifest has a header but no rows")
    return normalize_manifest(raw, base_dir=Path(absolute_path(path)).parent, source=str(path))


def write_manifest(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a canonical manifest atomically; image paths relative to the manifest's folder.

    TSV when the name ends in ``.tsv``. Relative paths keep a study folder movable.
    """
    from neuro_ssl._utils.files import write_csv

    path = Path(path)
    out = df.copy()
    folder = Path(absolute_path(path)).parent
    for col in path_columns(out):
        out[col] = [_relative_to(p, folder) for p in out[col]]
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    write_csv(path, out, sep=sep, index=False, na_rep="")
    return path




def path_columns(df: pd.DataFrame) -> list[str]:
    """``image`` plus every column whose values are all volume file names (e.g. ``truth_region``).

    These are resolved against the manifest's folder on reading and written relative to the
    new manifest's folder, so a manifest copied into ``splits/`` still finds its files.
    """
    cols = ["image"] if "image" in df.columns else []
    for col in df.columns:
        if col == "image" or not pd.api.types.is_string_dtype(df[col]):
            continue
        values = df[col].dropna().astype(str)
        if len(values) and values.str.lower().str.endswith(VOLUME_SUFFIXES).all():
            cols.append(col)
    return cols


def _relative_to(p, folder: Path):
    if _is_missing(p) or not str(p):
        return p
    try:
        return os.path.relpath(str(p), folder)
    except ValueError:  # different drive on Windows
        return p


def _adni_age_at_visit(out: pd.DataFrame) -> None:
    """ADNIMERGE's AGE is baseline age: add Years_bl (else the exam-date gap, else VISCODE's months).

    Only a table that looks like ADNIMERGE (a ``Years_bl`` or ``EXAMDATE``/``EXAMDATE_bl``
    column) is treated so; elsewhere ``AGE`` is taken as the age at the visit.
    """
    ycol = find_column(out.columns, ("Years_bl",))
    d, dbl = find_column(out.columns, ("EXAMDATE",)), find_column(out.columns, ("EXAMDATE_bl",))
    if ycol is None and (d is None or dbl is None):
        return
    years = pd.Series(np.nan, index=out.index, dtype=float)
    if ycol is not None:
        years = pd.to_numeric(out[ycol], errors="coerce").astype(float)
    if d is not None and dbl is not None:
        gap = pd.to_datetime(out[d], errors="coerce") - pd.to_datetime(out[dbl], errors="coerce")
        years = years.fillna(gap.dt.days / 365.25)
    from_visit = pd.Series([visit_years(s) for s in out["session_id"]], index=out.index, dtype=float)
    out["age_bl"] = out["age"]
    out["age"] = out["age"] + years.fillna(from_visit).fillna(0.0)


def _infer_column(series: pd.Series, name: str) -> pd.Series:
    """Numbers become numbers, except identifiers and codes with leading zeros (``011`` stays)."""
    if not pd.api.types.is_string_dtype(series) or is_identifier_column(name):
        return series
    values = series.dropna()
    if values.empty:
        return series
    as_text = values.astype(str)
    if as_text.str.match(r"^[-+]?0\d").any():
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
