"""Screen a manifest before a command spends hours on it: stop at the first bad row, or skip.

Every command that reads scans (pretrain, finetune, evaluate, embed, saliency) calls
:func:`screen_rows` on the rows it will use, then preprocesses each item once up front
(filling the cache it needs anyway) with :func:`screen_items`. Without ``--skip-bad`` the
first problem stops the command with one line naming file, row and problem; with it, bad rows
are dropped and listed, and the command writes them to ``skipped.csv`` in its output folder
so every input row is accounted for.

A problem in any canonical column stops every command (a corrupt value usually means a broken
export), except the diagnosis: a study's own labels (FTD, PD, ...) stop only the commands that
read the diagnosis (``used_columns``); ``validate`` reports them all.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Sequence

import pandas as pd

from neuro_ssl.errors import ImageError, ManifestError

#: problems in these columns make a row unusable for every command
_ALWAYS = frozenset({"subject_id", "session_id", "image", "modality", "age", "sex", "site"})
SKIPPED_COLUMNS = ("row", "subject_id", "session_id", "image", "reason")


@dataclass(frozen=True)
class SkippedRow:
    row: int
    subject_id: str
    session_id: str
    image: str
    reason: str


def screen_rows(df: pd.DataFrame, used_columns: Iterable[str] = (), skip_bad: bool = False,
                extra_diagnoses: Iterable[str] = ()) -> tuple[pd.DataFrame, list[SkippedRow]]:
    """Row-level checks (identifiers, duplicates, ages, codes) on the columns a command uses."""
    from neuro_ssl.data.validate import validate_manifest

    used = _ALWAYS | set(used_columns)
    report = validate_manifest(df, check_images=False, extra_diagnoses=extra_diagnoses)
    lines = dict(zip(map(id, report.errors), report.lines()))
    relevant = [p for p in report.errors if p.column in used or p.column is None]
    if not relevant:
        return df, []
    source = report.source
    if not skip_bad:
        more = f" ({len(relevant) - 1} more; see neuro-ssl validate {source})" if len(relevant) > 1 else ""
        raise ManifestError(" ".join(lines[id(relevant[0])].split()) + more + "; --skip-bad skips bad rows")
    reasons: dict[int, str] = {}
    for p in relevant:
        reasons.setdefault(p.row, " ".join(lines[id(p)].split()))
    skipped = [_skipped(df, row, reason) for row, reason in reasons.items()]
    kept = df.drop(index=list(reasons))
    kept.attrs = dict(df.attrs)
    _check_not_empty(kept, source, skipped)
    return kept, skipped


def screen_items(n_items: int, load: Callable[[int], object], rows_of: Callable[[int], Sequence[int]],
                 df: pd.DataFrame, skip_bad: bool = False, progress=None) -> tuple[list[int], list[SkippedRow]]:
    """Preprocess every item once (``load(i)``); return the manifest rows of unusable items.

    Without ``skip_bad`` the first unusable item raises its one-line :class:`ImageError`.
    """
    bad_rows: list[int] = []
    skipped: list[SkippedRow] = []
    indices = range(n_items) if progress is None else progress(range(n_items), desc="checking scans")
    for i in indices:
        try:
            load(i)
        except ImageError as exc:
            if not skip_bad:
                raise
            message = " ".join(str(exc).split())
            for row in rows_of(i):
                bad_rows.append(row)
                skipped.append(_skipped(df, row, message))
    if skip_bad and len(set(bad_rows)) == len(df):
        _check_not_empty(df.drop(index=bad_rows), str(df.attrs.get("source", "manifest")), skipped)
    return bad_rows, skipped


def nothing_left(source, n_rows: int, removed: Sequence[str], purpose: str) -> ManifestError:
    """The one-line error for filters (bad rows, other modalities, missing covariates or labels)
    that left no scan: each filter with what it removed, so the user sees why."""
    steps = "; ".join(r for r in removed if r) or "no row qualified"
    return ManifestError(f"{source}: no scan left to {purpose}: of {n_rows} row(s), {steps}")


def write_skipped(out_dir: str | os.PathLike, skipped: Sequence[SkippedRow], name: str = "skipped.csv"):
    """``OUT/skipped.csv``: one line per skipped manifest row (written only when rows were skipped)."""
    from pathlib import Path

    from neuro_ssl._utils.files import write_csv

    if not skipped:
        return None
    path = Path(out_dir) / name
    write_csv(path, pd.DataFrame([asdict(s) for s in skipped], columns=list(SKIPPED_COLUMNS)))
    return path


def _skipped(df: pd.DataFrame, row: int, reason: str) -> SkippedRow:
    rec = df.loc[row] if row in df.index else {}
    get = (lambda key: "" if key not in rec or pd.isna(rec[key]) else str(rec[key]))
    return SkippedRow(int(row), get("subject_id"), get("session_id"), get("image"), reason)


def _check_not_empty(kept: pd.DataFrame, source: str, skipped: Sequence[SkippedRow]) -> None:
    if kept.empty:
        first = skipped[0] if skipped else None
        detail = f"; first: row {first.row}: {first.reason}" if first else ""
        raise ManifestError(f"{source}: no usable rows left ({len(skipped)} skipped{detail})")
