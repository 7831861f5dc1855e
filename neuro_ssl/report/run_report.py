"""One self-contained ``report.html`` for a run folder, rendered from the files the steps wrote.

Figures are embedded (data URIs) so the page opens anywhere; every artefact is linked with a
path relative to the page, so the folder can be moved or zipped as a whole. Nothing here
computes results: it reads splits, validation JSON, ``metrics.csv``, ``metrics.json``, cluster
scores, the saliency ``summary.csv``/``regions.csv``, and lays them out, key figures first.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from neuro_ssl._utils.files import atomic_path, write_text
from neuro_ssl.report import findings
from neuro_ssl.report.page import HIDDEN, MAX_FILES_PER_FOLDER, PERCENT_COLUMNS, label  # noqa: F401 - re-exported
from neuro_ssl.report.page import Page as _Page, ci as _ci, figures as _figures, file_index as _file_index
from neuro_ssl.report.page import fmt as _fmt, render as _render, table as _table

CLASSIFICATION = ("auc", "balanced_accuracy", "sensitivity", "specificity", "mcc", "f1_macro", "shortcut_baseline_auc")
REGRESSION = ("mae", "rmse", "r")


def write_run_report(out: str | os.PathLike, *, title: str = "neuro-ssl run", splits=None, validation=None,
                     pretrain=None, finetune: Iterable = (), evaluations: Iterable = (), embeddings=None,
                     clusters=None, saliency=None, cohort=None, cohort_table: pd.DataFrame | None = None,
                     audits: Iterable = (), studies: Iterable = (), study=None, file_index: bool = True,
                     flags_out: list | None = None) -> Path:
    """Write ``out`` (an HTML file); every argument is a path the corresponding step wrote.

    ``pretrain``, ``clusters`` and ``saliency`` take one folder or a list. ``cohort_table``: the
    canonical manifest of the whole cohort (counts by diagnosis); without it the split files are
    counted. ``studies`` / ``study``: label-efficiency study folders (``neuro-ssl study``); without
    them, any study folder in the report's own folder (or one level below) is found and shown.
    What looks wrong (:mod:`neuro_ssl.report.findings`) is listed at the top of the page.
    ``file_index``: list every file under the page's folder (a run folder's report).
    ``flags_out``: a list that receives the warnings shown at the top (for the CLI to print).
    """
    out = Path(out)
    page = _Page(out)
    parts = _read_splits(Path(splits)) if splits else {}
    _cohort_section(page, cohort, cohort_table, parts)
    if validation:
        _validation_section(page, Path(validation))
    if parts:
        _split_section(page, Path(splits), parts)
    pretrain_runs = _paths(pretrain)
    for run in pretrain_runs:
        _pretrain_section(page, run, "pretraining" if len(pretrain_runs) == 1 else f"pretraining {run.name}")
    evaluations = [Path(p) for p in evaluations]
    if evaluations or finetune:
        _finetune_section(page, [Path(p) for p in finetune], evaluations)
    for folder in _paths(audits):
        _audit_section(page, folder)
    _study_sections(page, _paths(studies) + _paths(study))
    cluster_folders = _paths(clusters)
    if cluster_folders or embeddings:
        for folder in cluster_folders or [None]:
            _cluster_section(page, folder, Path(embeddings) if embeddings else None)
    saliency_folders = _paths(saliency)
    for folder in saliency_folders:
        _saliency_section(page, folder, "saliency" if len(saliency_folders) == 1 else f"saliency {folder.name}")
    _skipped_section(page, evaluations, saliency_folders)
    if file_index:
        page.add("All files", _file_index(page))
    write_text(out, _render(page, title))
    if flags_out is not None:
        flags_out.extend(page.flags)
    return out


def _audit_section(page: _Page, folder: Path) -> None:
    from neuro_ssl.report.audit_report import add_audit_section

    add_audit_section(page, folder)


def _paths(value) -> list[Path]:
    """One path, a list of paths, or nothing, as a list of Paths."""
    if not value:
        return []
    return [Path(value)] if isinstance(value, (str, os.PathLike)) else [Path(v) for v in value]


# ---------------------------------------------------------------- cohort, validation, splits

def _read_table(path: Path) -> pd.DataFrame:
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[""])


def _read_splits(folder: Path) -> dict[str, Path]:
    """``{part: csv}`` for train/val/test in ``folder`` (or its first ``fold_*`` folder)."""
    if not folder.is_dir():
        return {}
    folds = sorted(p for p in folder.glob("fold_*") if p.is_dir())
    where = folder if (folder / "train.csv").is_file() or not folds else folds[0]
    parts = {name: where / f"{name}.csv" for name in ("train", "val", "test")}
    return {name: path for name, path in parts.items() if path.is_file()}


def _counts(table: pd.DataFrame) -> dict[str, Any]:
    row: dict[str, Any] = {"scans": len(table)}
    if "subject_id" in table:
        row["subjects"] = int(table["subject_id"].nunique())
    if "diagnosis" in table:
        for name, n in table["diagnosis"].fillna("(none)").value_counts().sort_index().items():
            row[f"{name} scans"] = int(n)
    return row


def _with_zero_counts(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of ``_counts`` share their diagnosis columns (a class absent from a part counts 0)."""
    dx = sorted({k for row in rows for k in row if k.endswith(" scans")})
    return [{**{k: v for k, v in row.items() if not k.endswith(" scans")}, **{k: row.get(k, 0) for k in dx}}
            for row in rows]


def _demographics(table: pd.DataFrame) -> dict[str, Any]:
    row: dict[str, Any] = {}
    if "age" in table:
        age = pd.to_numeric(table["age"], errors="coerce")
        row["age in years: mean (sd)"] = f"{age.mean():.1f} ({age.std():.1f})" if age.notna().any() else ""
    if "sex" in table:
        row["female / male scans"] = f"{int((table['sex'] == 'F').sum())} / {int((table['sex'] == 'M').sum())}"
    return row


def _cohort_section(page: _Page, cohort, cohort_table, parts: dict[str, Path]) -> None:
    if cohort_table is None and parts:
        cohort_table = pd.concat([_read_table(p) for p in parts.values()], ignore_index=True)
    if cohort_table is None:
        return
    counts = _counts(cohort_table)
    page.add_key("cohort", f"{counts.get('subjects', '?')} subjects", f"{counts['scans']} scans")
    body = _table([{**counts, **_demographics(cohort_table)}])
    if cohort:
        body += f"<p>Manifest: {page.link(cohort, os.path.relpath(Path(cohort).resolve(), page.base.resolve()))}</p>"
    page.add("Cohort", body)


def _validation_section(page: _Page, path: Path) -> None:
    if not path.exists():
        page.add("Validation", f"<p>{page.link(path)}</p>")
        return
    text = path.read_text(errors="replace")
    try:
        data = json.loads(text)
    except ValueError:
        page.add("Validation", f"<p>{page.link(path)}</p><pre>{html.escape(text[:5000])}</pre>")
        return
    errors = _issues(data, "errors")
    warnings = _issues(data, "warnings")
    verdict = "passed" if not errors else f"{len(errors)} error(s)"
    page.add_key("validation", verdict, f"{len(warnings)} warning(s)")
    rows = [_issue_row(item) for item in (errors + warnings)[:30]]
    body = f"<p>{html.escape(verdict)}, {len(warnings)} warning(s). Full report: {page.link(path)}</p>"
    page.add("Validation", body + (_table(rows) if rows else ""))


def _issues(data: Any, key: str) -> list:
    """``validate --json``'s ``errors`` / ``warnings`` lists (each item a dict with row, file, problem)."""
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, list) else []


def _issue_row(item: Any) -> dict[str, Any]:
    if isinstance(item, dict):
        return {k: v for k, v in item.items() if isinstance(v, (str, int, float, type(None)))}
    return {"issue": str(item)}


def _split_section(page: _Page, folder: Path, parts: dict[str, Path]) -> None:
    rows = []
    for name, path in parts.items():
        table = _read_table(path)
        rows.append({"part": page.link(path, name), **_counts(table), **_demographics(table)})
    page.add("Subject-level split", _table(_with_zero_counts(rows), raw={"part"}) + f"<p>Folder: {page.link(folder)}</p>")


# ---------------------------------------------------------------- pretraining and fine-tuning

def _pretrain_section(page: _Page, run: Path, name: str = "pretraining") -> None:
    page.flag(findings.read_pretraining_flags(run, name), f"the online probes of {name}")
    metrics = run / "metrics.csv"
    body = "<p>" + " · ".join(page.link(run / n) for n in ("encoder.pt", "config.yaml", "metrics.csv", "checkpoint.pt")) + "</p>"
    if metrics.exists():
        table = pd.read_csv(metrics)
        png = _plot_curves(table, page.figures_dir / "pretrain_curves.png", "pretraining")
        if png is not None:
            body = page.image(png, "pretraining curves") + body
        loss = _last(table, "loss")
        if loss is not None:
            page.add_key(name, f"loss {loss:.3f}", f"after {len(table)} logged epoch(s)")
        body += _probe_summary(table)
    body += _config_summary(run / "config.yaml")
    page.add("Contrastive pretraining" + (f": {run.name}" if name != "pretraining" else ""), body)


def _probe_summary(table: pd.DataFrame) -> str:
    """First and last value of each online probe, with the reason where a probe had none."""
    rows = []
    for column, what in (("probe_age_mae", "age probe: mean absolute error (years)"),
                         ("probe_dx_auc", "diagnosis probe: AUC")):
        if column not in table:
            continue
        known = pd.to_numeric(table[column], errors="coerce").dropna()
        note_column = column.replace("_mae", "_note").replace("_auc", "_note")
        notes = table[note_column].dropna().astype(str) if note_column in table else pd.Series(dtype=str)
        rows.append({"probe": what, "first epoch": _fmt(known.iloc[0]) if len(known) else "undefined",
                     "last epoch": _fmt(known.iloc[-1]) if len(known) else "undefined",
                     "why undefined": notes.iloc[-1] if len(notes) and not len(known) else ""})
    if not rows:
        return ""
    if not any(r["why undefined"] for r in rows):
        rows = [{k: v for k, v in r.items() if k != "why undefined"} for r in rows]
    return "<p>Online probes on the held-out manifest (cross-validated by subject):</p>" + _table(rows)


def _last(table: pd.DataFrame, column: str) -> float | None:
    for name in (column, f"train_{column}", f"{column}_train"):
        if name in table:
            values = pd.to_numeric(table[name], errors="coerce").dropna()
            if len(values):
                return float(values.iloc[-1])
    return None


def _plot_curves(table: pd.DataFrame, png: Path, title: str) -> Path | None:
    """Loss columns in one panel, then each validation metric (probes, AUC) in its own."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    x_name = "epoch" if "epoch" in table else ("step" if "step" in table else None)
    numeric = [c for c in table.columns if c not in ("epoch", "step")
               and pd.to_numeric(table[c], errors="coerce").notna().any()]
    if not numeric or len(table) == 0:
        return None
    x = table[x_name] if x_name else pd.Series(range(1, len(table) + 1))
    losses = [c for c in numeric if "loss" in c.lower()]
    others = [c for c in numeric if c not in losses and not _bookkeeping(c)]
    panels = ([(losses, "loss")] if losses else []) + [([c], c) for c in others[:3]]  # one scale per metric
    if not panels:
        return None
    fig = Figure(figsize=(4.0 * len(panels), 3.2), dpi=100)
    FigureCanvasAgg(fig)
    for index, (columns, label) in enumerate(panels, start=1):
        ax = fig.add_subplot(1, len(panels), index)
        ax.xaxis.get_major_locator().set_params(integer=True)
        for column in columns:
            ax.plot(x, pd.to_numeric(table[column], errors="coerce"), marker="o", markersize=3, label=column)
        ax.set(xlabel=x_name or "row", ylabel=label, title=f"{title}: {label}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png")
    return png


def _bookkeeping(column: str) -> bool:
    """Columns that are not results: learning rate, speed, timing, counts, flags."""
    low = column.lower()
    return low in ("lr", "best", "probe_n") or any(t in low for t in ("per_s", "elapsed", "seconds", "time"))


def _config_summary(path: Path) -> str:
    if not path.exists():
        return ""
    import yaml

    try:
        config = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError:
        return ""
    flat = _flatten(config) if isinstance(config, dict) else {}
    rows = [{"option": k, "value": v} for k, v in flat.items()][:80]
    return f"<details><summary>resolved configuration ({len(flat)} options)</summary>{_table(rows)}</details>"


def _flatten(config: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = ",".join(map(str, value)) if isinstance(value, list) else value
    return flat


def _finetune_section(page: _Page, runs: list[Path], evaluations: list[Path]) -> None:
    body = ""
    metrics = {_run_label(p): json.loads((p / "metrics.json").read_text())
               for p in evaluations if (p / "metrics.json").exists()}
    for path in evaluations:
        page.flag(findings.read_evaluation_flags(path, _run_label(path)), f"the evaluation {_run_label(path)}")
    if metrics:
        body += _metrics_table(metrics)
        for name, values in metrics.items():
            headline = "auc" if "auc" in values else ("mae" if "mae" in values else None)
            if headline and isinstance(values.get(headline), dict):
                page.add_key(f"{headline.upper()} {name}", _fmt(values[headline].get("value")), _ci(values[headline]))
    for path in evaluations:
        links = " · ".join(page.link(f) for f in sorted(path.iterdir()) if f.is_file()) if path.is_dir() else page.link(path)
        body += f"<h3>evaluation: {html.escape(_run_label(path))}</h3><p>{links}</p>"
        body += _figures(page, sorted(path.glob("*.png"))[:4])
    curves = []
    for run in runs:
        body += f"<h3>fine-tuning: {html.escape(_run_label(run))}</h3><p>" + " · ".join(
            page.link(run / n) for n in ("model.pt", "config.yaml", "metrics.csv")) + "</p>"
        if (run / "metrics.csv").exists():
            png = _plot_curves(pd.read_csv(run / "metrics.csv"), page.figures_dir / f"{run.name}_curves.png",
                               f"fine-tuning {_run_label(run)}")
            curves += [png] if png else []
    body += _figures(page, curves)
    page.add("Fine-tuning and evaluation", body)


def _study_sections(page: _Page, folders: list[Path]) -> None:
    """One section per study folder; with none given, the study folders found beside the page."""
    from neuro_ssl.report.study_report import add_study_section, find_study_folders, is_study_folder

    for folder in dict.fromkeys(folders or find_study_folders(page.base)):
        if is_study_folder(folder):
            add_study_section(page, folder)
        else:
            page.add("Label-efficiency study", f"<p>{page.link(folder)}: no study.csv / summary.csv yet</p>")


def _run_label(path: Path) -> str:
    """``evaluate_linear`` -> ``linear``; ``evaluate/full_10`` -> ``full_10``."""
    for prefix in ("evaluate_", "evaluation_", "finetune_", "eval_"):
        if path.name.startswith(prefix) and len(path.name) > len(prefix):
            return path.name[len(prefix):]
    return path.name


def _metrics_table(metrics: dict[str, dict]) -> str:
    names = [m for m in CLASSIFICATION + REGRESSION if any(isinstance(v.get(m), dict) for v in metrics.values())]
    rows = []
    for metric in names:
        row: dict[str, Any] = {"metric": metric}
        for run, values in metrics.items():
            entry = values.get(metric)
            row[run] = f"{_fmt(entry.get('value'))} {_ci(entry)}" if isinstance(entry, dict) else ""
        rows.append(row)
    rows.append({"metric": "test scans (subjects)",
                 **{run: f"{values.get('n', '')} ({values.get('n_subjects', '?')})" for run, values in metrics.items()}})
    rows = [{**row, "metric": label(row["metric"])} for row in rows]
    return _table(rows) + '<p class="muted">value [95% bootstrap CI, resampled by subject]</p>'


# ---------------------------------------------------------------- clusters and saliency

def _cluster_section(page: _Page, folder: Path | None, embeddings: Path | None) -> None:
    body = f"<p>Embeddings: {page.link(embeddings)}</p>" if embeddings else ""
    if folder is not None and folder.is_dir():
        scores = _cluster_scores(folder)
        if scores:
            rows = [{label(k): _fmt(v) if isinstance(v, float) else ("yes" if v is True else "no" if v is False else v)
                     for k, v in scores.items() if not isinstance(v, (dict, list))}]
            body += _table(rows)
            ari, nmi = scores.get("ari"), scores.get("nmi")
            if ari is not None:
                page.add_key("clusters", f"ARI {_fmt(ari)}", f"NMI {_fmt(nmi)}")
        body += "<p>" + " · ".join(page.link(f) for f in sorted(folder.iterdir()) if f.is_file()) + "</p>"
        body += _figures(page, sorted(folder.glob("*.png"))[:3])
    page.add("Embeddings and clusters", body)


def _cluster_scores(folder: Path) -> dict[str, Any]:
    """ARI/NMI from the first JSON in the folder that has them (keys matched case-insensitively)."""
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except ValueError:
            continue
        if isinstance(data, dict):
            lower = {str(k).lower(): v for k, v in data.items()}
            if "ari" in lower or "nmi" in lower:
                return lower
    return {}


def _saliency_section(page: _Page, folder: Path, name: str = "saliency") -> None:
    page.flag(findings.read_saliency_flags(folder, name), f"the {name} region shares and checks")
    body = f"<p>Review page: {page.link(folder / 'index.html', 'index.html (interactive viewer)')} · " \
           f"{page.link(folder / 'summary.csv')} · {page.link(folder / 'regions.csv')}</p>"
    summary_path = folder / "summary.csv"
    if summary_path.exists():
        summary = pd.read_csv(summary_path)
        maps = [m for m in summary.get("saliency", pd.Series(dtype=str)).dropna()]
        body += f"<p>{len(summary)} scan(s) explained, {len(maps)} saliency volume(s) written in each scan's own space."
        if "correct" in summary:
            wrong = int((summary["correct"].astype(str).str.lower() == "false").sum())
            known = int(summary["correct"].astype(str).str.lower().isin(["true", "false"]).sum())
            body += f" {wrong} of {known} prediction(s) with a known true label are wrong (marked on the review page)."
        body += "</p>"
        if "coverage_pct" in summary:
            body += f"<p>Mean coverage: {_fmt(summary['coverage_pct'].mean())} % of the brain above threshold.</p>"
    body += _region_table(page, folder)
    body += _figures(page, sorted(folder.rglob("*.png"))[:2])
    page.add("Saliency (Grad-CAM)" + (f": {folder.name}" if name != "saliency" else ""), body)


def _region_table(page: _Page, folder: Path) -> str:
    regions = folder / "regions.csv"
    if not regions.exists():
        return ""
    table = pd.read_csv(regions)
    rows = [{label(k): (_fmt(100 * v) if k in PERCENT_COLUMNS else _fmt(v)) if isinstance(v, float) else v
             for k, v in row.items()} for row in table.to_dict("records")]
    focus = table[table["region"].astype(str).str.contains("diagnosis|truth")] if "region" in table else table.iloc[:0]
    if len(focus) and {"mean_share", "chance_share"} <= set(table.columns):
        row = focus.iloc[0]
        page.add_key("saliency in planted region", f"{100 * row['mean_share']:.1f} %",
                     f"chance {100 * row['chance_share']:.1f} %")
    return "<p>Share of saliency inside each region, against the share a uniform map would give:</p>" + _table(rows)


def _skipped_section(page: _Page, evaluations: list[Path], saliency: list[Path]) -> None:
    """Scans a step left out under ``--skip-bad``: every one listed, with the step and the reason."""
    rows: list[dict[str, Any]] = []
    for folder in evaluations:
        metrics = folder / "metrics.json"
        if metrics.exists():
            for item in json.loads(metrics.read_text()).get("rows_skipped") or []:
                rows.append({"step": f"evaluate {_run_label(folder)}", "scan": "", "reason": str(item)})
    for table in [folder / "skipped.csv" for folder in saliency]:
        if not table.exists():
            continue
        for row in pd.read_csv(table, dtype=str).fillna("").to_dict("records"):
            scan = " ".join(str(row.get(k, "")) for k in ("subject_id", "session_id")).strip()
            step = "saliency" if len(saliency) == 1 else f"saliency {table.parent.name}"
            rows.append({"step": step, "scan": scan, "reason": row.get("reason", "")})
    if rows:
        page.add_key("skipped scans", str(len(rows)), "by --skip-bad, listed below")
        page.add("Skipped scans", _table(rows))


# ---------------------------------------------------------------- file index and page


