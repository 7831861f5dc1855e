"""The shortcut-audit section of a report, rendered from an ``neuro-ssl audit`` folder's files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from neuro_ssl.report import findings
from neuro_ssl.report.page import Page, figures, fmt, table


def add_audit_section(page: Page, folder: Path) -> None:
    """audit.csv as a table (AUC or R^2 with its interval per summary and covariate), audit.png, links."""
    path = folder / "audit.csv"
    body = "<p>" + " · ".join(page.link(folder / n) for n in ("audit.csv", "summaries.csv", "audit.png")) + "</p>"
    if path.is_file():
        audit = pd.read_csv(path)
        name = "audit" if folder.name == "audit" else f"audit {folder.name}"
        page.flag(findings.audit_flags(audit, name), f"the {name}")
        rows = []
        for row in audit.to_dict("records"):
            value = row.get("auc") if row.get("metric", "auc") == "auc" else row.get("r2")
            rows.append({"summary or covariate": row.get("feature"), "kind": row.get("kind"),
                         str(row.get("metric", "auc")).upper().replace("R2", "R^2"): fmt(value),
                         "95% CI": f"[{fmt(row.get('ci_low'))}, {fmt(row.get('ci_high'))}]",
                         "scans": row.get("n")})
        body = ("<p>Can trivial summaries of the model's input, or covariates, predict the label? "
                "Cross-validated by subject; AUC 0.5 is chance.</p>" + table(rows) + body)
    body += figures(page, sorted(folder.glob("*.png"))[:1])
    page.add(f"Shortcut audit: {folder.name}", body)
