"""Pipelines: plain-data YAML files that chain neuro-ssl commands, with skip-if-current and resume.

``load_pipeline(path, overrides, preset)`` reads and checks a file (:mod:`.spec`);
``run_pipeline(pipeline, from_step, only, force, dry_run)`` runs it (:mod:`.runner`), with the
freshness rule of :mod:`.stamps`. ``neuro-ssl run`` and ``neuro-ssl demo`` are thin layers over these.
"""

from neuro_ssl.pipeline.runner import PipelineReport, StepFailed, run_pipeline
from neuro_ssl.pipeline.spec import Pipeline, Step, load_pipeline, parse_set

__all__ = ["Pipeline", "PipelineReport", "Step", "StepFailed", "load_pipeline", "parse_set", "run_pipeline"]
