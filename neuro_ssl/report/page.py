"""The page a report is built on: sections, key figures, flags, tables, links and the final HTML.

:class:`Page` collects what the sections add (key cards, warnings, sections, figure files);
:func:`render` lays it out as one self-contained HTML document (CSS inline, figures as data
URIs, artefacts linked by paths relative to the page). :func:`label` turns the raw keys of the
files (``k_chosen_by``, ``mean_share``) into readable headings with units.
"""

from __future__ import annotations

import base64
import html
import math
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import quote

HIDDEN = (".neuro-ssl-pipeline", "report_files")


MAX_FILES_PER_FOLDER = 60


CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:70em;color:#222;line-height:1.4}
h1{margin-bottom:0}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left}
th{background:#f4f4f4}.num{text-align:right;font-variant-numeric:tabular-nums}
.key{display:flex;flex-wrap:wrap;gap:.8em}.card{border:1px solid #ccc;border-radius:6px;padding:.6em 1em;min-width:12em}
.card b{display:block;font-size:1.4em}.muted{color:#777}img{max-width:100%}code{background:#f4f4f4;padding:0 .2em}
.figs{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}figure{margin:0}.figs img{max-height:22em}
.flags{border:2px solid #b00;border-radius:6px;background:#fff4f4;padding:.4em 1em;margin:1em 0}
.flags h2{border:none;margin:.2em 0;color:#b00;font-size:1.15em}.flags li{margin:.2em 0}.ok{color:#276e27}
"""


#: readable column and metric names for the tables (raw keys of the files on the left)


LABELS = {
    "auc": "AUC", "balanced_accuracy": "balanced accuracy", "sensitivity": "sensitivity", "specificity": "specificity",
    "mcc": "MCC", "f1_macro": "F1 (macro)",
    "shortcut_baseline_auc": "shortcut baseline AUC (trivial summaries of the same inputs)", "mae": "MAE (label units)", "rmse": "RMSE (label units)",
    "r": "Pearson r", "k": "clusters (k)", "k_chosen_by": "k chosen by", "n": "scans",
    "n_unmatched": "scans without a manifest row", "map": "2D map", "features_standardized": "features z-scored",
    "against": "compared with", "n_labelled": "scans with a value", "ari": "ARI (adjusted Rand index)",
    "nmi": "NMI (normalized mutual information)", "mean_share": "share of saliency (%)",
    "chance_share": "share by chance (%)", "ratio_to_chance": "ratio to chance", "n_scans": "scans",
    "ci_low": "95% CI low", "ci_high": "95% CI high", "kind": "kind", "feature": "summary or covariate",
    "r2": "R^2", "metric": "metric",
}


PERCENT_COLUMNS = ("mean_share", "chance_share")


def label(key: str) -> str:
    """A file's raw key as a table heading: ``k_chosen_by`` -> ``k chosen by``."""
    return LABELS.get(str(key), str(key).replace("_", " "))


class Page:
    """Collects key figures, sections and figure files for one report."""

    def __init__(self, out: Path):
        self.out = out
        self.base = out.parent
        self.figures_dir = self.base / "report_files"
        self.key: list[tuple[str, str, str]] = []
        self.sections: list[tuple[str, str]] = []
        self.flags: list[str] = []
        self.checked: list[str] = []  # what the flags looked at (said when none fired)

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

    def flag(self, sentences: Iterable[str], checked: str) -> None:
        """Warnings shown at the top of the page; ``checked`` names what was looked at."""
        self.flags += [s for s in sentences if s not in self.flags]
        self.checked.append(checked)


def figures(page: Page, pngs: list[Path]) -> str:
    return '<div class="figs">' + "".join(page.image(png, png.stem) for png in pngs) + "</div>" if pngs else ""


def fmt(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return html.escape(str(value))
    return "n/a" if not math.isfinite(number) else f"{number:.3f}"


def ci(entry: dict) -> str:
    low, high = entry.get("ci_low"), entry.get("ci_high")
    return f"[{fmt(low)}, {fmt(high)}]" if low is not None and high is not None else ""


def file_index(page: Page) -> str:
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


def table(rows: list[dict[str, Any]], raw: set[str] = frozenset()) -> str:
    """An HTML table; values are escaped except in the ``raw`` columns (already HTML)."""
    if not rows:
        return ""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    head = "".join(f"<th>{html.escape(label(c))}</th>" for c in columns)
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


def render(page: Page, title: str) -> str:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cards = "".join(f'<div class="card">{html.escape(label)}<b>{html.escape(value)}</b>'
                    f'<span class="muted">{html.escape(note)}</span></div>' for label, value, note in page.key)
    toc = "".join(f'<li><a href="#s{i}">{html.escape(t)}</a></li>' for i, (t, _) in enumerate(page.sections))
    sections = "".join(f'<h2 id="s{i}">{html.escape(t)}</h2>{b}' for i, (t, b) in enumerate(page.sections))
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"
            f'<p class="muted">written {when} by neuro-ssl</p>{flags_box(page)}<div class="key">{cards}</div>'
            f"<ul>{toc}</ul>{sections}</body></html>\n")


def flags_box(page: Page) -> str:
    """What looks wrong, first; or a line saying what was checked and found in order."""
    if page.flags:
        items = "".join(f"<li>{html.escape(f)}</li>" for f in page.flags)
        return f'<div class="flags" id="flags"><h2>Check these first ({len(page.flags)})</h2><ul>{items}</ul></div>'
    if page.checked:
        return f'<p class="ok" id="flags">No warning from {html.escape(", ".join(page.checked))}.</p>'
    return ""
