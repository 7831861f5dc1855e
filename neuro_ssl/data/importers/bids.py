"""BIDS: ``sub-*/[ses-*/]anat/*_T1w.nii[.gz]`` and ``pet/*_pet.nii[.gz]`` plus participants.tsv.

Demographics come from ``participants.tsv`` (``participant_id``, ``age``, ``sex``, ``group`` ...)
and, when a subject has one, from ``sub-X/sub-X_sessions.tsv``, whose values (such as the age at
each session) win over the participant-level ones. Datasets without sessions are supported
(their ``session_id`` becomes ``bl``). PET modality comes from the ``trc-`` entity.

Two choices are explicit and reported with a count:
- ``session_age``: a subject with several sessions whose ``sessions.tsv`` gives no age for a
  session (``n/a``, no age column, no file) takes ``participants.tsv``'s single age for it
  (``participants``, the default: one value for every session, usually the age at the first)
  or is left without one (``missing``);
- ``run``: several runs of one suffix in a session (``run-1``, ``run-2``) keep the ``first``
  (lowest run number, the default), the ``last``, or ``all`` of them; the ``run`` column is kept
  and ``validate`` counts (subject, session, modality, run) as the key.

Brain masks: a BIDS-derivatives mask of an image (``<entities>_desc-brain_mask.nii[.gz]``, the
image's entities without its suffix, with no ``space-`` entity or ``space-T1w`` / ``space-orig``,
i.e. in the scan's own space) found beside the image or under ``derivatives/*/sub-X/[ses-Y/]anat``
fills the manifest's ``mask`` column; preprocessing then zeroes everything outside it
(docs/preprocessing.md). Masks in a template space (``space-MNI152...``) are never taken.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from neuro_ssl.data.importers import ImportResult, absolute_path, first_few
from neuro_ssl.data.importers.clinicadl import modality_from_filename
from neuro_ssl.data.manifest import find_column, normalize_manifest, read_table
from neuro_ssl.errors import ConfigError, ManifestError

DEFAULT_SUFFIXES = ("T1w", "pet")
_ENTITIES = ("acq", "trc", "rec", "run")
SESSION_AGE = ("participants", "missing")
RUNS = ("first", "last", "all")


def import_bids(root: str | Path, suffixes: tuple[str, ...] = DEFAULT_SUFFIXES, session_age: str = "participants",
                run: str = "first") -> ImportResult:
    """One manifest row per image of the given BIDS suffixes (``T1w``, ``pet``, ``FLAIR`` ...);
    ``session_age`` and ``run`` as in the module docstring."""
    if session_age not in SESSION_AGE or run not in RUNS:
        raise ConfigError(f"session_age must be one of {', '.join(SESSION_AGE)} and run one of {', '.join(RUNS)}")
    root = Path(absolute_path(root))
    if not root.is_dir():
        raise ManifestError(f"{root}: not a folder (--root expects a BIDS dataset)")
    subjects = sorted(p for p in root.glob("sub-*") if p.is_dir())
    if not subjects:
        raise ManifestError(f"{root}: no sub-* folders: not a BIDS dataset")
    participants = _participants(root)
    notes: list[str] = []
    records, borrowed_ages = [], 0
    for subject_dir in subjects:
        sessions = _sessions(subject_dir)
        session_dirs = sorted(p for p in subject_dir.glob("ses-*") if p.is_dir())
        for session_dir in session_dirs or [subject_dir]:
            session = session_dir.name if session_dir != subject_dir else None
            own = sessions.get(session, {})
            record = {**participants.get(subject_dir.name, {}), **own}
            if len(session_dirs) > 1 and _age_key(record) and not _age_key(own):
                borrowed_ages += 1
                if session_age == "missing":
                    del record[_age_key(record)]
            for image in _images(session_dir, suffixes):
                mask = _brain_mask(image, root, subject_dir.name, session)
                records.append({**record, "participant_id": subject_dir.name, "session_id": session,
                                "image": str(image), "modality": modality_from_filename(image),
                                **_entities(image.name), **({"mask": str(mask)} if mask else {})})
    if not records:
        raise ManifestError(f"{root}: no images with suffix {', '.join(suffixes)} under sub-*/[ses-*/]anat|pet")
    if borrowed_ages:
        what = ("took participants.tsv's age, the same for every session of a subject; --session-age missing "
                "leaves them empty" if session_age == "participants" else "left without an age (--session-age missing)")
        notes.append(f"{borrowed_ages} sessions of subjects with several sessions have no age in their "
                     f"sessions.tsv (n/a, no age column or no file): {what}")
    records = _choose_runs(records, run, notes)
    masked = sum("mask" in r for r in records)
    if masked:
        notes.append(f"{masked} of {len(records)} images have a desc-brain_mask in their own space (mask column); "
                     f"the others get the automatic brain mask")
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


def _age_key(values: dict) -> str | None:
    return next((k for k in values if str(k).lower() == "age"), None)


def _choose_runs(records: list[dict], rule: str, notes: list[str]) -> list[dict]:
    """Keep one run per (subject, session, modality) (``first``/``last`` run number) or ``all``."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["participant_id"], r["session_id"], r["modality"]), []).append(r)
    several = [g for g in groups.values() if len({r.get("run") for r in g}) > 1]
    if not several:
        return records
    if rule == "all":
        notes.append(f"{len(several)} sessions have several runs of one modality: all kept, told apart by the run column")
        return records
    dropped = set()
    for group in several:
        ordered = sorted(group, key=lambda r: _run_number(r.get("run")))
        keep = ordered[0] if rule == "first" else ordered[-1]
        dropped.update(id(r) for r in group if r is not keep)
    notes.append(f"{len(several)} sessions have several runs of one modality: kept the {rule} run of each, "
                 f"{len(dropped)} images left out (--run first|last|all)")
    return [r for r in records if id(r) not in dropped]


def _run_number(label) -> tuple:
    """``run-2`` before ``run-10``; a file without a run label first."""
    text = "" if label is None else str(label)
    return (0, -1, "") if not text else ((1, int(text), "") if text.isdigit() else (2, 0, text))


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


#: ``space-`` labels that mean "the scan's own space" (BIDS derivatives; fMRIPrep's T1w space)
_NATIVE_SPACES = ("T1w", "orig", "individual")


def _brain_mask(image: Path, root: Path, subject: str, session: str | None) -> Path | None:
    """The image's ``desc-brain_mask`` in its own space, beside it or in ``derivatives/*/``; else None."""
    stem = re.sub(r"_[A-Za-z0-9]+\.nii(\.gz)?$", "", image.name)  # drop the suffix: sub-01_ses-bl_run-1
    pattern = re.compile(rf"^{re.escape(stem)}(_space-({'|'.join(_NATIVE_SPACES)}))?_desc-brain_mask\.nii(\.gz)?$")
    relative = Path(subject, *([session] if session else []), image.parent.name)
    folders = [image.parent] + sorted(p / relative for p in (root / "derivatives").glob("*") if p.is_dir())
    for folder in folders:
        if folder.is_dir():
            found = sorted(p for p in folder.iterdir() if pattern.match(p.name))
            if found:
                return found[0]
    return None


def _entities(name: str) -> dict[str, str]:
    """``acq``, ``trc``, ``rec`` and ``run`` labels in a BIDS file name, when present."""
    return {key: m.group(1) for key in _ENTITIES if (m := re.search(rf"_{key}-([A-Za-z0-9]+)", name))}


def _sub(value) -> str:
    text = str(value).strip()
    return text if text.startswith("sub-") else f"sub-{text}"


def _ses(value) -> str:
    text = str(value).strip()
    return text if text.startswith("ses-") else f"ses-{text}"
