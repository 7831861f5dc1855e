"""Label-efficiency studies: does pretraining pay off on this cohort, and from how many labels?

A study crosses methods (``scratch``, each contrastive objective, given encoders) x fine-tuning
modes (linear probe, full) x label budgets (labelled subjects per class, nested) x draws (a new
subject draw and seed per repeat), fine-tunes each cell on the training split and scores it on
the held-out test subjects with subject-bootstrap intervals; per encoder it also measures
label-free quality (ridge age MAE, kNN, alignment and uniformity) on the held-out scans.

It is an orchestration over the library's own entry points (``training.pretrain.pretrain``,
``training.finetune.finetune``, ``evaluation.evaluate.evaluate_run``, the embedding helpers),
never a copy of them, so it sits above ``training`` and ``evaluation`` (neither may import the
other's orchestration) and below ``cli``/``pipeline``. Every unit of work is stamped as the
pipeline runner stamps its steps (:mod:`neuro_ssl.pipeline.stamps`): a stopped study continues
where it stopped.

- ``config``: :class:`StudyConfig`, every option of a study
- ``plan``: splits, label task, methods, the subject draws (:func:`make_plan`)
- ``units``: the units of work and what each runs
- ``runner``: :func:`run_study`, skip-if-current and resume, a progress bar over units
- ``tables``: ``study.csv``, ``summary.csv``, ``label_free.csv``, ``draws.csv``
- ``label_free``: embeddings and two augmented views of the held-out scans -> label-free metrics
"""

from __future__ import annotations

import importlib

__all__ = ["StudyConfig", "run_study"]


def __getattr__(name: str):
    if name == "StudyConfig":
        return importlib.import_module("neuro_ssl.study.config").StudyConfig
    if name == "run_study":
        return importlib.import_module("neuro_ssl.study.runner").run_study
    raise AttributeError(f"module 'neuro_ssl.study' has no attribute {name!r}")
