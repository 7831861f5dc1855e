"""The demo: the packaged ``demo.yaml`` run by the pipeline runner, at one of three sizes.

There is one definition of the demo chain, ``neuro_ssl/pipeline/demo.yaml`` (shipped again as
``pipelines/demo.yaml``, byte for byte): ``neuro-ssl demo`` loads it with ``out``/``seed`` set
and the size's preset, so the demo and ``neuro-ssl run pipelines/demo.yaml`` never diverge.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from neuro_ssl.pipeline.runner import PipelineReport, run_pipeline
from neuro_ssl.pipeline.spec import Pipeline, load_pipeline

DEMO_YAML = Path(__file__).with_name("demo.yaml")
#: size -> preset in demo.yaml (``default`` uses the vars as written)
SIZES = {"tiny": "tiny", "small": "small", "default": None}


def demo_overrides(out: str | Path, seed: int = 0, manifest: str | Path | None = None,
                   skip_bad: bool = False) -> dict:
    """Var values for a demo run; with ``manifest``, that cohort replaces the synthetic one.

    A given manifest is split into ``OUT/splits`` (its own folder is left untouched) and has no
    planted-region masks, so saliency reports no region shares.
    """
    overrides = {"out": str(out), "seed": int(seed), "skip_bad": bool(skip_bad)}
    if manifest is not None:
        overrides.update(synth=False, manifest=os.path.abspath(manifest),
                         splits=str(Path(out) / "splits"), regions_column=None)
    return overrides


def demo_pipeline(out: str | Path = "demo_run", size: str = "default", seed: int = 0,
                  manifest: str | Path | None = None, skip_bad: bool = False) -> Pipeline:
    """The demo pipeline writing under ``out``."""
    return load_pipeline(DEMO_YAML, overrides=demo_overrides(out, seed, manifest, skip_bad), preset=SIZES[size])


def run_demo(out: str | Path = "demo_run", size: str = "default", seed: int = 0, force: bool = False,
             dry_run: bool = False, echo: Callable[[str], None] | None = None,
             manifest: str | Path | None = None, skip_bad: bool = False) -> tuple[Path, PipelineReport]:
    """Run (or resume) the demo; returns the absolute path of report.html and the step report."""
    pipeline = demo_pipeline(out, size, seed, manifest, skip_bad)
    report = run_pipeline(pipeline, force=force, dry_run=dry_run, echo=echo)
    return (Path(out) / "report.html").resolve(), report
