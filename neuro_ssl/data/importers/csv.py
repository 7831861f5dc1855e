"""Any CSV/TSV with an explicit mapping of canonical roles to its columns.

``--columns subject_id=ID,image=scan,age=AgeYears`` renames those columns; columns not named
are still recognised by their usual aliases (``sex``, ``DX`` ...) and all others are kept.
Relative image paths resolve against the table's folder, or ``--image-root`` when given.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from neuro_ssl.data.importers import ImportResult, absolute_path, first_few
from neuro_ssl.data.manifest import CANONICAL_COLUMNS, OPTIONAL_COLUMNS, normalize_manifest, read_table
from neuro_ssl.errors import ConfigError, ManifestError


def parse_column_mapping(text: str) -> dict[str, str]:
    """``subject_id=ID,image=scan`` -> ``{"subject_id": "ID", "image": "scan"}`` (roles checked)."""
    mapping: dict[str, str] = {}
    for item in (part.strip() for part in str(text).split(",")):
        if not item:
            continue
        role, sep, column = (s.strip() for s in item.partition("="))
        if not sep or not role or not column:
            raise ConfigError(f"--columns: expected role=column, got {item!r}")
        if role not in CANONICAL_COLUMNS + OPTIONAL_COLUMNS:
            close = difflib.get_close_matches(role, CANONICAL_COLUMNS + OPTIONAL_COLUMNS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"--columns: unknown role {role!r}{hint}; roles are {', '.join(CANONICAL_COLUMNS + OPTIONAL_COLUMNS)}")
        if role in mapping:
            raise ConfigError(f"--columns: role {role!r} given twice")
        mapping[role] = column
    return mapping


def import_csv(csv_path: str | Path, columns: dict[str, str], image_root: str | Path | None = None) -> ImportResult:
    """Rename the mapped columns to their roles, then read the table as a canonical manifest."""
    csv_path = Path(csv_path)
    table = read_table(csv_path)
    if table.empty:
        raise ManifestError(f"{csv_path}: the table has a header but no rows")
    for role, column in columns.items():
        if column not in table.columns:
            close = difflib.get_close_matches(column, list(table.columns), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ManifestError(f"{csv_path}: no column {column!r} for {role}{hint}; columns are {first_few(table.columns, 12)}")
    targets = set(columns)
    aside = {c: f"{c}_original" for c in table.columns if c in targets and columns.get(c) != c}
    table = table.rename(columns=aside)
    table = table.rename(columns={aside.get(col, col): role for role, col in columns.items()})
    base = Path(absolute_path(image_root if image_root is not None else Path(csv_path).parent))
    manifest = normalize_manifest(table, base_dir=base, source=str(csv_path))
    notes = []
    missing = [f"row {line} ({p})" for line, p in manifest["image"].items() if isinstance(p, str) and not os.path.exists(p)]
    if missing:
        notes.append(f"{len(missing)} of {len(manifest)} image files do not exist: {first_few(missing)}")
    return ImportResult(manifest, notes, 0, len(missing))
