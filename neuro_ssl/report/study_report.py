"""The label-efficiency study section of report.html, rendered from a study folder's files.

A study folder is one holding ``study.csv`` and ``summary.csv`` (``neuro-ssl study --out DIR``);
:func:`find_study_folders` finds them in a run folder so the report shows a study without being
told. The section: the curves (``curves.png``, drawn from ``study.csv`` when missing), the
summary as a methods x budgets table, the label-free table, and every file linked.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from neuro_ssl.report.run_report import _fmt, _Page, _table

LOWER_IS_BETTER = ("mae", "rmse")
REGRESSION = ("mae", "rmse", "r")


def is_study_folder(path: str | Path) -> bool:
    path = Path(path)
    return (path / "study.csv").is_file() and (path / "summary.csv").is_file()


def find_study_folders(base: str | Path) -> list[Path]:
    """``base`` itself and its direct sub-folders that are study folders, sorted."""
    base = Path(base)
    if not base.is_dir():
        return []
    candidates = [base] + sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
    return [p for p in candidates if is_study_folder(p)]


def add_study_section(page: _Page, folder: Path) -> None:
    """One "Label-efficiency study" section for ``folder`` (a key card per mode at the smallest budget)."""
    from neuro_ssl.report.plots import plot_label_efficiency

    summary = pd.read_csv(folder / "summary.csv", dtype={"budget": str, "method": str, "mode": str})
    curves = folder / "curves.png"
    if not curves.is_file() and (folder / "study.csv").is_file():
        curves = plot_label_efficiency(folder / "study.csv", page.figures_dir / f"{folder.name}_curves.png")
    body = page.image(curves, "label-efficiency curves") if curves.is_file() else ""
    body += _design(folder) + _shortcut(folder / "study.csv")
    if not summary.empty:
        metric = str(summary["metric"].iloc[0])
        _key_cards(page, summary, metric)
        body += _summary_table(summary, metric)
    body += _label_free(folder / "label_free.csv")
    names = ("study.csv", "summary.csv", "label_free.csv", "draws.csv", "study.yaml", "curves.png")
    body += "<p>" + " · ".join(page.link(folder / n) for n in names) + f" · {page.link(folder / 'runs', 'runs/')}</p>"
    page.add(f"Label-efficiency study: {folder.name}", body)


def _design(folder: Path) -> str:
    """One sentence on what the numbers are, read from study.yaml (early stopping said out loud)."""
    import yaml

    try:
        config = yaml.safe_load((folder / "study.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return ""
    stopping = ("early stopping on the validation split (its labels are used for model selection)"
                if config.get("use_val", True) else "a fixed number of epochs (no label outside the budget)")
    return (f"<p>Test {config.get('metric_resolved', '')} of {', '.join(map(str, config.get('modes', [])))} "
            f"fine-tuning per method and label budget, over {config.get('draws', '?')} draw(s) of the labelled "
            f"subjects (nested across budgets), with {stopping}. Each cell's 95% subject-bootstrap interval is in "
            f"study.csv.</p>")


def _shortcut(study_csv: Path) -> str:
    """evaluate's shortcut baseline on the study's test scans, when the cells recorded it."""
    if not study_csv.is_file():
        return ""
    values = pd.to_numeric(pd.read_csv(study_csv).get("shortcut_baseline_auc", pd.Series(dtype=float)),
                           errors="coerce").dropna()
    if values.empty:
        return ""
    return (f"<p>Trivial summaries of the same test scans (background, field-of-view edge, intensity, "
            f"volume; <code>neuro-ssl audit</code>) reach AUC {_fmt(values.mean())}: the dotted line. A curve "
            "near it has learnt little beyond them.</p>")


def _key_cards(page: _Page, summary: pd.DataFrame, metric: str) -> None:
    smallest = summary.sort_values("subjects_per_class", kind="stable")["budget"].iloc[0]
    lower = metric in LOWER_IS_BETTER
    for mode, rows in summary[summary["budget"] == smallest].groupby("mode", sort=False):
        rows = rows.dropna(subset=["mean"])
        if rows.empty:
            continue
        best = rows.loc[rows["mean"].idxmin() if lower else rows["mean"].idxmax()]
        unit = "subjects" if metric in REGRESSION else "per class"
        page.add_key(f"{metric.upper()} at {smallest} {unit} ({mode})", f"{best['method']} {_fmt(best['mean'])}",
                     f"sd {_fmt(best['sd'])} over {int(best['draws'])} draw(s)")


def _summary_table(summary: pd.DataFrame, metric: str) -> str:
    unit = " subjects" if metric in REGRESSION else " per class"
    header = {b: b if b == "all" else f"{b}{unit}" for b in dict.fromkeys(summary["budget"])}
    rows = []
    for (method, mode), group in summary.groupby(["method", "mode"], sort=False):
        cells = {header[c["budget"]]: f"{_fmt(c['mean'])}{_sd(c['sd'])} ({int(c['draws'])})" for _, c in group.iterrows()}
        rows.append({"method": method, "mode": mode, **{h: cells.get(h, "") for h in header.values()}})
    return _table(rows) + f'<p class="muted">test {metric}: mean ± sd over draws (number of draws)</p>'


def _sd(value: float) -> str:
    return f" ± {_fmt(value)}" if math.isfinite(value) else ""


def _label_free(path: Path) -> str:
    if not path.is_file() or path.stat().st_size < 2:
        return ""
    table = pd.read_csv(path)
    keep = [c for c in ("method", "source", "age_mae_years", "knn_accuracy", "knn_mae", "alignment", "uniformity",
                        "n_scans", "n_subjects") if c in table.columns]
    rows = [{k: (_fmt(v) if isinstance(v, float) else v) for k, v in row.items()} for row in table[keep].to_dict("records")]
    return ("<h3>Label-free, on the held-out test scans</h3>" + _table(rows) +
            '<p class="muted">age MAE (years) of ridge on frozen embeddings and kNN, both cross-validated by subject; '
            "alignment (lower: views of a scan closer) and uniformity (lower: embeddings spread more evenly), "
            "Wang &amp; Isola 2020.</p>")
