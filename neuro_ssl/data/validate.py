"""Every problem of a manifest at once, each with its row (file line) and file.

Errors make a manifest unusable as it stands (a missing or broken image, a duplicate row, an
impossible age, an unknown sex code, an unknown diagnosis (a study's own labels are declared
with ``extra_diagnoses``, e.g. FTD), a subject whose sex or baseline age changes between rows);
warnings are worth a look but do not fail (a missing age, a header without orientation codes). Training commands use :func:`validate_manifest` with
``report.bad_rows`` to skip bad rows under ``--skip-bad``.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from neuro_ssl.data.io import check_volume
from neuro_ssl.data.manifest import KNOWN_DIAGNOSES, KNOWN_SEXES, visit_sort_key
from neuro_ssl.errors import ImageError, ManifestError

AGE_RANGE_YEARS = (0.0, 120.0)
#: two estimates of one subject's baseline age may differ by this much (rounding, visit dates).
BASELINE_AGE_TOLERANCE_YEARS = 0.5


@dataclass(frozen=True)
class Problem:
    """One finding: ``row`` is the manifest line, ``column`` the field (``image`` for file problems)."""

    row: int | None
    file: str | None
    column: str | None
    problem: str
    severity: str = "error"

    def to_dict(self) -> dict:
        return {"row": self.row, "file": self.file, "column": self.column,
                "problem": self.problem, "severity": self.severity}

    def format(self, source: str) -> str:
        where = f"{source} row {self.row}" if self.row is not None else str(source)
        what = f"{self.file}: " if self.column == "image" and self.file else (f"{self.column}: " if self.column else "")
        tag = "warning: " if self.severity == "warning" else ""
        return f"{where}: {tag}{what}{self.problem}"


@dataclass
class ValidationReport:
    """All problems of one manifest; ``ok`` when there is no error (warnings allowed)."""

    source: str
    n_rows: int
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    checked_images: bool = True

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def bad_rows(self) -> list[int]:
        """Manifest rows (index values) with at least one error: what ``--skip-bad`` drops."""
        return sorted({p.row for p in self.errors if p.row is not None})

    def to_dict(self) -> dict:
        return {
            "source": self.source, "n_rows": self.n_rows, "ok": self.ok, "checked_images": self.checked_images,
            "n_errors": len(self.errors), "n_warnings": len(self.warnings), "bad_rows": self.bad_rows,
            "errors": [p.to_dict() for p in self.errors], "warnings": [p.to_dict() for p in self.warnings],
        }

    def lines(self) -> list[str]:
        return [p.format(self.source) for p in self.errors + self.warnings]

    def summary(self) -> str:
        verdict = "OK" if self.ok else "FAILED"
        images = "" if self.checked_images else " (images not read: --no-images)"
        return (
            f"{self.source}: {verdict}: {self.n_rows} rows, {len(self.errors)} errors in"
            f" {len(self.bad_rows)} rows, {len(self.warnings)} warnings{images}"
        )


def validate_manifest(df: pd.DataFrame, check_images: bool = True, workers: int = 1,
                      progress: Callable[..., Iterable] | None = None,
                      extra_diagnoses: Iterable[str] = (), frames: str = "single") -> ValidationReport:
    """Check a canonical manifest (as :func:`read_manifest` returns it) and every image it names.

    Each image is read once (``workers`` threads; gzip decoding releases the GIL) by
    :func:`~neuro_ssl.data.io.check_volume`, the reader and checks every command uses
    (``frames="mean"``: a 4D file's frames averaged, as ``--frames mean`` does). ``progress``
    wraps an iterable (e.g. a tqdm factory) to show image checks advancing.
    """
    if not df.index.is_unique:
        raise ManifestError(f"{df.attrs.get('source', 'manifest')}: row labels (index) are not unique")
    table = _Table(df)
    problems: list[Problem] = []
    problems += _check_identifiers(table)
    problems += _check_images(table, check_images, workers, progress, frames)
    problems += _check_duplicates(table)
    problems += _check_ages(table)
    problems += _check_codes(table, KNOWN_DIAGNOSES | {str(d) for d in extra_diagnoses})
    problems += _check_subject_consistency(table)
    order = {row: i for i, row in enumerate(table.rows)}
    problems.sort(key=lambda p: (order.get(p.row, -1), 0 if p.column == "image" else 1))
    return ValidationReport(
        source=str(df.attrs.get("source", "manifest")), n_rows=len(df),
        errors=[p for p in problems if p.severity == "error"],
        warnings=[p for p in problems if p.severity == "warning"],
        checked_images=check_images,
    )


class _Table:
    """Columns as plain lists (missing = None): row-by-row checks without pandas indexing costs."""

    def __init__(self, df: pd.DataFrame):
        self.rows = df.index.tolist()
        self.columns = {str(c): [None if _missing(v) else v for v in df[c].tolist()] for c in df.columns}
        self.positions = range(len(self.rows))

    def __getitem__(self, column: str) -> list:
        return self.columns.get(column) or [None] * len(self.rows)

    def numeric(self, column: str) -> list:
        values = pd.to_numeric(pd.Series(self[column], dtype=object), errors="coerce")
        return [None if np.isnan(v) else float(v) for v in values]

    def image(self, i: int) -> str | None:
        value = self["image"][i]
        return None if value is None else str(value)

    def problem(self, i: int, column: str, text: str, severity: str = "error") -> Problem:
        return Problem(self.rows[i], self.image(i), column, text, severity)


def _missing(value) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _check_identifiers(t: _Table) -> list[Problem]:
    return [t.problem(i, "subject_id", "no subject_id") for i, v in enumerate(t["subject_id"]) if v is None or not str(v).strip()]


def _check_images(t: _Table, check_images: bool, workers: int, progress, frames: str = "single") -> list[Problem]:
    problems, first = [], {}
    for i, path in enumerate(t["image"]):
        if path is None or not str(path).strip():
            problems.append(Problem(t.rows[i], None, "image", "no image path"))
        else:
            first.setdefault(str(path), i)
    paths = list(first)
    check = functools.partial(_inspect, frames=frames) if check_images else _exists
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = pool.map(check, paths)
        if progress is not None:
            results = progress(results, total=len(paths), desc="reading images", unit="image")
        for path, (problem, warnings) in zip(paths, results):
            if problem:
                problems.append(t.problem(first[path], "image", problem))
            problems += [t.problem(first[path], "image", w, "warning") for w in warnings]
    return problems


def _inspect(path: str, frames: str = "single") -> tuple[str | None, tuple[str, ...]]:
    try:
        info = check_volume(path, frames)
    except ImageError as exc:
        message = str(exc)
        return (message[len(path) + 2:] if message.startswith(f"{path}: ") else message), ()
    return None, info.warnings


def _exists(path: str) -> tuple[str | None, tuple[str, ...]]:
    if not os.path.exists(path):
        return "file not found", ()
    if os.path.isdir(path):
        return "is a folder, not an image file", ()
    return None, ()


def _check_duplicates(t: _Table) -> list[Problem]:
    """Two rows of one (subject, session, modality) and, when the manifest has a ``run`` column, run."""
    problems, seen_key, seen_path = [], {}, {}
    runs = t["run"]
    for i, key in enumerate(zip(t["subject_id"], t["session_id"], t["modality"])):
        image = t.image(i)
        if None not in key:
            run = runs[i]
            full = key + (None if run is None else str(run),)
            if full in seen_key:
                also = "" if run is None else f", run {run}"
                problems.append(t.problem(i, "session_id", f"duplicate of row {seen_key[full]} (same subject"
                                          f" {key[0]}, session {key[1]}, modality {key[2]}{also})"))
                continue
            seen_key[full] = t.rows[i]
        if image is not None:
            if image in seen_path:
                problems.append(t.problem(i, "image", f"the same file as row {seen_path[image]}"))
            else:
                seen_path[image] = t.rows[i]
    return problems


def _check_ages(t: _Table) -> list[Problem]:
    raw, ages = t["age_raw"], t.numeric("age")
    lo, hi = AGE_RANGE_YEARS
    if all(a is None for a in ages) and all(r is None for r in raw):
        return [Problem(None, None, "age", "no ages in the manifest (age-aware losses and age reports need them)", "warning")]
    problems = []
    for i, (age, text) in enumerate(zip(ages, raw)):
        if text is not None:
            problems.append(t.problem(i, "age", f"{str(text)!r} is not a number"))
        elif age is None:
            problems.append(t.problem(i, "age", "missing", "warning"))
        elif not lo <= age <= hi:
            problems.append(t.problem(i, "age", f"{age:g} is impossible (expected {lo:g} to {hi:g} years)"))
    return problems


def _check_codes(t: _Table, known_diagnoses: frozenset[str]) -> list[Problem]:
    problems = [
        t.problem(i, "sex", f"unknown sex code {str(sex)!r} (expected M/F or male/female)")
        for i, sex in enumerate(t["sex"]) if sex is not None and sex not in KNOWN_SEXES
    ]
    known = ", ".join(sorted(known_diagnoses))
    for column in ("diagnosis", "diagnosis_bl"):
        problems += [
            t.problem(i, column, f"unknown diagnosis {str(dx)!r} (known: {known}; declare others with --diagnoses)")
            for i, dx in enumerate(t[column]) if dx is not None and dx not in known_diagnoses
        ]
    return problems


def _check_subject_consistency(t: _Table) -> list[Problem]:
    """Sex must not change within a subject; nor the baseline age (or ages must follow visit order)."""
    by_subject: dict[str, list[int]] = {}
    for i, subject in enumerate(t["subject_id"]):
        if subject is not None:
            by_subject.setdefault(subject, []).append(i)
    baseline = _baseline_ages(t)
    problems = []
    for subject, positions in by_subject.items():
        if len(positions) < 2:
            continue
        problems += _changes(t, subject, positions, t["sex"], "sex", lambda a, b: a != b, "{v} differs from {first}")
        if baseline is not None:
            problems += _changes(t, subject, positions, baseline, "age",
                                 lambda a, b: abs(a - b) > BASELINE_AGE_TOLERANCE_YEARS,
                                 "baseline age {v:.1f} differs from {first:.1f}")
        else:
            problems += _age_order_changes(t, subject, positions)
    return problems


def _changes(t: _Table, subject, positions, values, column, differs, template) -> list[Problem]:
    """Rows whose value differs from the subject's first known value."""
    known = [(i, values[i]) for i in positions if values[i] is not None]
    if not known:
        return []
    first_i, first = known[0]
    return [
        t.problem(i, column, template.format(v=v, first=first) + f" in row {t.rows[first_i]} (same subject {subject})")
        for i, v in known[1:] if differs(v, first)
    ]


def _baseline_ages(t: _Table) -> list | None:
    """Baseline age per row: ``age_bl`` when present, else ``age - Years_bl``, else None."""
    age_bl = t.numeric("age_bl")
    if any(a is not None for a in age_bl):
        return age_bl
    years_column = next((c for c in t.columns if c.lower() == "years_bl"), None)
    if years_column is not None:
        years = t.numeric(years_column)
        if any(y is not None for y in years):
            return [None if a is None or y is None else a - y for a, y in zip(t.numeric("age"), years)]
    return None


def _age_order_changes(t: _Table, subject, positions) -> list[Problem]:
    """Without a baseline column: ages must agree within a session and not fall with visit order."""
    ages, sessions = t.numeric("age"), t["session_id"]
    problems, first_of_session = [], {}
    for i in (i for i in positions if ages[i] is not None):
        j = first_of_session.setdefault(sessions[i], i)
        if j != i and abs(ages[i] - ages[j]) > BASELINE_AGE_TOLERANCE_YEARS:
            problems.append(t.problem(i, "age", f"{ages[i]:g} differs from {ages[j]:g} in row {t.rows[j]}"
                                      f" (same subject {subject}, same session {sessions[i]})"))
    firsts = [(visit_sort_key(s), i) for s, i in first_of_session.items()]
    if len({key[0] for key, _ in firsts}) != 1 or firsts[0][0][0] == 2:
        return problems  # visit codes of mixed or unknown schemes cannot be ordered
    ordered = sorted(firsts)
    for (_, prev), (_, cur) in zip(ordered, ordered[1:]):
        if ages[cur] < ages[prev] - BASELINE_AGE_TOLERANCE_YEARS:
            problems.append(t.problem(cur, "age", f"{ages[cur]:g} at session {sessions[cur]} is younger than"
                                      f" {ages[prev]:g} at the earlier session {sessions[prev]}"
                                      f" in row {t.rows[prev]} (same subject {subject})"))
    return problems
