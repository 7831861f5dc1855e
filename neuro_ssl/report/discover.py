"""What a folder holds, from the files neuro-ssl commands write, for ``neuro-ssl report``.

A user who ran the commands by hand names folders; each is recognized by its files:

========== ==========================================================================
kind       recognized by
========== ==========================================================================
pipeline   ``.neuro-ssl-pipeline/`` (a ``neuro-ssl run`` or ``demo`` folder): its parts are found inside
finetune   ``model.pt`` (``neuro-ssl finetune``)
pretrain   ``encoder.pt`` without ``model.pt`` (``neuro-ssl pretrain``)
evaluate   ``metrics.json`` and ``predictions.csv``
saliency   ``summary.csv`` with ``index.html`` or ``maps/``
audit      ``audit.csv``
clusters   ``cluster_metrics.json`` or ``clusters.csv``
study      ``study.csv`` and ``summary.csv``
splits     ``train.csv`` and ``test.csv``
cohort     ``manifest.csv`` with ``images/`` (a ``synth`` cohort), or a manifest file
embeddings an ``embeddings.csv`` file, or a folder holding only that
========== ==========================================================================

A folder that is none of these is searched one level down (a folder of runs). Nothing found
is a :class:`~neuro_ssl.errors.ManifestError` (exit 1) naming the folder and what was looked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from neuro_ssl.errors import ManifestError

PIPELINE_STATE = ".neuro-ssl-pipeline"
LOOKED_FOR = ("model.pt", "encoder.pt", "metrics.json", "summary.csv", "audit.csv", "clusters.csv", "study.csv",
              "train.csv/test.csv", "manifest.csv", "embeddings.csv", PIPELINE_STATE + "/")


@dataclass
class Found:
    """Folders by kind, in the order given; the keyword arguments of ``write_run_report``."""

    cohort: Path | None = None
    validation: Path | None = None
    splits: Path | None = None
    pretrain: list[Path] = field(default_factory=list)
    finetune: list[Path] = field(default_factory=list)
    evaluations: list[Path] = field(default_factory=list)
    audits: list[Path] = field(default_factory=list)
    studies: list[Path] = field(default_factory=list)
    clusters: list[Path] = field(default_factory=list)
    embeddings: Path | None = None
    saliency: list[Path] = field(default_factory=list)

    def report_arguments(self) -> dict:
        return {"cohort": self.cohort, "validation": self.validation, "splits": self.splits,
                "pretrain": self.pretrain, "finetune": self.finetune, "evaluations": self.evaluations,
                "audits": self.audits, "studies": self.studies, "clusters": self.clusters,
                "embeddings": self.embeddings, "saliency": self.saliency}

    def summary(self) -> list[str]:
        """``kind: path, path`` per kind found, for the command's output."""
        lines = []
        for kind, value in self.report_arguments().items():
            paths = value if isinstance(value, list) else ([value] if value else [])
            if paths:
                lines.append(f"{kind}: {', '.join(str(p) for p in paths)}")
        return lines

    def empty(self) -> bool:
        return not self.summary()


def kind_of(path: Path) -> str | None:
    """The kind of one file or folder (see the module docstring), or None."""
    path = Path(path)
    if path.is_file():
        if path.name == "embeddings.csv" or path.name.endswith("_embeddings.csv"):
            return "embeddings"
        return "cohort" if path.suffix.lower() in (".csv", ".tsv") else None
    has = (lambda *names: all((path / n).exists() for n in names))
    if has(PIPELINE_STATE):
        return "pipeline"
    if has("model.pt"):
        return "finetune"
    if has("encoder.pt"):
        return "pretrain"
    if has("metrics.json", "predictions.csv"):
        return "evaluate"
    if has("summary.csv") and (has("index.html") or has("maps")):
        return "saliency"
    if has("audit.csv"):
        return "audit"
    if has("cluster_metrics.json") or has("clusters.csv"):
        return "clusters"
    if has("study.csv", "summary.csv"):
        return "study"
    if has("train.csv", "test.csv"):
        return "splits"
    if has("manifest.csv", "images"):
        return "cohort"
    if has("embeddings.csv") and len([p for p in path.iterdir() if not p.name.startswith(".")]) == 1:
        return "embeddings"
    return None


def find_outputs(paths: list[Path]) -> Found:
    """Classify every given path (one level down for an unknown folder); ManifestError when a path is missing or holds nothing known."""
    found = Found()
    for path in map(Path, paths):
        if not path.exists():
            raise ManifestError(f"{path}: not found (no such file or folder)")
        if not _add(found, path, depth=1):
            raise ManifestError(f"{path}: no neuro-ssl outputs found there or one level down (looked for "
                              f"{', '.join(LOOKED_FOR)})")
    return found


def _add(found: Found, path: Path, depth: int) -> bool:
    kind = kind_of(path)
    if kind == "pipeline":
        return _add_children(found, path, depth=1) | _add_validation(found, path)
    if kind is None:
        return depth > 0 and path.is_dir() and _add_children(found, path, depth - 1)
    if kind in ("cohort", "splits", "embeddings"):
        target = path / "manifest.csv" if kind == "cohort" and path.is_dir() else path
        target = path / "embeddings.csv" if kind == "embeddings" and path.is_dir() else target
        if getattr(found, kind) is None:
            setattr(found, kind, target)
        return True
    attribute = {"evaluate": "evaluations", "audit": "audits", "study": "studies"}.get(kind, kind)
    if path not in getattr(found, attribute):
        getattr(found, attribute).append(path)
    if kind in ("finetune", "pretrain"):  # evaluations, saliency, audits written inside the run folder
        for child in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if kind_of(child) in ("evaluate", "saliency", "audit", "clusters"):
                _add(found, child, 0)
    return True


def _add_children(found: Found, folder: Path, depth: int) -> bool:
    any_found = False
    for child in sorted(folder.iterdir()):
        if child.name.startswith(".") or child.name == "report_files":
            continue
        if child.is_file() and kind_of(child) != "embeddings":
            continue  # a folder's loose CSVs are not cohorts; its embeddings.csv is
        any_found |= _add(found, child, depth)
    return any_found


def _add_validation(found: Found, folder: Path) -> bool:
    if (folder / "validation.json").is_file():
        found.validation = folder / "validation.json"
        return True
    return False
