"""What is wrong with a run, in one sentence each, read from the files the steps wrote.

A report that prints "AUC 0.779" above a classifier that calls every test scan CN argues for a
method that did not work. These functions read results (never compute them) and return the
warnings a reader must see first, each with its number:

- :func:`evaluation_flags` (``metrics.json``): one predicted class for every scan (sensitivity
  or specificity 0), an AUC whose interval includes 0.5 (or lies below it), an AUC not above
  the shortcut baseline;
- :func:`pretraining_flags` (``metrics.csv``): an age probe whose error grew over pretraining, a
  diagnosis probe below chance at the last epoch;
- :func:`saliency_flags` (``regions.csv``, ``checks.json``): saliency below chance in the
  planted or named regions, a failed randomization or deletion check;
- :func:`audit_flags` (``audit.csv``): an image summary that predicts the label alone.

The CLI prints the same sentences where a command writes those files (evaluate, pretrain,
saliency) and ``neuro-ssl report`` puts them at the top of the page.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

#: randomization check: Spearman of trained vs fully randomized maps at or above this fails
RANDOMIZATION_FAIL = 0.3
#: regions whose names say they hold the effect (a per-scan truth mask, a diagnosis region)
FOCUS_WORDS = ("truth", "diagnosis", "planted", "target", "lesion")


def _number(value: Any) -> float | None:
    if isinstance(value, Mapping):
        value = value.get("value")
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def evaluation_flags(name: str, metrics: Mapping[str, Any]) -> list[str]:
    """Warnings about one evaluation (``metrics.json`` of ``neuro-ssl evaluate``)."""
    if metrics.get("task") == "regression":
        return []
    flags = _one_class_flag(name, metrics)
    auc = metrics.get("auc") if isinstance(metrics.get("auc"), Mapping) else {}
    value, low, high = _number(auc), _number(auc.get("ci_low")), _number(auc.get("ci_high"))
    if value is not None and low is not None and high is not None and low <= 0.5 <= high:
        flags.append(f"{name}: AUC {value:.3f} [{low:.3f}, {high:.3f}]: the 95% interval includes 0.5, so this test "
                     f"set cannot tell the model from chance.")
    elif value is not None and high is not None and high < 0.5:
        flags.append(f"{name}: AUC {value:.3f} [{_text(low)}, {high:.3f}] is below chance: the model ranks the "
                     f"classes the wrong way round (swapped classes, or a shortcut that flips on the test set?).")
    baseline = _number(metrics.get("shortcut_baseline_auc"))
    if value is not None and baseline is not None and value <= baseline:
        flags.append(f"{name}: AUC {value:.3f} is not above the {baseline:.3f} that trivial summaries of the same "
                     f"inputs reach (background, edges, intensity, volume: the shortcut baseline); see neuro-ssl audit.")
    return flags


def _one_class_flag(name: str, metrics: Mapping[str, Any]) -> list[str]:
    classes = [str(c) for c in metrics.get("classes") or []]
    matrix = metrics.get("confusion_matrix")
    sensitivity, specificity = _number(metrics.get("sensitivity")), _number(metrics.get("specificity"))
    rates = f"sensitivity {_text(sensitivity)}, specificity {_text(specificity)}"
    if matrix and classes:
        predicted = [sum(row[k] for row in matrix) for k in range(len(classes))]
        total = sum(predicted)
        used = [k for k, n in enumerate(predicted) if n]
        if total and len(used) == 1:
            return [f"{name}: predicts {classes[used[0]]} for every one of the {total} test scans ({rates}); a "
                    f"ranking (AUC) may exist, but no decision does."]
    if len(classes) == 2 and (sensitivity == 0 or specificity == 0):
        missed = classes[1] if sensitivity == 0 else classes[0]
        return [f"{name}: no {missed} test scan is predicted {missed} ({rates})."]
    return []


def _text(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.3f}"


def pretraining_flags(metrics: pd.DataFrame, name: str = "pretraining") -> list[str]:
    """Warnings about the online probes of a pretraining run (its ``metrics.csv``)."""
    flags = []
    ages = _series(metrics, "probe_age_mae")
    if len(ages) >= 2 and ages.iloc[-1] > ages.iloc[0]:
        flags.append(f"{name}: the age probe's error grew from {ages.iloc[0]:.1f} to {ages.iloc[-1]:.1f} years "
                     f"(epoch {_epoch(metrics, ages.index[0])} to {_epoch(metrics, ages.index[-1])}): the embedding "
                     f"lost age information instead of gaining it.")
    aucs = _series(metrics, "probe_dx_auc")
    if len(aucs):
        n = _series(metrics, "probe_n").get(aucs.index[-1])
        bound = chance_auc_bound(int(n)) if n is not None and n > 0 else 0.5
        if aucs.iloc[-1] < bound:
            noise = "" if bound == 0.5 else f" beyond what chance gives on {int(n)} probe scans (below {bound:.2f})"
            flags.append(f"{name}: the diagnosis probe's AUC is {aucs.iloc[-1]:.2f} at the last probed epoch "
                         f"({_epoch(metrics, aucs.index[-1])}), below chance (0.5){noise}.")
    return flags


def chance_auc_bound(n: int) -> float:
    """The lower 95 % bound of an AUC that chance gives on ``n`` scans split evenly between two classes.

    Under the null an AUC has variance (n1 + n2 + 1) / (12 n1 n2) (Hanley & McNeil, Radiology
    1982; Mann-Whitney), which is ~1 / (3 n) for n1 = n2 = n / 2: the bound is
    0.5 - 1.96 / sqrt(3 n). An online probe cross-validated on a small validation manifest below
    0.5 but above this bound is noise, not a finding (25 scans: 0.27).
    """
    return 0.5 - 1.96 / math.sqrt(3.0 * max(int(n), 1))


def _series(table: pd.DataFrame, column: str) -> pd.Series:
    if column not in table:
        return pd.Series(dtype=float)
    return pd.to_numeric(table[column], errors="coerce").dropna()


def _epoch(table: pd.DataFrame, index) -> str:
    return str(table.loc[index, "epoch"]) if "epoch" in table else str(index + 1)


def saliency_flags(regions: pd.DataFrame | None, checks: Mapping[str, Any] | None, name: str = "saliency") -> list[str]:
    """Warnings from ``regions.csv`` (share against chance) and ``checks.json`` (sanity checks)."""
    flags = []
    for row in _regions_to_check(regions):
        flags.append(f"{name}: {100 * row['mean_share']:.1f} % of the saliency lies in {row['region']}, below the "
                     f"{100 * row['chance_share']:.1f} % a uniform map would put there (ratio to chance "
                     f"{row['ratio_to_chance']:.2f}): the maps do not point at it.")
    checks = checks or {}
    stages = checks.get("randomization") or []
    rho = _number(stages[-1].get("spearman")) if stages and isinstance(stages[-1], Mapping) else None
    if rho is not None and rho >= RANDOMIZATION_FAIL:
        flags.append(f"{name} check failed: with every weight re-initialized the maps keep a rank correlation of "
                     f"{rho:.2f} with the trained maps (a pass is below {RANDOMIZATION_FAIL}): they show the input or "
                     f"the architecture, not what the model learned.")
    deletion = (checks.get("deletion") or {}).get("5")
    if isinstance(deletion, Mapping):
        salient, random = _number(deletion.get("salient_drop")), _number(deletion.get("random_drop"))
        if salient is not None and random is not None and abs(salient) <= abs(random):
            flags.append(f"{name} check failed: deleting the 5 % most salient brain voxels changes the explained "
                         f"score by {salient:.3f}, no more than deleting as many random voxels ({random:.3f}).")
    return flags


def _regions_to_check(regions: pd.DataFrame | None) -> list[dict]:
    """Below-chance regions the maps should point at: the named ones (truth, diagnosis, ...), or
    every region when at most three masks were given on purpose (an atlas's other regions are not)."""
    needed = {"region", "mean_share", "chance_share", "ratio_to_chance"}
    if regions is None or not needed <= set(regions.columns) or regions.empty:
        return []
    names = regions["region"].astype(str).str.lower()
    focus = regions[names.map(lambda n: any(w in n for w in FOCUS_WORDS))]
    chosen = focus if len(focus) else (regions if len(regions) <= 3 else regions.iloc[:0])
    ratio = pd.to_numeric(chosen["ratio_to_chance"], errors="coerce")
    return chosen[ratio < 1].to_dict("records")


#: an image summary reaching this AUC alone is a likely shortcut (as ``neuro-ssl audit`` says)
SHORTCUT_AUC = 0.70


def audit_flags(audit: pd.DataFrame, name: str = "audit") -> list[str]:
    """Image summaries (background, edges, intensity, volume) that predict the label alone (``audit.csv``)."""
    if not {"feature", "kind", "auc"} <= set(audit.columns):
        return []
    auc = pd.to_numeric(audit["auc"], errors="coerce")
    found = audit[(audit["kind"] == "image") & (auc >= SHORTCUT_AUC)]
    return [f"{name}: {row['feature']} alone predicts the label with AUC {float(row['auc']):.2f} "
            f"[{float(row['ci_low']):.2f}, {float(row['ci_high']):.2f}] without looking at anatomy: a likely shortcut."
            for row in found.to_dict("records")]


# ---------------------------------------------------------------- from folders

def read_evaluation_flags(folder: Path, name: str | None = None) -> list[str]:
    path = Path(folder) / "metrics.json"
    if not path.is_file():
        return []
    try:
        metrics = json.loads(path.read_text())
    except ValueError:
        return []
    return evaluation_flags(name or Path(folder).name, metrics) if isinstance(metrics, dict) else []


def read_pretraining_flags(run: Path, name: str = "pretraining") -> list[str]:
    path = Path(run) / "metrics.csv"
    if not path.is_file():
        return []
    try:
        return pretraining_flags(pd.read_csv(path), name)
    except (ValueError, pd.errors.ParserError):
        return []


def read_saliency_flags(folder: Path, name: str = "saliency") -> list[str]:
    folder = Path(folder)
    regions = pd.read_csv(folder / "regions.csv") if (folder / "regions.csv").is_file() else None
    checks = None
    if (folder / "checks.json").is_file():
        try:
            checks = json.loads((folder / "checks.json").read_text())
        except ValueError:
            checks = None
    return saliency_flags(regions, checks if isinstance(checks, dict) else None, name)
