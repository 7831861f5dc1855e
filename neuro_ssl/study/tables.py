"""The study's tables, read back from the files its units wrote (so a resumed study tabulates
everything, whichever run computed it).

- ``study.csv``: one row per method, mode, budget and draw: ``metric, value, ci_low, ci_high``
  (95 % subject-bootstrap interval on the test subjects), ``n`` test scans, ``n_subjects``,
  ``subjects_per_class`` (labelled subjects per class actually drawn, mean over classes;
  regression: subjects in all), the draw's ``seed``, fine-tuning's ``best_epoch`` and the cell's
  wall ``seconds`` (fine-tuning and evaluation) and ``evaluate``'s ``shortcut_baseline_auc`` (what
  trivial summaries of the same test scans reach; the same in every row of one study);
- ``summary.csv``: per method, mode and budget, the ``mean``, ``sd`` (ddof 1), ``min`` and ``max``
  of the value over draws, and how many draws it rests on;
- ``label_free.csv``: one row per encoder (:mod:`neuro_ssl.study.label_free`);
- ``draws.csv`` (written when the study starts): ``budget, draw, seed, class, subject_id``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from neuro_ssl._utils.files import write_csv
from neuro_ssl.pipeline.stamps import read_stamp
from neuro_ssl.study.plan import Plan

STUDY_COLUMNS = ["method", "mode", "budget", "draw", "seed", "subjects_per_class", "metric", "value",
                 "ci_low", "ci_high", "n", "n_subjects", "best_epoch", "seconds", "shortcut_baseline_auc"]
SUMMARY_COLUMNS = ["method", "mode", "budget", "subjects_per_class", "metric", "draws", "mean", "sd", "min", "max"]


def write_tables(plan: Plan, units) -> dict[str, Path]:
    """Write study.csv, summary.csv and label_free.csv under the study folder; return their paths."""
    study = study_table(plan, units)
    paths = {"study": plan.out / "study.csv", "summary": plan.out / "summary.csv",
             "label_free": plan.out / "label_free.csv", "draws": plan.out / "draws.csv"}
    write_csv(paths["study"], study)
    write_csv(paths["summary"], summary_table(study))
    write_csv(paths["label_free"], label_free_table(plan))
    return paths


def study_table(plan: Plan, units) -> pd.DataFrame:
    """One row per finished fine-tuning unit, in the plan's order."""
    per_class = _subjects_per_class(plan.draws)
    rows = []
    for unit in units:
        if unit.kind != "finetune" or not all(Path(p).exists() for p in unit.outputs):
            continue
        budget, draw = unit.cell["budget"], unit.cell["draw"]
        metrics = json.loads((unit.folder / "eval" / "metrics.json").read_text())
        meta = yaml.safe_load((unit.folder / "model.yaml").read_text()) or {}
        entry = metrics.get(plan.metric) or {}
        rows.append({**unit.cell, "seed": meta.get("seed"),
                     "subjects_per_class": per_class.get((budget, draw), np.nan), "metric": plan.metric,
                     "value": _number(entry.get("value")), "ci_low": _number(entry.get("ci_low")),
                     "ci_high": _number(entry.get("ci_high")), "n": metrics.get("n"),
                     "n_subjects": metrics.get("n_subjects"), "best_epoch": meta.get("best_epoch"),
                     "seconds": (read_stamp(plan.state_dir, unit.name) or {}).get("seconds"),
                     "shortcut_baseline_auc": _number((metrics.get("shortcut_baseline_auc") or {}).get("value"))})
    return pd.DataFrame(rows, columns=STUDY_COLUMNS)


def summary_table(study: pd.DataFrame) -> pd.DataFrame:
    """Mean and spread over draws per method, mode and budget (first-seen order kept)."""
    rows = []
    for (method, mode, budget), group in study.groupby(["method", "mode", "budget"], sort=False):
        values = group["value"].to_numpy(float)
        finite = values[np.isfinite(values)]
        rows.append({"method": method, "mode": mode, "budget": budget,
                     "subjects_per_class": float(group["subjects_per_class"].mean()), "metric": group["metric"].iloc[0],
                     "draws": int(len(finite)), "mean": float(finite.mean()) if len(finite) else np.nan,
                     "sd": float(finite.std(ddof=1)) if len(finite) > 1 else np.nan,
                     "min": float(finite.min()) if len(finite) else np.nan,
                     "max": float(finite.max()) if len(finite) else np.nan})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def label_free_table(plan: Plan) -> pd.DataFrame:
    rows = []
    for method in plan.methods:
        path = plan.out / "label_free" / method.name / "label_free.json"
        if path.is_file():
            rows.append(json.loads(path.read_text()))
    return pd.DataFrame(rows)


def _subjects_per_class(draws: pd.DataFrame) -> dict[tuple[str, int], float]:
    """(budget, draw) -> labelled subjects per class, mean over classes."""
    counts = draws.groupby(["budget", "draw", "class"])["subject_id"].nunique()
    return {key: float(value) for key, value in counts.groupby(level=["budget", "draw"]).mean().items()}


def _number(value) -> float:
    return np.nan if value is None else float(value)


def format_summary(summary_csv: str | Path, label_free_csv: str | Path | None = None) -> str:
    """The summary as a terminal table (methods x budgets, ``mean +- sd (draws)``), then the label-free one."""
    summary = pd.read_csv(summary_csv, dtype={"budget": str, "method": str, "mode": str})
    if summary.empty:
        return "no cell has finished yet"
    budgets = list(dict.fromkeys(summary["budget"]))
    summary["cell"] = [f"{m:.3f} +- {s:.3f} ({n})" if np.isfinite(s) else f"{m:.3f} ({n})"
                       for m, s, n in zip(summary["mean"], summary["sd"], summary["draws"])]
    table = summary.pivot(index=["method", "mode"], columns="budget", values="cell")
    order = list(dict.fromkeys(zip(summary["method"], summary["mode"])))
    table = table.reindex(index=order, columns=budgets).fillna("")
    unit = " subjects" if summary["metric"].iloc[0] in ("mae", "rmse", "r") else " per class"
    table.columns = [b if b == "all" else f"{b}{unit}" for b in budgets]
    lines = [f"test {summary['metric'].iloc[0]}, mean +- sd over draws (draws) by labelled subjects:", table.to_string()]
    if label_free_csv is not None and Path(label_free_csv).is_file() and Path(label_free_csv).stat().st_size > 1:
        free = pd.read_csv(label_free_csv)
        keep = [c for c in ("method", "age_mae_years", "knn_accuracy", "knn_mae", "alignment", "uniformity", "n_scans")
                if c in free.columns]
        lines += ["label-free, on the test scans:", free[keep].to_string(index=False, float_format=lambda v: f"{v:.3f}")]
    return "\n".join(lines)
