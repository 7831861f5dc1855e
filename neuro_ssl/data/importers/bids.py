"""BIDS: ``sub-*/[ses-*/]anat/*_T1w.nii[.gz]`` and ``pet/*_pet.nii[.gz]`` plus participants.tsv.

Demographics come from ``participants.tsv`` (``participant_id``, ``age``, ``sex``, ``group`` ...)
and, when a subject has one, from ``sub-X/sub-X_sessions.tsv``, whose values (such as the age at
each session) win over the participant-level ones. Datasets without sessions are supported
(their ``session_id`` becomes ``bl``). PET modality comes from the ``trc-`` entity.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from neuro_ssl.data.importers import ImportResult, first_few
from neuro_ssl.data.importers.clinicadl import modality_from_filename
from neuro_ssl.data.manifest import find_column, normalize_manifest, read_table
from neuro_ssl.errors import ManifestError

DEFAULT_SUFFIXES = ("T1w", "pet")
_ENTITIES = ("acq", "trc", "rec", "run")


def import_bids(root: str | Path, suffixes: tuple[str, ...] = DEFAULT_SUFFIXES) -> ImportResult:
    """One manifest row per image of the given BIDS suffixes (``T1w``, ``pet``, ``FLAIR`` ...)."""
    root = Path(root)
    if not root.is_dir():
        raise ManifestError(f"{root}: not a folder (--root expects a BIDS dataset)")
    subjects = sorted(p for p in root.glob("sub-*") if p.is_dir())
    if not subjects:
        raise ManifestError(f"{root}: no sub-* folders: not a BIDS dataset")
    participants = _participants(root)
    notes: list[str] = []
    records = []
    for subject_dir in subjects:
        sessions = _sessions(subject_dir)
        for session_dir in sorted(p for p in subject_dir.glob("ses-*") if p.is_dir()) or [subject_dir]:
            session = session_dir.name if session_dir != subject_dir else None
            for image in _images(session_dir, suffixes):
                record = {**participants.get(subject_dir.name, {}), **sessions.get(session, {})}
                record.update(participant_id=subject_dir.name, session_id=session, image=str(image),
                              modality=modality_from_filename(image), **_entities(image.name))
                records.append(record)
    if not records:
        raise ManifestError(f"{root}: no images with suffix {', '.join(suffixes)} under sub-*/[ses-*/]anat|pet")
    imaged = {r["participant_id"] for r in records}
    without_images = sorted(set(participants) - imaged)
    not_listed = sorted(imaged - set(participants)) if participants else []
    if without_images:
        notes.append(f"{len(without_images)} participants in participants.tsv have no image: {first_few(without_images)}")
    if not_listed:
        notes.append(f"{len(not_listed)} subjects with images are not in participants.tsv (no demographics): {first_few(not_listed)}")
    if not participants:
        notes.append(f"{root}: no participants.tsv: no demographics")
    raw = pd.DataFrame.from_records(records).astype(object)
    raw = raw.where(raw.notna(), np.nan)
    raw.index = pd.RangeIndex(1, len(raw) + 1)
    manifest = normalize_manifest(raw, base_dir=root, source=str(root / "participants.tsv"))
    return ImportResult(manifest, notes, 0, len(without_images))


def _participants(root: Path) -> dict[str, dict]:
    path = root / "participants.tsv"
    if not path.exists():
        return {}
    table = read_table(path)
    col = find_column(table.columns, ("participant_id",))
    if col is None:
        raise ManifestError(f"{path}: no participant_id column (found {', '.join(table.columns)})")
    return {_sub(v): _values(row, col) for v, (_, row) in zip(table[col], table.iterrows()) if not pd.isna(v)}


def _sessions(subject_dir: Path) -> dict[str | None, dict]:
    path = subject_dir / f"{subject_dir.name}_sessions.tsv"
    if not path.exists():
        return {}
    table = read_table(path)
    col = find_column(table.columns, ("session_id",))
    if col is None:
        raise ManifestError(f"{path}: no session_id column (found {', '.join(table.columns)})")
    return {_ses(v): _values(row, col) for v, (_, row) in zip(table[col], table.iterrows()) if not pd.isna(v)}


def _values(row: pd.Series, id_col: str) -> dict:
    return {k: v for k, v in row.items() if k != id_col and not pd.isna(v)}


def _images(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    found = []
    for suffix in suffixes:
        datatype = "pet" if suffix.lower() == "pet" else "anat"
        found += [p for p in (folder / datatype).glob(f"*_{suffix}.nii*") if re.search(r"\.nii(\.gz)?$", p.name)]
    return sorted(found)


def _entities(name: str) -> dict[str, str]:
    """``acq``, ``trc``, ``rec`` and ``run`` labels in a BIDS file name, when present."""
    return {key: m.group(1) for key in _ENTITIES if (m := re.search(rf"_{key}-([A-Za-z0-9]+)", name))}


def _sub(value) -> str:
    text = str(value).strip()
    return text if text.startswith("sub-") else f"sub-{text}"


def _ses(value) -> str:
    text = str(value).strip()
    return text if text.startswith("ses-") else f"ses-{text}"
