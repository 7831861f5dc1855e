"""Runner builtins: steps that are not CLI commands (today: ``report``, the run's report.html).

A builtin is called in process with the step's options as keyword arguments (``-`` read as
``_``; lists stay lists), so a pipeline YAML names it like any command.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

BUILTINS = ("report", "select")


def builtin_parameters(name: str) -> list[str]:
    """Option names a builtin accepts (for the load-time check of a pipeline)."""
    return [p for p in inspect.signature(_function(name)).parameters]


def run_builtin(name: str, options: dict[str, Any]) -> None:
    kwargs = {str(k).replace("-", "_"): v for k, v in options.items()}
    _function(name)(**kwargs)


def _function(name: str):
    return {"report": report, "select": select}[name]


def select(manifest: str, out: str, column: str, values: list[str] | str) -> Path:
    """Write the rows of ``manifest`` whose ``column`` is one of ``values`` (e.g. CN only, for brain age).

    On ``diagnosis`` a value names a class as ``--classes`` does (``AD`` takes ``Dementia``,
    ``MCI`` takes EMCI/LMCI); elsewhere values compare as text.
    """
    from neuro_ssl.data.manifest import diagnosis_matches, read_manifest, write_manifest
    from neuro_ssl.errors import ManifestError

    table = read_manifest(manifest)
    wanted = [str(v) for v in (values.split(",") if isinstance(values, str) else values)]
    if column not in table.columns:
        raise ManifestError(f"{manifest}: no column '{column}' to select rows on")
    if column == "diagnosis":
        keep = table[column].map(lambda v: any(diagnosis_matches(v, w) for w in wanted))
    else:
        keep = table[column].astype(str).isin(wanted)
    if not keep.any():
        raise ManifestError(f"{manifest}: no row has {column} in {','.join(wanted)}")
    return write_manifest(table[keep.astype(bool)], out)


def report(out: str, title: str = "neuro-ssl run", cohort: str | None = None, splits: str | None = None,
           validation: str | None = None, pretrain: str | None = None,
           finetune: list[str] | str | None = None, evaluations: list[str] | str | None = None,
           embeddings: str | None = None, clusters: str | None = None, saliency: str | None = None,
           study: str | None = None) -> Path:
    """Write ``out`` (report.html) from the files the other steps wrote.

    ``cohort``: the cohort's manifest (any dialect; read here into canonical columns so the
    report can count subjects and diagnoses), or a folder holding ``manifest.csv``.
    """
    from neuro_ssl.report.run_report import write_run_report

    table = None
    if cohort:
        cohort_path = Path(cohort) / "manifest.csv" if Path(cohort).is_dir() else Path(cohort)
        if cohort_path.is_file():
            from neuro_ssl.data.manifest import read_manifest

            table = read_manifest(cohort_path)
            cohort = str(cohort_path)
    return write_run_report(
        out, title=title, splits=splits, validation=validation, pretrain=pretrain,
        finetune=_as_list(finetune), evaluations=_as_list(evaluations), embeddings=embeddings,
        clusters=clusters, saliency=saliency, cohort=cohort, cohort_table=table, study=study,
    )


def _as_list(value) -> list[str]:
    """Paths from a list or a comma-separated string; ``*`` patterns expand to what exists (sorted)."""
    import glob

    if value is None:
        return []
    items = [v for v in value.split(",") if v] if isinstance(value, str) else [str(v) for v in value]
    paths: list[str] = []
    for item in items:
        paths += sorted(glob.glob(item)) if any(c in item for c in "*?[") else [item]
    return paths
