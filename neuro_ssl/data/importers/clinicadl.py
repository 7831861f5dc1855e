"""ClinicaDL: a participant/session TSV joined to the images of a CAPS folder.

CAPS keeps one folder per participant and session:
``CAPS/subjects/sub-X/ses-M000/t1_linear/sub-X_ses-M000_..._T1w.nii.gz``. Each TSV row
(``participant_id``, ``session_id``, plus labels such as ``diagnosis``, ``age``, ``sex``) is
joined to the file its own folder holds; rows without a file and files without a row are
reported. A TSV without ``session_id`` takes every session found in CAPS.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from neuro_ssl.data.importers import ImportResult, absolute_path, first_few, tracer_modality
from neuro_ssl.data.manifest import find_column, normalize_manifest, read_table
from neuro_ssl.errors import ManifestError

#: ClinicaDL t1-linear output; when both the cropped and the full image exist, the cropped wins.
DEFAULT_PATTERN = "t1_linear/*_T1w.nii*"


def import_clinicadl(tsv_path: str | Path, caps_dir: str | Path, pattern: str = DEFAULT_PATTERN,
                     modality: str | None = None) -> ImportResult:
    """One manifest row per TSV row whose CAPS session folder holds one file matching ``pattern``."""
    tsv_path, caps_dir = Path(tsv_path), Path(absolute_path(caps_dir))
    subjects_dir = caps_dir / "subjects"
    if not subjects_dir.is_dir():
        raise ManifestError(f"{caps_dir}: not a CAPS folder (no subjects/ inside)")
    table = read_table(tsv_path)
    sub_col = find_column(table.columns, ("participant_id", "subject_id", "subject"))
    if sub_col is None:
        raise ManifestError(f"{tsv_path}: no participant_id column (found {', '.join(table.columns)})")
    ses_col = find_column(table.columns, ("session_id", "session"))
    table = _expand_sessions(table, sub_col, ses_col, subjects_dir) if ses_col is None else table
    ses_col = ses_col or "session_id"

    notes, images, keep, missing, ambiguous = [], [], [], [], []
    covered: set[Path] = set()
    for position, (line, row) in enumerate(table.iterrows()):
        if pd.isna(row[sub_col]) or pd.isna(row[ses_col]):
            missing.append(f"row {line} (no {sub_col if pd.isna(row[sub_col]) else ses_col})")
            continue
        session_dir = subjects_dir / _prefixed(row[sub_col], "sub-") / _prefixed(row[ses_col], "ses-")
        covered.add(session_dir)
        found = _pick(sorted(session_dir.glob(pattern)))
        where = f"row {line} ({session_dir.parent.name} {session_dir.name})"
        if found is None:
            missing.append(where)
        elif isinstance(found, list):
            ambiguous.append(f"{where}: {len(found)} files")
        else:
            images.append(str(found))
            keep.append(position)
    if missing:
        notes.append(f"{len(missing)} TSV rows have no file matching '{pattern}' in CAPS: {first_few(missing)}")
    if ambiguous:
        notes.append(f"{len(ambiguous)} TSV rows match several files (give --pattern): {first_few(ambiguous)}")
    unlisted = sorted(p for p in subjects_dir.glob(f"*/*/{pattern}") if _session_dir(p, subjects_dir) not in covered)
    if unlisted:
        notes.append(f"{len(unlisted)} CAPS files matching '{pattern}' have no TSV row: {first_few(unlisted)}")
    if not keep:
        raise ManifestError(f"no TSV row of {tsv_path} matched a file '{pattern}' under {subjects_dir}")
    subset = table.iloc[keep].copy()
    subset["image"] = images
    manifest = normalize_manifest(subset, base_dir=caps_dir, source=str(tsv_path))
    manifest["modality"] = [modality or modality_from_filename(p) for p in images]
    return ImportResult(manifest, notes, len(unlisted), len(missing) + len(ambiguous))


def modality_from_filename(path: str | Path) -> str:
    """BIDS-style names: ``..._T1w.nii.gz`` -> T1w, ``..._trc-18FFDG_..._pet.nii.gz`` -> FDG."""
    name = Path(path).name
    tracer = re.search(r"_trc-([A-Za-z0-9]+)", name)
    if re.search(r"_pet(\.|_)", name, re.I) or tracer:
        return tracer_modality(tracer.group(1) if tracer else name)
    suffix = re.search(r"_([A-Za-z0-9]+)\.(nii|mgz|nrrd|mha)", name)
    return suffix.group(1) if suffix else "T1w"


def _pick(found: list[Path]):
    """The single match, the cropped one among a cropped/full pair, a list when ambiguous, or None."""
    if not found:
        return None
    if len(found) == 1:
        return found[0]
    cropped = [f for f in found if "desc-Crop" in f.name]
    return cropped[0] if len(cropped) == 1 else found


def _session_dir(path: Path, subjects_dir: Path) -> Path:
    parts = path.relative_to(subjects_dir).parts
    return subjects_dir / parts[0] / parts[1]


def _prefixed(value, prefix: str) -> str:
    text = str(value).strip()
    return text if text.startswith(prefix) else prefix + text


def _expand_sessions(table: pd.DataFrame, sub_col: str, ses_col, subjects_dir: Path) -> pd.DataFrame:
    """A participants-only TSV: one row per session folder found in CAPS (same line number)."""
    rows = []
    for line, row in table.iterrows():
        sessions = sorted(p.name for p in (subjects_dir / _prefixed(row[sub_col], "sub-")).glob("ses-*") if p.is_dir())
        for ses in sessions or ["ses-missing"]:
            rows.append((line, {**row.to_dict(), "session_id": ses}))
    out = pd.DataFrame([r for _, r in rows], index=pd.Index([line for line, _ in rows], dtype="int64"))
    out.attrs.update(table.attrs)
    return out
