"""Training: contrastive pretraining (``pretrain``), fine-tuning (``finetune``) and their shared loop parts.

Importing this package is cheap (the CLI reads ``training.config`` for ``--help``); the heavy
modules load on first use: ``from neuro_ssl.training.pretrain import pretrain``.
"""

from __future__ import annotations

import importlib

__all__ = ["PretrainConfig", "pretrain"]


def __getattr__(name: str):
    if name == "PretrainConfig":
        return importlib.import_module("neuro_ssl.training.config").PretrainConfig
    if name == "pretrain":
        return importlib.import_module("neuro_ssl.training.pretrain").pretrain
    raise AttributeError(f"module 'neuro_ssl.training' has no attribute {name!r}")
