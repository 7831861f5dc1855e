"""Which rows a supervised task uses: the target column, the classes, and the label budget.

Classification on any column: ``--classes CN,AD`` names the classes in order (code 0, 1, ...;
the positive class of a binary task is the second). On the ``diagnosis`` column the names match
through :func:`~neuro_ssl.data.manifest.diagnosis_matches` (``Dementia`` = ``AD``; ``MCI`` takes
``EMCI``/``LMCI``). Rows in no class, or without a label, are dropped and counted.
Regression on any numeric column (``age`` for brain age).

The label budget (``--labels-per-class N``) counts *subjects*: N subjects are drawn per class
(seeded), and every scan of a drawn subject that carries that class is used (regression: N
subjects in all). Labelling a person
once buys all their visits; counting scans instead would let one subject with many visits fill
the budget alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from neuro_ssl.data.manifest import diagnosis_matches
from neuro_ssl.data.screening import nothing_left
from neuro_ssl.errors import ConfigError, ManifestError

TASKS = ("auto", "classification", "regression")
TARGET = "_target"
DIAGNOSIS_COLUMNS = ("diagnosis", "diagnosis_bl")


@dataclass
class LabelSpec:
    """A resolved task: what is predicted and how many rows were left out and why."""

    task: str
    label: str
    classes: tuple[str, ...] = ()
    n_rows: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        what = f"{self.task} of '{self.label}'" + (f" ({', '.join(self.classes)})" if self.classes else "")
        drops = "; ".join(f"{n} {why}" for why, n in self.dropped.items() if n)
        text = f"{what}: {self.n_rows} rows" + (f", dropped {drops}" if drops else "")
        unlabelled = self.dropped.get("without a label", 0)
        if self.n_rows == 0 and unlabelled and unlabelled == sum(self.dropped.values()):
            text += (f"; '{self.label}' is empty in every row: is the label under another column name "
                     f"(--label), or missing from this manifest?")
        return text


def _source(df: pd.DataFrame) -> str:
    return df.attrs.get("source", "manifest")


def resolve_task(df: pd.DataFrame, label: str, task: str = "auto", classes=()) -> str:
    """``classification`` or ``regression`` for ``label``; refuses impossible combinations."""
    if task not in TASKS:
        raise ConfigError(f"--task must be one of {', '.join(TASKS)}, got '{task}'")
    if label not in df.columns:
        shown = ", ".join(map(str, df.columns[:20]))
        raise ManifestError(f"{_source(df)}: no column '{label}' to use as --label (columns: {shown})")
    if task == "auto":
        numeric = pd.api.types.is_numeric_dtype(df[label]) and label not in DIAGNOSIS_COLUMNS
        task = "classification" if classes or not numeric else "regression"
    if task == "regression" and classes:
        raise ConfigError(f"--classes {','.join(classes)} makes no sense for a regression on '{label}'")
    return task


def prepare_labels(df: pd.DataFrame, label: str, task: str = "auto", classes=()) -> tuple[pd.DataFrame, LabelSpec]:
    """Rows usable for the task, with the target in column ``_target`` (class code or float)."""
    classes = tuple(str(c) for c in classes)
    task = resolve_task(df, label, task, classes)
    has_label = df[label].notna()
    dropped = {"without a label": int((~has_label).sum())}
    if task == "regression":
        values = _numeric_target(df, label)
        out = df[has_label].copy()
        out[TARGET] = values[has_label].astype(float)
        return out, LabelSpec(task, label, (), len(out), dropped)
    if not classes:
        classes = tuple(sorted(df.loc[has_label, label].astype(str).unique()))
    codes = class_codes(df[label], classes, label)
    dropped[f"in none of the classes {','.join(classes)}"] = int((has_label & (codes < 0)).sum())
    out = df[codes >= 0].copy()
    out[TARGET] = codes[codes >= 0].astype(int)
    return out, LabelSpec("classification", label, classes, len(out), dropped)


def class_codes(values: pd.Series, classes: tuple[str, ...], label: str) -> np.ndarray:
    """Code of each value's class, -1 when it is in none; a value in two classes is an error."""
    codes = np.full(len(values), -1, dtype=int)
    for code, name in enumerate(classes):
        member = _matches(values, name, label)
        clash = member & (codes >= 0)
        if clash.any():
            first = values[clash].iloc[0]
            raise ConfigError(f"--classes: value '{first}' of '{label}' belongs to both "
                              f"'{classes[codes[clash][0]]}' and '{name}'")
        codes[member] = code
    return codes


def _matches(values: pd.Series, name: str, label: str) -> np.ndarray:
    present = values.notna().to_numpy()
    if label in DIAGNOSIS_COLUMNS:
        return np.array([p and diagnosis_matches(v, name) for v, p in zip(values, present)], dtype=bool)
    if pd.api.types.is_numeric_dtype(values):
        try:
            return (values.to_numpy(float) == float(name)) & present
        except ValueError:
            return np.zeros(len(values), dtype=bool)
    return (values.astype(str).str.strip().to_numpy() == name) & present


def _numeric_target(df: pd.DataFrame, label: str) -> pd.Series:
    values = pd.to_numeric(df[label], errors="coerce")
    bad = values.isna() & df[label].notna()
    if bad.any():
        row = bad.idxmax()
        raise ManifestError(f"{_source(df)} row {row}: column '{label}' is not numeric ('{df.loc[row, label]}'); "
                          f"regression needs numbers (use --task classification --classes ... for categories)")
    return values


def check_classes_present(df: pd.DataFrame, spec: LabelSpec, what: str = "training") -> None:
    """Every class needs at least one row in the training data, or the model cannot learn it."""
    if spec.task != "classification":
        return
    counts = np.bincount(df[TARGET].to_numpy(int), minlength=len(spec.classes))
    absent = [c for c, n in zip(spec.classes, counts) if n == 0]
    if absent:
        raise ManifestError(f"{_source(df)}: class {', '.join(absent)} has no rows in the {what} data "
                          f"(counts: {', '.join(f'{c} {n}' for c, n in zip(spec.classes, counts))})")


def select_label_budget(df: pd.DataFrame, labels_per_class: int, seed: int = 0,
                        by_class: bool = True) -> tuple[pd.DataFrame, dict[str, int]]:
    """Draw ``labels_per_class`` subjects per class (seeded); keep their scans of that class.

    Each class draws from a seeded permutation of its sorted subject ids with its own generator
    (seed, class code), so budgets are nested: the 5 subjects drawn at N=5 are among the 10 at
    N=10 with the same seed. Returns the rows and the number of subjects drawn per class code
    (fewer than asked when a class has fewer subjects). ``by_class=False`` (regression): N
    subjects in all, under the key ``"all"``.
    """
    if labels_per_class < 1:
        raise ConfigError(f"--labels-per-class must be >= 1, got {labels_per_class}")
    keep = np.zeros(len(df), dtype=bool)
    drawn: dict[str, int] = {}
    subjects = df["subject_id"].astype(str).to_numpy()
    targets = df[TARGET].to_numpy(int) if by_class else np.zeros(len(df), dtype=int)
    for code in sorted(set(targets.tolist())):
        pool = sorted(set(subjects[targets == code]))
        order = np.random.default_rng([seed, code]).permutation(len(pool))
        chosen = [pool[i] for i in order[:labels_per_class]]
        keep |= (targets == code) & np.isin(subjects, chosen)
        drawn[str(code) if by_class else "all"] = len(chosen)
    return df[keep].copy(), drawn


def select_rows(train_df: pd.DataFrame, val_df: pd.DataFrame | None, label: str, task: str = "auto", classes=(),
                labels_per_class: int = 0, seed: int = 0):
    """``(train rows, val rows or None, LabelSpec, budget)`` for a fine-tuning run.

    The classes are resolved on the training manifest and reused for validation; ``budget`` maps
    each class name to the number of subjects drawn (empty without a budget).
    """
    train, spec = prepare_labels(train_df, label, task, classes)
    if train.empty:
        removed = [f"{n} {why}" for why, n in spec.dropped.items() if n]
        raise nothing_left(_source(train_df), len(train_df), removed, f"train on for {spec.describe().split(':')[0]}")
    budget = {}
    if labels_per_class:
        by_class = spec.task == "classification"
        train, drawn = select_label_budget(train, labels_per_class, seed=seed, by_class=by_class)
        budget = {spec.classes[int(k)] if by_class else k: n for k, n in drawn.items()}
    check_classes_present(train, spec)
    val = None
    if val_df is not None:
        val, _ = prepare_labels(val_df, label, spec.task, spec.classes)
        if val.empty:
            raise ManifestError(f"{val_df.attrs.get('source', 'validation manifest')}: no row has a usable '{label}'")
    return train, val, spec, budget
