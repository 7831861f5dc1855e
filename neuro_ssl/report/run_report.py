"""One self-contained ``report.html`` for a run folder, rendered from the files the steps wrote.

Figures are embedded (data URIs) so the page opens anywhere; every artefact is linked with a
path relative to the page, so the folder can be moved or zipped as a whole. Nothing here
computes results: it reads splits, validation JSON, ``metrics.csv``, ``metrics.json``, cluster
scores, the saliency ``summary.csv``/``regions.csv``, and lays them out, key figures first.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import quote

import pandas as pd

from neuro_ssl._utils.files import atomic_path, write_text

CLASSIFICATION = ("auc", "balanced_accuracy", "sensitivity", "specificity", "mcc", "f1_macro")
REGRESSION = ("mae", "rmse", "r")
HIDDEN = (".neuro-ssl-pipeline", "report_files")
MAX_FILES_PER_FOLDER = 60

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:70em;color:#222;line-height:1.4}
h1{margin-bottom:0}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left}
th{background:#f4f4f4}.num{text-align:right;font-variant-numeric:tabular-nums}
.key{display:flex;flex-wrap:wrap;gap:.8em}.card{border:1px solid #ccc;border-radius:6px;padding:.6em 1em;min-width:12em}
.card b{display:block;font-size:1.4em}.muted{color:#777}img{max-width:100%}code{background:#f4f4f4;padding:0 .2em}
.figs{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}figure{margin:0}.figs img{max-height:22em}
"""


class _Page:
    """Collects key figures, sections and figure files for one report."""

    def __init__(self, out: Path):
        self.out = out
        self.base = out.parent
        self.figures_dir = self.base / "report_files"
        self.key: list[tuple[str, str, str]] = []
        self.sections: list[tuple[str, str]] = []

    def link(self, path: str | Path | None, text: str | None = None) -> str:
        """``<a>`` with a relative href to an existing file or folder; plain text when missing."""
        if not path:
            return ""
        path = Path(path)
        label = html.escape(text or path.name)
        if not path.exists():
            return f'<span class="muted">{label} (missing)</span>'
        rel = os.path.relpath(path.resolve(), self.base.resolve())
        href = quote(rel.replace(os.sep, "/")) + ("/" if path.is_dir() else "")
        return f'<a href="{href}">{label}</a>'

    def image(self, png: Path, alt: str) -> str:
        data = base64.b64encode(Path(png).read_bytes()).decode("ascii")
        return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"><figcaption>{self.link(png)}</figcaption></figure>'

    def add_key(self, label: str, value: str, note: str = "") -> None:
        self.key.append((label, value, note))

    def add(self, title: str, body: str) -> None:
        self.sections.append((title, body))


def write_run_report(out: str | os.PathLike, *, title: str = "neuro-ssl run", splits=None, validation=None,
                     pretrain=None, finetune: Iterable = (), evaluations: Iterable = (), embeddings=None,
                     clusters=None, saliency=None, cohort=None, cohort_table: pd.DataFrame | None = None,
                     study=None) -> Path:
    """Write ``out`` (an HTML file); every argument is a path the corresponding step wrote.

    ``cohort_table``: the canonical manifest of the whole cohort (counts by diagnosis); without
    it the split files are counted. ``study``: a label-efficiency study folder; without it, any
    study folder in the report's own folder (or one level below) is found and shown.
    """
    out = Path(out)
    page = _Page(out)
    parts = _read_splits(Path(splits)) if splits else {}
    _cohort_section(page, cohort, cohort_table, parts)
    if validation:
        _validation_section(page, Path(validation))
    if parts:
        _split_section(page, Path(splits), parts)
    if pretrain:
        _pretrain_section(page, Path(pretrain))
    evaluations = [Path(p) for p in evaluations]
    if evaluations or finetune:
        _finetune_section(page, [Path(p) for p in finetune], evaluations)
    _study_sections(page, study)
    if clusters or embeddings:
        _cluster_section(page, Path(clusters) if clusters else None, Path(embeddings) if embeddings else None)
    if saliency:
        _saliency_section(page, Path(saliency))
    _skipped_section(page, evaluations, Path(saliency) if saliency else None)
    page.add("All files", _file_index(page))
    write_text(out, _render(page, title))
    return out


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
        row["age mean (sd)"] = f"{age.mean():.1f} ({age.std():.1f})" if age.notna().any() else ""
    if "sex" in table:
        row["F/M"] = f"{int((table['sex'] == 'F').sum())}/{int((table['sex'] == 'M').sum())}"
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

def _pretrain_section(page: _Page, run: Path) -> None:
    metrics = run / "metrics.csv"
    body = "<p>" + " · ".join(page.link(run / n) for n in ("encoder.pt", "config.yaml", "metrics.csv", "checkpoint.pt")) + "</p>"
    if metrics.exists():
        table = pd.read_csv(metrics)
        png = _plot_curves(table, page.figures_dir / "pretrain_curves.png", "pretraining")
        if png is not None:
            body = page.image(png, "pretraining curves") + body
        loss = _last(table, "loss")
        if loss is not None:
            page.add_key("pretraining", f"loss {loss:.3f}", f"after {len(table)} logged epoch(s)")
    body += _config_summary(run / "config.yaml")
    page.add("Contrastive pretraining", body)


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


def _study_sections(page: _Page, study) -> None:
    from neuro_ssl.report.study_report import add_study_section, find_study_folders, is_study_folder

    folders = [Path(study)] if study else find_study_folders(page.base)
    for folder in folders:
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


def _figures(page: _Page, pngs: list[Path]) -> str:
    return '<div class="figs">' + "".join(page.image(png, png.stem) for png in pngs) + "</div>" if pngs else ""


def _metrics_table(metrics: dict[str, dict]) -> str:
    names = [m for m in CLASSIFICATION + REGRESSION if any(isinstance(v.get(m), dict) for v in metrics.values())]
    rows = []
    for metric in names:
        row: dict[str, Any] = {"metric": metric}
        for run, values in metrics.items():
            entry = values.get(metric)
            row[run] = f"{_fmt(entry.get('value'))} {_ci(entry)}" if isinstance(entry, dict) else ""
        rows.append(row)
    rows.append({"metric": "n", **{run: values.get("n", "") for run, values in metrics.items()}})
    return _table(rows) + '<p class="muted">value [95% bootstrap CI, resampled by subject]</p>'


def _fmt(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return html.escape(str(value))
    return "n/a" if not math.isfinite(number) else f"{number:.3f}"


def _ci(entry: dict) -> str:
    low, high = entry.get("ci_low"), entry.get("ci_high")
    return f"[{_fmt(low)}, {_fmt(high)}]" if low is not None and high is not None else ""


# ---------------------------------------------------------------- clusters and saliency

def _cluster_section(page: _Page, folder: Path | None, embeddings: Path | None) -> None:
    body = f"<p>Embeddings: {page.link(embeddings)}</p>" if embeddings else ""
    if folder is not None and folder.is_dir():
        scores = _cluster_scores(folder)
        if scores:
            rows = [{k: _fmt(v) if isinstance(v, float) else v for k, v in scores.items() if not isinstance(v, (dict, list))}]
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


def _saliency_section(page: _Page, folder: Path) -> None:
    body = f"<p>Review page: {page.link(folder / 'index.html', 'index.html (interactive viewer)')} · " \
           f"{page.link(folder / 'summary.csv')} · {page.link(folder / 'regions.csv')}</p>"
    summary_path = folder / "summary.csv"
    if summary_path.exists():
        summary = pd.read_csv(summary_path)
        maps = [m for m in summary.get("saliency", pd.Series(dtype=str)).dropna()]
        body += f"<p>{len(summary)} scan(s) explained, {len(maps)} saliency volume(s) written in each scan's own space.</p>"
        if "coverage_pct" in summary:
            body += f"<p>Mean coverage: {_fmt(summary['coverage_pct'].mean())} % of the brain above threshold.</p>"
    body += _region_table(page, folder)
    body += _figures(page, sorted(folder.rglob("*.png"))[:2])
    page.add("Saliency (Grad-CAM)", body)


def _region_table(page: _Page, folder: Path) -> str:
    regions = folder / "regions.csv"
    if not regions.exists():
        return ""
    table = pd.read_csv(regions)
    rows = [{k: _fmt(v) if isinstance(v, float) else v for k, v in row.items()} for row in table.to_dict("records")]
    focus = table[table["region"].astype(str).str.contains("diagnosis|truth")] if "region" in table else table.iloc[:0]
    if len(focus) and {"mean_share", "chance_share"} <= set(table.columns):
        row = focus.iloc[0]
        page.add_key("saliency in planted region", f"{100 * row['mean_share']:.1f} %",
                     f"chance {100 * row['chance_share']:.1f} %")
    return "<p>Share of saliency inside each region, against the share a uniform map would give:</p>" + _table(rows)


def _skipped_section(page: _Page, evaluations: list[Path], saliency: Path | None) -> None:
    """Scans a step left out under ``--skip-bad``: every one listed, with the step and the reason."""
    rows: list[dict[str, Any]] = []
    for folder in evaluations:
        metrics = folder / "metrics.json"
        if metrics.exists():
            for item in json.loads(metrics.read_text()).get("rows_skipped") or []:
                rows.append({"step": f"evaluate {_run_label(folder)}", "scan": "", "reason": str(item)})
    table = saliency / "skipped.csv" if saliency else None
    if table is not None and table.exists():
        for row in pd.read_csv(table, dtype=str).fillna("").to_dict("records"):
            scan = " ".join(str(row.get(k, "")) for k in ("subject_id", "session_id")).strip()
            rows.append({"step": "saliency", "scan": scan, "reason": row.get("reason", "")})
    if rows:
        page.add_key("skipped scans", str(len(rows)), "by --skip-bad, listed below")
        page.add("Skipped scans", _table(rows))


# ---------------------------------------------------------------- file index and page

def _file_index(page: _Page) -> str:
    """Every file under the run folder, by folder, linked (hidden and bookkeeping files left out)."""
    groups: dict[str, list[Path]] = {}
    for root, dirs, files in os.walk(page.base):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in HIDDEN)
        for name in sorted(files):
            path = Path(root) / name
            if name.startswith(".") or path.resolve() == page.out.resolve():
                continue
            rel_dir = os.path.relpath(root, page.base)
            groups.setdefault(rel_dir, []).append(path)
    items = []
    for rel_dir, paths in sorted(groups.items()):
        shown = paths[:MAX_FILES_PER_FOLDER]
        links = ", ".join(page.link(p) for p in shown)
        more = f" and {len(paths) - len(shown)} more in {page.link(paths[0].parent, rel_dir)}" if len(paths) > len(shown) else ""
        items.append(f"<li><code>{html.escape(rel_dir)}/</code>: {links}{more}</li>")
    return "<ul>" + "".join(items) + "</ul>"


def _table(rows: list[dict[str, Any]], raw: set[str] = frozenset()) -> str:
    """An HTML table; values are escaped except in the ``raw`` columns (already HTML)."""
    if not rows:
        return ""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = ""
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column, "")
            text = str(value) if column in raw else html.escape("" if value is None else str(value))
            css = ' class="num"' if isinstance(value, (int, float)) else ""
            cells.append(f"<td{css}>{text}</td>")
        body += "<tr>" + "".join(cells) + "</tr>"
    return f"<table><tr>{head}</tr>{body}</table>"


def _render(page: _Page, title: str) -> str:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cards = "".join(f'<div class="card">{html.escape(label)}<b>{html.escape(value)}</b>'
                    f'<span class="muted">{html.escape(note)}</span></div>' for label, value, note in page.key)
    toc = "".join(f'<li><a href="#s{i}">{html.escape(t)}</a></li>' for i, (t, _) in enumerate(page.sections))
    sections = "".join(f'<h2 id="s{i}">{html.escape(t)}</h2>{b}' for i, (t, b) in enumerate(page.sections))
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
            f'<p class="muted">written {when} by neuro-ssl</p><div class="key">{cards}</div>'
            f"<ul>{toc}</ul>{sections}</body></html>\n")
