"""Option mappings read from YAML or checkpoints: unknown keys answer with "did you mean"."""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Iterable

from neuro_ssl.errors import ConfigError


def reject_unknown_keys(keys: Iterable, known: Iterable[str], what: str) -> None:
    """Raise ConfigError naming the first key not in ``known`` and the closest valid one."""
    known = list(known)
    for key in keys:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown {what} option '{key}'{hint}")


def dataclass_to_dict(obj) -> dict[str, Any]:
    """A config dataclass as a plain YAML-safe dict: every field, tuples as lists, mappings copied."""
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else (dict(value) if isinstance(value, dict) else value)
    return out
