"""Subject-level splits: no subject ever in two parts, stratified, the same for the same seed.

Longitudinal cohorts hold several scans per person; splitting scans lets one person sit in train
and test and inflates every metric. Here subjects are dealt to parts, then their scans follow.
Stratification uses one label per subject (the label at the first visit, else the most common);
a numeric column with many values is cut into quantile bins. Classes too small to reach every
part are pooled (with a warning). The result does not depend on the manifest's row order.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter

import numpy as np
import pandas as pd

from neuro_ssl.data.manifest import visit_sort_key
from neuro_ssl.errors import ConfigError, LeakageError, ManifestError

PARTS = ("train", "val", "test")
MISSING_LABEL = "<missing>"
POOLED_LABEL = "<pooled small classes>"


class SplitWarning(UserWarning):
    """Stratification had to be relaxed (a class too small, a column without values)."""


def make_splits(df: pd.DataFrame, test_size: float = 0.2, val_size: float = 0.1,
                stratify: str | None = "diagnosis", seed: int = 0,
                baseline_only_eval: bool = False) -> dict[str, pd.DataFrame]:
    """``{"train", "val", "test"}`` manifests (an empty part when its size is 0), grouped by subject.

    Sizes are fractions of subjects; each non-zero part gets at least one subject. With
    ``baseline_only_eval`` val and test keep only each subject's first session.
    """
    _check_sizes(test_size, val_size)
    _check_subjects(df)
    n = int(df["subject_id"].astype(str).nunique())
    n_test, n_val = _count(n, test_size), _count(n, val_size)
    if n - n_test - n_val < 1:
        raise ManifestError(f"{n} subjects are too few for --test-size {test_size} and --val-size {val_size}")
    strata = subject_strata(df, stratify, n_parts=1 + (test_size > 0) + (val_size > 0))
    rng = np.random.default_rng(seed)
    groups = {label: list(rng.permutation(members)) for label, members in _members(strata).items()}
    test_counts = _apportion(n_test, {k: len(v) for k, v in groups.items()}, n, rng)
    room = {k: len(v) - test_counts[k] for k, v in groups.items()}
    val_counts = _apportion(n_val, {k: len(v) for k, v in groups.items()}, n, rng, capacity=room)
    part_of = {}
    for label, members in groups.items():
        t, v = test_counts[label], val_counts[label]
        part_of.update({s: "test" for s in members[:t]})
        part_of.update({s: "val" for s in members[t:t + v]})
        part_of.update({s: "train" for s in members[t + v:]})
    parts = _assign(df, part_of, PARTS)
    if baseline_only_eval:
        parts = {name: first_visits(part) if name != "train" else part for name, part in parts.items()}
    check_no_leak(parts)
    return parts


def make_folds(df: pd.DataFrame, k: int = 5, stratify: str | None = "diagnosis", seed: int = 0,
               baseline_only_eval: bool = False) -> list[dict[str, pd.DataFrame]]:
    """K folds of ``{"train", "val"}``: each subject is in exactly one fold's ``val``."""
    if k < 2:
        raise ConfigError(f"--folds must be at least 2, got {k}")
    _check_subjects(df)
    n = int(df["subject_id"].astype(str).nunique())
    if n < k:
        raise ManifestError(f"{n} subjects are too few for {k} folds")
    strata = subject_strata(df, stratify, n_parts=k)
    rng = np.random.default_rng(seed)
    fold_of, offset = {}, 0
    for label, members in _members(strata).items():
        for i, subject in enumerate(rng.permutation(members)):
            fold_of[subject] = (offset + i) % k
        offset += len(members)
    folds = []
    for fold in range(k):
        part_of = {s: ("val" if f == fold else "train") for s, f in fold_of.items()}
        parts = _assign(df, part_of, ("train", "val"))
        if baseline_only_eval:
            parts["val"] = first_visits(parts["val"])
        check_no_leak(parts)
        folds.append(parts)
    return folds


def subject_strata(df: pd.DataFrame, stratify: str | None, n_parts: int = 3) -> pd.Series:
    """One stratum label per subject (sorted by subject); small classes pooled with a warning."""
    _check_subjects(df)
    labels = subject_labels(df, stratify)
    if stratify is None:
        return labels
    counts = labels.value_counts()
    small = sorted(str(c) for c in counts.index if counts[c] < n_parts)
    if small:
        warnings.warn(
            f"{stratify}: too few subjects to stratify class(es) {', '.join(small)}"
            f" ({', '.join(str(counts[c]) for c in small)} subjects for {n_parts} parts); pooled together",
            SplitWarning, stacklevel=3,
        )
        labels = labels.where(~labels.isin(small), POOLED_LABEL)
    return labels


def subject_labels(df: pd.DataFrame, column: str | None) -> pd.Series:
    """Each subject's label at its first visit (else its most common label); sorted by subject."""
    subjects = sorted(df["subject_id"].astype(str).unique())
    if column is None:
        return pd.Series("all", index=pd.Index(subjects, name="subject_id"))
    if column not in df.columns:
        raise ManifestError(f"--stratify {column}: no such column (columns: {', '.join(map(str, df.columns))})")
    values = _binned(df[column], column)
    if values.isna().all():
        warnings.warn(f"{column}: no values to stratify on; splitting without stratification", SplitWarning, stacklevel=3)
        return pd.Series("all", index=pd.Index(subjects, name="subject_id"))
    table = pd.DataFrame({
        "subject": df["subject_id"].astype(str).to_numpy(),
        "value": values.to_numpy(dtype=object),
        "first": _first_visit_mask(df),
    })
    table = table[table["value"].notna()].astype({"value": str})
    has_first = table.groupby("subject")["first"].transform("any")
    table = table[table["first"] | ~has_first]
    counts = table.groupby(["subject", "value"]).size().rename("n").reset_index()
    best = counts.sort_values(["subject", "n", "value"], ascending=[True, False, True]).drop_duplicates("subject")
    labels = pd.Series(best["value"].to_numpy(), index=best["subject"].to_numpy())
    return labels.reindex(subjects).fillna(MISSING_LABEL).rename(column).rename_axis("subject_id")


def first_visits(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of each subject's first session (by visit code, then age, then row order)."""
    return df[_first_visit_mask(df)] if not df.empty else df


def _first_visit_mask(df: pd.DataFrame) -> np.ndarray:
    ages = pd.to_numeric(df["age"], errors="coerce") if "age" in df.columns else pd.Series(np.nan, index=df.index)
    keys = [visit_sort_key(s) for s in df["session_id"]]
    order = pd.DataFrame({
        "subject": df["subject_id"].astype(str).to_numpy(),
        "session": df["session_id"].astype(str).to_numpy(),
        "scheme": [k[0] for k in keys], "rank": [k[1] for k in keys], "text": [k[2] for k in keys],
        "age": ages.fillna(np.inf).to_numpy(),
        "position": np.arange(len(df)),
    })
    order = order.sort_values(["subject", "scheme", "rank", "text", "age", "position"], kind="stable")
    first_session = order.drop_duplicates("subject").set_index("subject")["session"]
    return df["session_id"].astype(str).to_numpy() == first_session.reindex(df["subject_id"].astype(str)).to_numpy()


def check_no_leak(parts: dict[str, pd.DataFrame]) -> None:
    """Raise :class:`LeakageError` if any subject appears in two parts."""
    seen: dict[str, str] = {}
    for name, part in parts.items():
        for subject in part["subject_id"].astype(str).unique():
            if subject in seen:
                raise LeakageError(f"subject {subject} is in both {seen[subject]} and {name}")
            seen[subject] = name


def split_report(parts: dict[str, pd.DataFrame], stratify: str | None = "diagnosis") -> pd.DataFrame:
    """Per part: subjects, scans, subjects per class, age mean and sd at first visit, % female."""
    classes = sorted({c for p in parts.values() if not p.empty for c in subject_labels_quiet(p, stratify)})
    rows = []
    for name, part in parts.items():
        first = first_visits(part).drop_duplicates("subject_id") if not part.empty else part
        ages = pd.to_numeric(first["age"], errors="coerce").dropna() if "age" in part.columns else pd.Series(dtype=float)
        sexes = first["sex"].dropna() if "sex" in part.columns else pd.Series(dtype=object)
        row = {"part": name, "n_subjects": int(part["subject_id"].nunique()), "n_scans": len(part)}
        labels = Counter(subject_labels_quiet(part, stratify)) if not part.empty else Counter()
        row.update({f"n_{c}": labels.get(c, 0) for c in classes})
        row["age_mean"] = round(float(ages.mean()), 2) if len(ages) else np.nan
        row["age_sd"] = round(float(ages.std(ddof=1)), 2) if len(ages) > 1 else np.nan
        row["pct_female"] = round(100.0 * float((sexes == "F").mean()), 1) if len(sexes) else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def subject_labels_quiet(df: pd.DataFrame, column: str | None) -> list[str]:
    if column is None or column not in df.columns:
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SplitWarning)
        return list(subject_labels(df, column))


def format_report(report: pd.DataFrame) -> str:
    """The report as an aligned text table, ``age`` shown as mean +- sd."""
    shown = report.copy()
    shown["age"] = [
        "-" if pd.isna(m) else (f"{m:.1f} +- {s:.1f}" if not pd.isna(s) else f"{m:.1f}")
        for m, s in zip(report["age_mean"], report["age_sd"])
    ]
    shown["%F"] = ["-" if pd.isna(v) else f"{v:.0f}" for v in report["pct_female"]]
    shown = shown.drop(columns=["age_mean", "age_sd", "pct_female"])
    return shown.to_string(index=False)


def _assign(df: pd.DataFrame, part_of: dict[str, str], names) -> dict[str, pd.DataFrame]:
    where = df["subject_id"].astype(str).map(part_of)
    return {name: df[where == name] for name in names}


def _members(strata: pd.Series) -> dict[str, list[str]]:
    """Subjects of each stratum, strata and members in sorted order (so shuffles are reproducible)."""
    return {label: sorted(strata.index[strata == label]) for label in sorted(strata.unique(), key=str)}


def _apportion(total: int, sizes: dict[str, int], n: int, rng, capacity: dict[str, int] | None = None) -> dict[str, int]:
    """Split ``total`` among strata in proportion to their sizes (largest remainder; ties at random)."""
    capacity = capacity or sizes
    quota = {k: total * size / n for k, size in sizes.items()}
    counts = {k: min(int(math.floor(q)), capacity[k]) for k, q in quota.items()}
    ties = dict(zip(sizes, rng.random(len(sizes))))
    order = sorted(sizes, key=lambda k: (-(quota[k] - counts[k]), ties[k]))
    remaining = total - sum(counts.values())
    while remaining > 0:
        open_strata = [k for k in order if counts[k] < capacity[k]][:remaining]
        if not open_strata:
            break
        for k in open_strata:
            counts[k] += 1
        remaining -= len(open_strata)
    return counts


def _count(n: int, fraction: float) -> int:
    return 0 if fraction <= 0 else max(1, int(math.floor(n * fraction + 0.5)))


def _check_sizes(test_size: float, val_size: float) -> None:
    for name, value in (("--test-size", test_size), ("--val-size", val_size)):
        if not 0 <= value < 1:
            raise ConfigError(f"{name} must be in [0, 1), got {value}")
    if test_size + val_size >= 1:
        raise ConfigError(f"--test-size {test_size} + --val-size {val_size} leave nothing to train on")


def _check_subjects(df: pd.DataFrame) -> None:
    if df.empty:
        raise ManifestError(f"{df.attrs.get('source', 'manifest')}: no rows to split")
    missing = [str(r) for r, s in df["subject_id"].items() if pd.isna(s) or not str(s).strip()]
    if missing:
        raise ManifestError(
            f"{df.attrs.get('source', 'manifest')} row {missing[0]}: no subject_id"
            f"{f' (and {len(missing) - 1} more rows)' if len(missing) > 1 else ''}; run neuro-ssl validate"
        )


def _binned(values: pd.Series, column: str) -> pd.Series:
    """A numeric column with more than 10 distinct values becomes quartile bins (``q1``..``q4``)."""
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().sum() == values.notna().sum() and numeric.nunique() > 10:
        bins = pd.qcut(numeric, 4, labels=False, duplicates="drop")
        return bins.map(lambda b: f"{column} q{int(b) + 1}" if not pd.isna(b) else np.nan)
    return values
