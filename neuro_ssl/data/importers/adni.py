"""ADNI: image files from an IDA download matched to an IDA or ADNIMERGE table by Image Data ID.

Files carry their ID in the name (``ADNI_002_S_0295_MR_MPRAGE_..._S13408_I45108.nii``) or in a
folder (``ADNI/002_S_0295/MPRAGE/2006-04-18_08_20_30.0/I45108/*.nii``). The table names it in
``Image Data ID`` (IDA, ``I45108``) or ``IMAGEUID`` (ADNIMERGE, ``45108``: no ``I``). Matching is
by that number only; every file and row left over is reported.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from neuro_ssl.data.importers import ImportResult, absolute_path, find_volumes, first_few, tracer_modality
from neuro_ssl.data.io import volume_suffix
from neuro_ssl.data.manifest import find_column, normalize_manifest, read_table
from neuro_ssl.errors import ManifestError

#: table columns holding the image ID, in order of preference (any case).
IMAGE_ID_COLUMNS = (
    "Image Data ID", "IMAGEUID", "ImageID", "Image ID", "Image_Data_ID", "ImageDataID",
    "image_id", "image_uid", "LONIUID",
)
_NAME_ID = re.compile(r"(?:^|[_\-.])I(\d+)(?=$|[_\-.])")
_FOLDER_ID = re.compile(r"^I(\d+)$")


def import_adni(images_dir: str | Path, csv_path: str | Path) -> ImportResult:
    """Join every image under ``images_dir`` to its row of ``csv_path`` by Image Data ID."""
    images_dir, csv_path = Path(absolute_path(images_dir)), Path(csv_path)
    if not images_dir.is_dir():
        raise ManifestError(f"{images_dir}: not a folder (--images expects the ADNI download folder)")
    table = read_table(csv_path)
    id_column = find_column(table.columns, IMAGE_ID_COLUMNS)
    if id_column is None:
        raise ManifestError(
            f"{csv_path}: no image ID column (looked for {', '.join(IMAGE_ID_COLUMNS)}); "
            "the IDA search export has 'Image Data ID', ADNIMERGE has 'IMAGEUID'"
        )
    notes: list[str] = []
    files = _files_by_id(images_dir, notes)
    rows = _rows_by_id(table, id_column, csv_path, notes)
    matched = [line for image_id, line in rows.items() if image_id in files]
    unmatched_rows = [(line, image_id) for image_id, line in rows.items() if image_id not in files]
    unmatched_files = [path for image_id, path in files.items() if image_id not in rows]
    if not matched:
        raise ManifestError(
            f"no image under {images_dir} matched an image ID in {csv_path} ({len(files)} files with IDs"
            f" such as {first_few(['I' + i for i in list(files)[:3]])}; the table's IDs look like"
            f" {first_few(['I' + i for i in list(rows)[:3]])})"
        )
    if unmatched_files:
        notes.append(f"{len(unmatched_files)} image files match no table row: {first_few(unmatched_files)}")
    if unmatched_rows:
        shown = [f"row {line} (I{image_id})" for line, image_id in sorted(unmatched_rows)]
        notes.append(f"{len(unmatched_rows)} table rows name images not found under {images_dir}: {first_few(shown)}")
    id_of_line = {line: image_id for image_id, line in rows.items()}
    subset = table.loc[sorted(matched)].copy()
    subset["image"] = [str(files[id_of_line[line]]) for line in subset.index]
    if id_column.lower() != "image data id":  # IDA's own column already holds I12345
        subset["image_data_id"] = ["I" + id_of_line[line] for line in subset.index]
    manifest = normalize_manifest(subset, base_dir=images_dir, source=str(csv_path))
    manifest["modality"] = _modalities(subset, manifest)
    return ImportResult(manifest, notes, len(unmatched_files), len(unmatched_rows))


def image_id_from_path(path: Path, root: Path | None = None) -> str | None:
    """The Image Data ID digits in a file name (last ``_I123`` token) or else in a folder ``I123``."""
    stem = path.name[: -len(volume_suffix(path) or "")] if volume_suffix(path) else path.stem
    found = _NAME_ID.findall(stem)
    if found:
        return str(int(found[-1]))
    for folder in path.parents:
        if root is not None and folder == root:
            break
        match = _FOLDER_ID.match(folder.name)
        if match:
            return str(int(match.group(1)))
    return None


def normalize_image_id(value) -> str | None:
    """``I45108``, ``45108``, ``45108.0`` -> ``45108``; anything else -> None."""
    if pd.isna(value):
        return None
    text = str(value).strip()
    if text[:1] in ("I", "i"):
        text = text[1:]
    if re.fullmatch(r"\d+(\.0+)?", text):
        return str(int(float(text))) if "." in text else str(int(text))
    return None


def _files_by_id(images_dir: Path, notes: list[str]) -> dict[str, Path]:
    files: dict[str, Path] = {}
    no_id, repeated = [], []
    for path in find_volumes(images_dir):
        image_id = image_id_from_path(path, images_dir)
        if image_id is None:
            no_id.append(path)
        elif image_id in files:
            repeated.append(path)
        else:
            files[image_id] = path
    if not files and not no_id:
        raise ManifestError(f"{images_dir}: no image files (.nii, .nii.gz, .mgz, .nrrd, .mha) found")
    if no_id:
        notes.append(f"{len(no_id)} image files have no Image Data ID (I<digits>) in their name or folder: {first_few(no_id)}")
    if repeated:
        notes.append(f"{len(repeated)} files repeat an Image Data ID already seen and were skipped: {first_few(repeated)}")
    return files


def _rows_by_id(table: pd.DataFrame, id_column: str, csv_path: Path, notes: list[str]) -> dict[str, int]:
    rows: dict[str, int] = {}
    missing, unreadable, clashes = 0, [], []
    for line, value in table[id_column].items():
        if pd.isna(value):
            missing += 1
            continue
        image_id = normalize_image_id(value)
        if image_id is None:
            unreadable.append(f"row {line} ({value!r})")
        elif image_id in rows:
            clashes.append(f"rows {rows[image_id]} and {line} (I{image_id})")
        else:
            rows[image_id] = line
    if clashes:
        raise ManifestError(f"{csv_path}: the same image ID on several rows, so a file would match twice: {first_few(clashes)}")
    if missing:
        notes.append(f"{missing} table rows have no {id_column} (no image to match)")
    if unreadable:
        notes.append(f"{len(unreadable)} table rows have an {id_column} that is not I<digits>: {first_few(unreadable)}")
    return rows


def _modalities(raw: pd.DataFrame, manifest: pd.DataFrame) -> list[str]:
    """IDA's ``MRI``/``PET`` refined from ``Description`` or the file name (T1w, FLAIR, FDG, AV45 ...)."""
    modality_col = find_column(raw.columns, ("Modality",))
    description_col = find_column(raw.columns, ("Description",))
    out = []
    for line, image in zip(raw.index, manifest["image"]):
        given = str(raw.at[line, modality_col]) if modality_col and not pd.isna(raw.at[line, modality_col]) else ""
        text = f"{raw.at[line, description_col] if description_col else ''} {Path(image).name}"
        out.append(_refine_modality(given, text))
    return out


def _refine_modality(given: str, text: str) -> str:
    kind = given.strip().upper()
    low = text.lower()
    if kind in ("PET", "PT") or (not kind and "_pt_" in low):
        return tracer_modality(text)
    if kind in ("", "MRI", "MR"):
        if "flair" in low:
            return "FLAIR"
        if re.search(r"(^|[^a-z0-9])t2($|[^a-z0-9])", low):
            return "T2w"
        return "T1w"
    return given.strip()
