"""Stable and progressive MCI (sMCI / pMCI) at a time horizon, from the visit rows of a manifest.

ADNI's most asked question is which MCI patients will convert to dementia. From each subject's
visits (one diagnosis per visit, a time per visit) the **baseline scan** (the subject's first
visit in the manifest) is labelled, for ``from_dx = MCI``, ``to_dx = AD`` and a horizon H:

- ``pMCI``: MCI at baseline and AD at some visit within H months of it;
- ``sMCI``: MCI at baseline and still not AD at a visit at or beyond H months (a conversion seen
  only later is noted, the label stays sMCI: the subject was stable within the horizon);
- ``unknown``: MCI at baseline, followed for less than H months (or with a gap across the
  horizon) without converting: reported, never guessed.

Subjects not MCI at baseline get no label. Reversions (a later visit at an earlier stage, e.g.
AD -> MCI or MCI -> CN) are reported per subject; the label follows the definition above (a
subject AD at 12 months and MCI at 24 is pMCI and listed as a reverter, so a study can drop them).
Stages are ordered CN < MCI < AD (EMCI / LMCI are MCI, SMC is CN, Dementia is AD), so ``--to AD``
is reached by any AD visit and ``--from CN --to MCI`` by an MCI or AD visit.

Time of a visit, in years since the baseline scan (``time="auto"`` takes the first available per
row): ``Years_bl`` (ADNIMERGE), exam dates (``EXAMDATE`` ISO ``YYYY-MM-DD``; ``Acq Date`` /
``Scan Date`` of the IDA search export, ``M/DD/YYYY``), else the months in the visit code
(``bl``, ``m12``, ``ses-M024``). Rows are ordered by that time, never by file order. Visits
without a diagnosis do not count (a missing baseline label falls back to ``diagnosis_bl``, the
ADNI ``DX_bl``). ``window_months`` lets a visit within that many months of the horizon count as
at the horizon (ADNI's "m36" visit often falls a few weeks before 36 months).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from neuro_ssl.data.manifest import canonical_diagnosis, diagnosis_matches, find_column, visit_years
from neuro_ssl.errors import ConfigError, ManifestError, row_context

TIME_SOURCES = ("auto", "years", "dates", "visits")
YEARS_COLUMNS = ("Years_bl",)
DATE_COLUMNS = ("EXAMDATE", "Acq Date", "Scan Date", "acq_date", "scan_date", "exam_date")
DATE_FORMATS = ("%Y-%m-%d", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%m/%d/%Y", "%m/%d/%Y %H:%M:%S",
                "%Y%m%d")
STAGES = {"CN": 0, "SMC": 0, "MCI": 1, "EMCI": 1, "LMCI": 1, "AD": 2}
DAYS_PER_YEAR = 365.25
#: columns added to the manifest
LABEL_COLUMN, TIME_COLUMN = "progression", "years_from_baseline"


@dataclass
class Progression:
    """What :func:`label_progression` found.

    ``manifest``: the input rows with ``progression`` (label on the baseline scan's rows, empty
    elsewhere) and ``years_from_baseline`` (every row). ``subjects``: one row per subject (ids,
    baseline, visits, follow-up, conversion, label, reversions, note). ``summary``: label ->
    number of subjects, in a fixed order. ``time_source``: what the times came from.
    """

    manifest: pd.DataFrame
    subjects: pd.DataFrame
    summary: pd.DataFrame
    time_source: str
    labels: tuple[str, str] = ("pMCI", "sMCI")
    notes: list[str] = field(default_factory=list)


def parse_date(value) -> datetime | None:
    """An ADNI date (``2012-05-03``, ``5/03/2012``, ``20120503``, optional time) or None if missing.

    Raises ValueError for text in none of these formats.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)) or not str(value).strip():
        return None
    text = str(value).strip()
    for fmt in DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    raise ValueError(f"date {text!r} is in none of the formats YYYY-MM-DD, M/DD/YYYY, YYYYMMDD")


def stage(value) -> int | None:
    """0 (CN, SMC), 1 (MCI, EMCI, LMCI), 2 (AD, Dementia), or None for a missing or other label."""
    dx = canonical_diagnosis(value)
    return None if not isinstance(dx, str) else STAGES.get(dx)


def visit_times(df: pd.DataFrame, time: str = "auto") -> tuple[pd.Series, str]:
    """Years of each row since its subject's baseline scan (float, NaN where unknown) and the source.

    ``time``: ``years`` (``Years_bl``), ``dates`` (exam dates), ``visits`` (visit codes) or
    ``auto``: per subject, the source that times most of its rows (ties: that order), so one
    subject's times never mix references. Raises ManifestError for an unreadable date (file and
    row named) or a requested source the manifest lacks.
    """
    if time not in TIME_SOURCES:
        raise ConfigError(f"--time must be one of {', '.join(TIME_SOURCES)}, got '{time}'")
    source = df.attrs.get("source", "manifest")
    sources = {"years": _years(df), "dates": _date_years(df, source), "visits": _code_years(df)}
    if time != "auto" and sources[time] is None:
        wanted = {"years": "a Years_bl column", "dates": f"a date column ({', '.join(DATE_COLUMNS)})",
                  "visits": "a session_id column"}[time]
        raise ManifestError(f"{source}: --time {time} needs {wanted}")
    candidates = [time] if time != "auto" else [name for name in ("years", "dates", "visits") if sources[name] is not None]
    subjects = df["subject_id"].astype(str)
    times, chosen = pd.Series(np.nan, index=df.index, dtype=float), pd.Series("", index=df.index)
    best = pd.Series(0, index=df.index)
    for name in candidates:  # earlier sources win ties
        counts = sources[name].notna().groupby(subjects).transform("sum")
        better = counts > best
        times[better], chosen[better], best[better] = sources[name][better], name, counts[better]
    times = times - times.groupby(subjects).transform("min")
    used = set(chosen[chosen != ""])
    return times, "+".join(n for n in ("years", "dates", "visits") if n in used) or "none"


def _years(df: pd.DataFrame) -> pd.Series | None:
    column = find_column(df.columns, YEARS_COLUMNS)
    return None if column is None else pd.to_numeric(df[column], errors="coerce").astype(float)


def _date_years(df: pd.DataFrame, source) -> pd.Series | None:
    column = find_column(df.columns, DATE_COLUMNS)
    if column is None:
        return None
    days = []
    for idx, value in df[column].items():
        try:
            when = parse_date(value)
        except ValueError as exc:
            raise ManifestError(f"{row_context(source, idx)}: {column}: {exc}") from None
        days.append(np.nan if when is None else when.toordinal() + when.hour / 24.0)
    return pd.Series(days, index=df.index, dtype=float) / DAYS_PER_YEAR


def _code_years(df: pd.DataFrame) -> pd.Series | None:
    if "session_id" not in df.columns:
        return None
    return pd.Series([visit_years(s) for s in df["session_id"]], index=df.index, dtype=float)


def label_progression(df: pd.DataFrame, horizon_months: float = 36, from_dx: str = "MCI", to_dx: str = "AD",
                      window_months: float = 0.0, time: str = "auto") -> Progression:
    """Label each subject's baseline scan ``p<FROM>`` / ``s<FROM>`` / ``unknown`` (see module docstring).

    Args:
        df: a canonical manifest (``subject_id``, ``session_id``, ``diagnosis`` and a time source).
        horizon_months: H, months after the baseline scan (> 0).
        from_dx, to_dx: the stages (``MCI`` / ``AD`` by default; any diagnosis name).
        window_months: visits within this many months of H count as at H (>= 0, < H).
        time: ``auto``, ``years``, ``dates`` or ``visits`` (see :func:`visit_times`).
    Raises:
        ConfigError for impossible options; ManifestError for a manifest without subjects or
        diagnoses, or an unreadable date.
    """
    _check_options(horizon_months, from_dx, to_dx, window_months)
    source = df.attrs.get("source", "manifest")
    for column in ("subject_id", "diagnosis"):
        if column not in df.columns or df[column].isna().all():
            raise ManifestError(f"{source}: no {column} values: progression needs a diagnosis per visit")
    years, used = visit_times(df, time)
    labels = (f"p{from_dx}", f"s{from_dx}")
    rows = df.copy()
    rows[TIME_COLUMN] = years.round(4)
    records, labelled = [], {}
    for subject, visits in _visits_by_subject(rows).items():
        record = _subject(subject, visits, horizon_months / 12.0, window_months / 12.0, from_dx, to_dx, labels)
        baseline_rows = record.pop("_baseline_rows")
        if record["progression"]:
            labelled.update(dict.fromkeys(baseline_rows, record["progression"]))
        records.append(record)
    rows[LABEL_COLUMN] = pd.Series(labelled, dtype=object).reindex(rows.index)
    rows.attrs = dict(df.attrs)
    subjects = pd.DataFrame(records, columns=SUBJECT_COLUMNS)
    notes = [] if used != "none" else [f"{source}: no time for any visit (no Years_bl, dates or visit codes)"]
    return Progression(rows, subjects, _summary(subjects, labels, from_dx), used, labels, notes)


def _check_options(horizon_months, from_dx, to_dx, window_months) -> None:
    if not (isinstance(horizon_months, (int, float)) and math.isfinite(horizon_months) and horizon_months > 0):
        raise ConfigError(f"--horizon must be a positive number of months, got {horizon_months}")
    if not (math.isfinite(window_months) and 0 <= window_months < horizon_months):
        raise ConfigError(f"--window must be >= 0 and below the horizon ({horizon_months} months), got {window_months}")
    if diagnosis_matches(to_dx, from_dx) or diagnosis_matches(from_dx, to_dx):
        raise ConfigError(f"--from {from_dx} and --to {to_dx} name the same stage")


def _reached(dx, to_dx: str) -> bool:
    """The visit is at the target stage or beyond (CN < MCI < AD), or matches a non-staged name."""
    if stage(dx) is not None and stage(to_dx) is not None:
        return stage(dx) >= stage(to_dx)
    return diagnosis_matches(dx, to_dx)


@dataclass
class _Visit:
    session: str
    years: float       # since the baseline scan; NaN when unknown
    dx: str | None     # canonical diagnosis, None when missing
    dx_bl: str | None  # the row's diagnosis_bl (ADNI DX_bl), None when missing
    rows: list


def _visits_by_subject(rows: pd.DataFrame) -> dict[str, list[_Visit]]:
    """Per subject (sorted), one visit per session with its first known diagnosis, sorted by time."""
    dx_bl = rows["diagnosis_bl"] if "diagnosis_bl" in rows.columns else pd.Series(np.nan, index=rows.index)
    visits: dict[str, dict[str, _Visit]] = {}
    for idx, subject, session, years, dx, bl in zip(rows.index, rows["subject_id"].astype(str),
                                                    rows["session_id"].astype(str), rows[TIME_COLUMN],
                                                    rows["diagnosis"], dx_bl):
        dx = None if pd.isna(dx) else canonical_diagnosis(dx)
        bl = None if pd.isna(bl) else canonical_diagnosis(bl)
        visit = visits.setdefault(subject, {}).setdefault(session, _Visit(session, float(years), dx, bl, []))
        visit.rows.append(idx)
        if not math.isnan(years) and not visit.years <= years:  # the earliest known time of the session
            visit.years = float(years)
        visit.dx, visit.dx_bl = visit.dx or dx, visit.dx_bl or bl
    return {subject: sorted(sessions.values(), key=lambda v: (math.isnan(v.years), v.years))
            for subject, sessions in sorted(visits.items())}


SUBJECT_COLUMNS = ("subject_id", "baseline_session", "baseline_diagnosis", "visits", "visits_with_diagnosis",
                   "follow_up_months", "first_conversion_months", "progression", "reversions", "note")


def _subject(subject: str, visits: list[_Visit], horizon: float, window: float, from_dx: str, to_dx: str,
             labels: tuple[str, str]) -> dict:
    timed = [v for v in visits if not math.isnan(v.years)]
    known = [v for v in timed if v.dx is not None]
    record = {"subject_id": subject, "baseline_session": None, "baseline_diagnosis": None, "visits": len(visits),
              "visits_with_diagnosis": sum(v.dx is not None for v in visits), "follow_up_months": np.nan,
              "first_conversion_months": np.nan, "progression": None, "reversions": "", "note": "",
              "_baseline_rows": []}
    if not timed:
        record["note"] = "no visit time (Years_bl, date or visit code)"
        return record
    base = timed[0]
    baseline_dx = base.dx or base.dx_bl
    record.update(baseline_session=base.session, baseline_diagnosis=baseline_dx, _baseline_rows=base.rows,
                  follow_up_months=round(12 * max((v.years for v in known), default=0.0), 2),
                  reversions=_reversions(known))
    if baseline_dx is None:
        record["note"] = "no diagnosis at baseline"
        return record
    if not diagnosis_matches(baseline_dx, from_dx):
        record["note"] = f"{baseline_dx} at baseline, not {from_dx}"
        return record
    later = [v for v in known if v is not base]
    record["progression"], record["note"] = _label(later, horizon, window, to_dx, labels)
    converted = [v.years for v in later if _reached(v.dx, to_dx)]
    if converted:
        record["first_conversion_months"] = round(12 * converted[0], 2)
    ignored = [f"{n} visit(s) without {what} ignored" for n, what in
               ((len(visits) - record["visits_with_diagnosis"], "diagnosis"), (len(visits) - len(timed), "time")) if n]
    record["note"] = "; ".join(filter(None, [record["note"], *ignored]))
    return record


def _label(later: list[_Visit], horizon: float, window: float, to_dx: str, labels) -> tuple[str, str]:
    """The label from the visits after baseline that have a diagnosis (times in years)."""
    first = next((v.years for v in later if _reached(v.dx, to_dx)), math.inf)
    if first <= horizon + window:
        return labels[0], f"{to_dx} at {12 * first:.1f} months"
    stable_at = [v.years for v in later if horizon - window <= v.years < first]
    if stable_at:
        note = f"not {to_dx} at {12 * stable_at[0]:.1f} months"
        return labels[1], note + (f"; {to_dx} later, at {12 * first:.1f} months" if math.isfinite(first) else "")
    last = max((v.years for v in later if v.years < first), default=0.0)
    if math.isfinite(first):
        return "unknown", f"last visit before the horizon at {12 * last:.1f} months, {to_dx} at {12 * first:.1f}"
    return "unknown", f"followed {12 * last:.1f} months without {to_dx}, less than the horizon"


def _reversions(known: list[_Visit]) -> str:
    """``AD->MCI at 24.0 months`` for every visit at an earlier stage than the visit before it."""
    found, previous = [], None
    for visit in known:
        if stage(visit.dx) is None:
            continue
        if previous is not None and stage(visit.dx) < stage(previous.dx):
            found.append(f"{previous.dx}->{visit.dx} at {12 * visit.years:.1f} months")
        previous = visit
    return "; ".join(found)


def _summary(subjects: pd.DataFrame, labels: tuple[str, str], from_dx: str) -> pd.DataFrame:
    label, baseline = subjects["progression"], subjects["baseline_diagnosis"]
    counts = [(labels[0], int((label == labels[0]).sum())), (labels[1], int((label == labels[1]).sum())),
              ("unknown", int((label == "unknown").sum())),
              (f"not {from_dx} at baseline", int((label.isna() & baseline.notna()).sum())),
              ("no diagnosis or time at baseline", int(baseline.isna().sum())),
              ("reverted (reported)", int((subjects["reversions"] != "").sum()))]
    return pd.DataFrame(counts, columns=["label", "subjects"])


__all__ = ["Progression", "label_progression", "parse_date", "stage", "visit_times", "LABEL_COLUMN", "TIME_COLUMN"]
