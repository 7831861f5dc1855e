"""``StudyConfig``: every option of a label-efficiency study, as plain data (saved as ``DIR/study.yaml``).

Pretraining and network options are the ``PretrainConfig`` fields under their own names (one
dict shared by every pretrained method; ``loss`` and ``meta`` are set per method), so the study
and ``neuro-ssl pretrain`` can never disagree on what an option means. Fine-tuning options are
``FinetuneConfig`` fields (``epochs``, ``lr``, ``batch_size``, ``patience``).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any

from neuro_ssl._utils.options import dataclass_to_dict
from neuro_ssl.errors import ConfigError

SCRATCH = "scratch"
ALL = "all"
MODES = ("linear", "full")
#: options that say where and how fast a unit runs, not what it computes (never hashed into stamps)
RUNNING = ("device", "workers", "cache_dir", "skip_bad", "checkpoint_every", "log_every", "probe_every")
#: fine-tuning options a study passes on (the rest keep FinetuneConfig's defaults)
FINETUNE_KEYS = ("epochs", "lr", "batch_size", "patience")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+\-]*$")


@dataclass
class StudyConfig:
    """All options of a study; ``validate()`` raises a one-line ConfigError on the first bad one.

    ``budgets``: labelled subjects per class (regression: subjects in all), ints, plus ``"all"``
    for the whole training split. ``encoders``: given encoders by method name (taken instead of
    pretraining that method, or added as a method of their own).
    """

    label: str = "diagnosis"
    classes: tuple[str, ...] = ()
    task: str = "auto"
    methods: tuple[str, ...] = (SCRATCH, "simclr", "yaware")
    encoders: dict = field(default_factory=dict)
    modes: tuple[str, ...] = MODES
    budgets: tuple = (5, 10, 25, ALL)
    draws: int = 5
    metric: str | None = None            # None: auc (classification), mae (regression)
    pretrain: dict = field(default_factory=dict)
    finetune: dict = field(default_factory=dict)
    use_val: bool = True                 # early stopping on the split's val.csv (all its labels)
    n_boot: int = 1000
    knn_k: int = 5
    seed: int = 0
    keep_models: bool = False
    finetune_workers: int = 0            # DataLoader workers of fine-tuning, evaluation, embeddings

    def to_dict(self) -> dict[str, Any]:
        return dataclass_to_dict(self)

    @property
    def all_methods(self) -> tuple[str, ...]:
        """The methods in order: ``methods``, then given encoders not named there."""
        return tuple(dict.fromkeys([*self.methods, *self.encoders]))

    def running(self) -> dict[str, Any]:
        """Device, cache, skip-bad, AMP (shared with pretraining) and workers for the units after it.

        Pretraining's ``workers`` augment views in parallel; fine-tuning, evaluation and embeddings
        read cached volumes, where a worker per epoch costs more (a fork each time) than it saves.
        """
        keys = ("device", "cache_dir", "skip_bad", "amp")
        return {**{k: self.pretrain[k] for k in keys if k in self.pretrain}, "workers": int(self.finetune_workers)}

    def validate(self, losses: tuple[str, ...]) -> "StudyConfig":
        """Check every option; ``losses`` are the pretraining objectives available."""
        if int(self.draws) < 1:
            raise ConfigError(f"--draws must be >= 1, got {self.draws}")
        if int(self.n_boot) < 1 or int(self.knn_k) < 1 or int(self.finetune_workers) < 0:
            raise ConfigError("--n-boot and --knn-k must be >= 1, --finetune-workers >= 0")
        for mode in self.modes:
            _choice("--modes", mode, MODES)
        if not self.modes or not self.budgets or not self.all_methods:
            raise ConfigError("--methods, --modes and --budgets need at least one value each")
        for name, path in self.encoders.items():
            if name == SCRATCH:
                raise ConfigError(f"--encoders: '{SCRATCH}' is the random-initialisation baseline; give {path} another name")
            if not _NAME.match(str(name)):
                raise ConfigError(f"--encoders: '{name}' is not a usable method name (letters, digits, _ . + -)")
        for method in self.all_methods:
            if method != SCRATCH and method not in losses and method not in self.encoders:
                raise ConfigError(f"--methods: unknown method '{method}'{_hint(method, (SCRATCH, *losses))}; choose from "
                                  f"{', '.join((SCRATCH, *losses))} or give an encoder with --encoders {method}=RUN/encoder.pt")
        unknown = [k for k in self.finetune if k not in FINETUNE_KEYS]
        if unknown:
            raise ConfigError(f"unknown fine-tuning option(s) for a study: {', '.join(unknown)}")
        return self


def parse_budgets(text: str | list | tuple) -> tuple:
    """``"5,10,all"`` -> ``(5, 10, "all")``: positive ints ascending, ``all`` last, duplicates dropped."""
    items = [v.strip() for v in text.split(",")] if isinstance(text, str) else [str(v).strip() for v in text]
    numbers, has_all = set(), False
    for item in filter(None, items):
        if item.lower() == ALL:
            has_all = True
            continue
        if not item.isdigit() or int(item) < 1:
            raise ConfigError(f"--budgets: expected positive integers (labelled subjects per class) or 'all', got {item!r}")
        numbers.add(int(item))
    if not numbers and not has_all:
        raise ConfigError("--budgets needs at least one budget (e.g. 5,10,25,all)")
    return tuple(sorted(numbers)) + ((ALL,) if has_all else ())


def parse_encoders(text: str | dict | None) -> dict[str, str]:
    """``"yaware=runs/y/encoder.pt,mine=enc.pt"`` (or a mapping) -> ``{name: path}``."""
    if not text:
        return {}
    if isinstance(text, dict):
        return {str(k): str(v) for k, v in text.items()}
    found: dict[str, str] = {}
    for item in filter(None, (v.strip() for v in str(text).split(","))):
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise ConfigError(f"--encoders: expected NAME=PATH (e.g. yaware=runs/yaware/encoder.pt), got {item!r}")
        if name.strip() in found:
            raise ConfigError(f"--encoders: '{name.strip()}' is given twice")
        found[name.strip()] = path.strip()
    return found


def _choice(flag: str, value: str, options) -> None:
    if value not in options:
        raise ConfigError(f"{flag}: unknown value '{value}'{_hint(value, options)}; choose from {', '.join(options)}")


def _hint(word: str, options) -> str:
    close = difflib.get_close_matches(str(word), list(options), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
