"""Importers: one small module per dialect, each turning an export into the canonical manifest.

Every importer joins images to table rows by an identifier (Image Data ID, participant and
session), never by row order, and reports what it could not match instead of guessing. Every
folder and table a user names is made absolute first (``absolute_path``: relative to the working
directory, ``..`` resolved by the file system), so a relative ``--root``, a symlinked folder or a
``..`` in a path gives image paths that exist, from any working directory.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pandas as pd

from neuro_ssl.data.io import is_volume_file
from neuro_ssl.data.manifest import absolute_path

__all__ = ["ImportResult", "absolute_path", "find_volumes", "first_few", "tracer_modality"]


@dataclass
class ImportResult:
    """The canonical manifest an importer built, plus what it could not match."""

    manifest: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    n_unmatched_images: int = 0
    n_unmatched_rows: int = 0

    def summary(self) -> str:
        df = self.manifest
        modalities = ", ".join(f"{m} {n}" for m, n in df["modality"].value_counts().sort_index().items())
        return (
            f"{len(df)} images of {df['subject_id'].nunique()} subjects ({modalities});"
            f" {self.n_unmatched_images} unmatched images, {self.n_unmatched_rows} unmatched table rows"
        )


def find_volumes(root: str | os.PathLike) -> list[Path]:
    """Every readable volume file under ``root`` (absolute paths, sorted); hidden files skipped."""
    found = []
    for folder, dirs, files in os.walk(absolute_path(root)):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(folder) / f for f in files if not f.startswith(".") and is_volume_file(f))
    return sorted(found)


def first_few(items: Iterable, n: int = 3) -> str:
    """``a, b, c and 7 more`` for a report line."""
    items = [str(i) for i in items]
    shown = ", ".join(items[:n])
    return shown + (f" and {len(items) - n} more" if len(items) > n else "")


_TRACERS = (  # (modality, substrings, whole words)
    ("FDG", ("fdg",), ()),
    ("AV45", ("av45", "florbetapir"), ()),
    ("PIB", ("pib",), ()),
    ("FBB", ("fbb", "florbetaben"), ()),
    ("AV1451", ("av1451", "flortaucipir"), ("tau",)),
)


def tracer_modality(text: str, default: str = "PET") -> str:
    """``FDG``, ``AV45``, ``PIB``, ``FBB`` or ``AV1451`` named anywhere in ``text``, else ``default``."""
    low = str(text).lower()
    words = set(re.split(r"[^a-z0-9]+", low))
    for name, parts, whole_words in _TRACERS:
        if any(p in low for p in parts) or words.intersection(whole_words):
            return name
    return default
