"""The leakage guard: a model is never scored on a person it has seen.

Every model file records, in its meta, the sorted subject ids it was trained on, pretraining of
its encoder included. Evaluating (or cross-checking any output) on one of them inflates every
metric, so it is refused unless the user says ``--allow-overlap``, and then it is recorded.
"""

from __future__ import annotations

from typing import Iterable

from neuro_ssl.errors import LeakageError

#: ids quoted in the error message before "..."
SHOWN_IDS = 5


def overlapping_subjects(trained_on: Iterable, evaluated_on: Iterable) -> list[str]:
    """Sorted subject ids present in both collections (compared as strings: "011" != "11")."""
    return sorted(_ids(trained_on) & _ids(evaluated_on))


def _ids(values: Iterable) -> set[str]:
    """Subject ids as strings, missing values (None, NaN) left out."""
    return {str(v) for v in values if v is not None and v == v}


def check_leakage(trained_on: Iterable, evaluated_on: Iterable, allow_overlap: bool = False,
                  source: str = "model", target: str = "manifest",
                  remedy: str = "evaluate on held-out subjects, or pass --allow-overlap to override (recorded)") -> list[str]:
    """Raise :class:`LeakageError` if any evaluated subject was seen in training; return the overlap.

    With ``allow_overlap`` the overlap is returned (for the record) instead of raised. ``remedy``
    ends the error line (a command without ``--allow-overlap`` says what to do instead).
    """
    evaluated_on = list(evaluated_on)
    overlap = overlapping_subjects(trained_on, evaluated_on)
    if overlap and not allow_overlap:
        n_eval = len(_ids(evaluated_on))
        shown = ", ".join(overlap[:SHOWN_IDS]) + (", ..." if len(overlap) > SHOWN_IDS else "")
        raise LeakageError(
            f"{target}: {len(overlap)} of its {n_eval} subjects were used to train, validate or pretrain {source} "
            f"({shown}); {remedy}"
        )
    return overlap
