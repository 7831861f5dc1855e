"""PNG figures for evaluation and embeddings, rendered from the files ``evaluate``/``cluster`` write.

Each function reads a table or JSON it is given and writes one PNG atomically. Figures are drawn
on a bare ``matplotlib.figure.Figure`` with the Agg canvas: no pyplot global state, no display
needed, safe in worker processes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from neuro_ssl._utils.files import atomic_path

DPI = 120


def _figure(width_in: float, height_in: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, out_png: str | Path) -> Path:
    out_png = Path(out_png)
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png")
    return out_png


def plot_roc(roc_csv: str | Path, out_png: str | Path, title: str = "ROC") -> Path:
    """ROC curves from a table with columns ``curve, fpr, tpr`` (and optional ``auc``), one line per curve."""
    table = pd.read_csv(roc_csv)
    fig = _figure(4.5, 4.5)
    ax = fig.add_subplot(1, 1, 1)
    for name, curve in table.groupby("curve", sort=False):
        label = str(name)
        if "auc" in curve and np.isfinite(curve["auc"].iloc[0]):
            label += f" (AUC {curve['auc'].iloc[0]:.3f})"
        ax.plot(curve["fpr"], curve["tpr"], drawstyle="default", label=label)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate (1 - specificity)",
           ylabel="true positive rate (sensitivity)", title=title)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, out_png)


def plot_confusion(metrics_json: str | Path, out_png: str | Path, title: str = "Confusion matrix") -> Path:
    """The ``confusion_matrix`` (rows: true class, columns: predicted) of a metrics.json, with counts."""
    metrics = json.loads(Path(metrics_json).read_text())
    counts = np.asarray(metrics["confusion_matrix"], dtype=int)
    classes = [str(c) for c in metrics["classes"]]
    size = 1.2 + 0.9 * len(classes)
    fig = _figure(size + 1.0, size)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(counts, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046)
    threshold = counts.max() / 2 if counts.size else 0
    for (i, j), value in np.ndenumerate(counts):
        ax.text(j, i, str(value), ha="center", va="center", color="white" if value > threshold else "black")
    ax.set(xticks=range(len(classes)), yticks=range(len(classes)), xticklabels=classes, yticklabels=classes,
           xlabel="predicted", ylabel="true", title=title)
    return _save(fig, out_png)


def plot_regression(predictions_csv: str | Path, out_png: str | Path, label: str = "value") -> Path:
    """Predicted against true values (``true_value``, ``predicted_value`` columns) with the identity line."""
    table = pd.read_csv(predictions_csv)
    true, pred = table["true_value"].to_numpy(float), table["predicted_value"].to_numpy(float)
    fig = _figure(4.5, 4.5)
    ax = fig.add_subplot(1, 1, 1)
    ax.scatter(true, pred, s=14, alpha=0.7)
    low, high = np.nanmin(np.r_[true, pred]), np.nanmax(np.r_[true, pred])
    ax.plot([low, high], [low, high], linestyle="--", color="grey", linewidth=0.8)
    ax.set(xlabel=f"true {label}", ylabel=f"predicted {label}", title=f"{label}: predicted vs true")
    return _save(fig, out_png)


def plot_embedding_map(clusters_csv: str | Path, out_png: str | Path,
                       color_by: tuple[str, ...] = ("cluster", "diagnosis", "age")) -> Path:
    """One panel per column of ``color_by`` over the 2D map (``map_x``, ``map_y``) of a clusters.csv.

    Numeric columns get a continuous colour bar; others one colour per category. Columns that are
    absent or empty get a panel saying so, so the figure layout stays the same.
    """
    table = pd.read_csv(clusters_csv, dtype={"subject_id": str, "session_id": str})
    fig = _figure(4.2 * len(color_by), 4.0)
    for k, column in enumerate(color_by, start=1):
        ax = fig.add_subplot(1, len(color_by), k)
        ax.set(title=f"coloured by {column}", xlabel="map 1", ylabel="map 2")
        values = table[column] if column in table else pd.Series(np.nan, index=table.index)
        if values.isna().all():
            ax.scatter(table["map_x"], table["map_y"], s=12, color="lightgrey")
            ax.text(0.5, 0.5, f"no '{column}' values", transform=ax.transAxes, ha="center")
        elif pd.api.types.is_numeric_dtype(values) and column != "cluster":
            points = ax.scatter(table["map_x"], table["map_y"], c=values, s=12, cmap="viridis")
            fig.colorbar(points, ax=ax, fraction=0.046)
        else:
            _categorical_scatter(ax, table, values.astype("string").fillna("missing"))
    return _save(fig, out_png)


def _categorical_scatter(ax, table: pd.DataFrame, categories: pd.Series) -> None:
    for name in sorted(categories.unique()):
        keep = (categories == name).to_numpy()
        ax.scatter(table["map_x"][keep], table["map_y"][keep], s=12, label=str(name))
    ax.legend(fontsize=7, markerscale=1.2, loc="best")


def plot_audit(audit_csv: str | Path, out_png: str | Path, title: str = "Shortcut audit",
               threshold: float = 0.70) -> Path:
    """Horizontal bars of each feature's cross-validated AUC (or R^2) with its 95 % interval.

    Image summaries blue, covariates grey; dashed lines at chance (0.5) and at the shortcut
    threshold. Reads ``audit.csv`` as ``neuro-ssl audit`` writes it.
    """
    table = pd.read_csv(audit_csv)
    regression = bool((table["metric"] == "r2").all())
    value = table["r2" if regression else "auc"].to_numpy(dtype=float)
    low, high = table["ci_low"].to_numpy(dtype=float), table["ci_high"].to_numpy(dtype=float)
    fig = _figure(6.4, 0.32 * len(table) + 1.4)
    ax = fig.add_subplot(1, 1, 1)
    order = np.arange(len(table))[::-1]
    colours = ["#1f77b4" if k == "image" else "#8c8c8c" for k in table["kind"]]
    ax.barh(order, value, color=colours, height=0.7)
    err = np.vstack([np.clip(value - low, 0, None), np.clip(high - value, 0, None)])
    ax.errorbar(value, order, xerr=np.nan_to_num(err), fmt="none", ecolor="black", elinewidth=0.8, capsize=2)
    ax.set_yticks(order)
    ax.set_yticklabels(table["feature"], fontsize=8)
    if regression:
        ax.axvline(0.0, color="black", linewidth=0.8)
        ax.set_xlabel("cross-validated R² (by subject)")
    else:
        ax.axvline(0.5, color="black", linewidth=0.8, linestyle=":")
        ax.axvline(threshold, color="#d62728", linewidth=0.8, linestyle="--")
        ax.set_xlim(0.0, 1.0)
        ax.set_xlabel(f"cross-validated AUC (by subject); dashed: shortcut threshold {threshold:.2f}")
    ax.set_title(title, fontsize=10)
    return _save(fig, out_png)


#: regression metrics: budgets count subjects in all, not per class
REGRESSION_METRICS = ("mae", "rmse", "r")


def plot_label_efficiency(study_csv: str | Path, out_png: str | Path, title: str = "") -> Path:
    """Label-efficiency curves from a study.csv: one panel per mode, one line per method.

    x: labelled subjects per class actually drawn (regression: subjects in all), log scale, ticks
    named by budget; y: the test metric. Line: mean over draws; band: mean +- 1 sd over draws;
    dots: the single draws. AUC panels carry chance (0.5) and, when study.csv has it, the AUC that
    trivial summaries of the same test scans reach (``shortcut_baseline_auc``, dotted).
    """
    table = pd.read_csv(study_csv, dtype={"budget": str, "method": str, "mode": str})
    modes = list(dict.fromkeys(table["mode"])) or ["(no cell finished)"]
    fig = _figure(4.8 * len(modes), 4.2)
    first = None
    for k, mode in enumerate(modes, start=1):
        ax = fig.add_subplot(1, len(modes), k, sharey=first)
        first = first or ax
        rows = table[table["mode"] == mode]
        for method, cells in rows.groupby("method", sort=False):
            _curve(ax, cells, str(method))
        _label_axes(ax, rows, str(mode), table["metric"].iloc[0] if len(table) else "metric")
    if title:
        fig.suptitle(title)
    return _save(fig, out_png)


def _curve(ax, cells: pd.DataFrame, method: str) -> None:
    stats = cells.groupby("budget", sort=False).agg(x=("subjects_per_class", "mean"), mean=("value", "mean"),
                                                    sd=("value", "std")).sort_values("x")
    line, = ax.plot(stats["x"], stats["mean"], marker="o", label=method)
    spread = stats["sd"].fillna(0.0)
    ax.fill_between(stats["x"], stats["mean"] - spread, stats["mean"] + spread, color=line.get_color(), alpha=0.2,
                    linewidth=0)
    ax.scatter(cells["subjects_per_class"], cells["value"], s=9, color=line.get_color(), alpha=0.6)


def _label_axes(ax, rows: pd.DataFrame, mode: str, metric: str) -> None:
    ticks = rows.groupby("budget", sort=False)["subjects_per_class"].mean().sort_values()
    if len(ticks) and (ticks > 0).all():
        ax.set_xscale("log")
    ax.set_xticks(ticks.to_numpy(), [f"all\n({x:.0f})" if b == "all" else str(b) for b, x in ticks.items()])
    ax.minorticks_off()
    if metric == "auc":
        ax.axhline(0.5, linestyle="--", color="grey", linewidth=0.8)
        shortcut = pd.to_numeric(rows.get("shortcut_baseline_auc", pd.Series(dtype=float)), errors="coerce").dropna()
        if len(shortcut):
            ax.axhline(float(shortcut.mean()), linestyle=":", color="black", linewidth=1.0,
                       label=f"trivial summaries ({shortcut.mean():.2f})")
    draws = int(rows["draw"].nunique()) if len(rows) else 0
    per = "" if metric in REGRESSION_METRICS else " per class"
    ax.set(xlabel=f"labelled subjects{per}", ylabel=f"test {metric}",
           title=f"{mode}: mean, band +-1 sd over {draws} draw(s)")
    if len(rows):
        ax.legend(fontsize=8, loc="best")
