"""``finetune --folds K``: subject-level folds and the mean +- sd table over them.

Round k tests on fold k; with K >= 3 the next fold is that round's validation set (early
stopping) and the rest trains; with K = 2 there is no validation set. A subject's scans always
stay in one fold, so no round scores a person it trained on (the leakage guard runs in every
round anyway). The CLI runs each round as an ordinary run folder ``RUN/fold_k`` with its
evaluation in ``RUN/fold_k/eval`` and writes ``RUN/folds.csv`` (one row per fold, mean, sd).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from neuro_ssl.errors import ConfigError


def subject_folds(df: pd.DataFrame, k: int, seed: int = 0, stratify: str | None = None) -> dict[str, int]:
    """Fold (0..k-1) of every subject, from :func:`neuro_ssl.data.splits.make_folds`.

    Stratified by ``stratify`` (one label per subject, numeric columns binned), seeded, and
    independent of row order; each subject is in exactly one fold.
    """
    import warnings

    from neuro_ssl.data.splits import SplitWarning, make_folds

    if k < 2:
        raise ConfigError(f"--folds must be >= 2, got {k}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SplitWarning)  # tiny classes pooled: fine for fold balance
        folds = make_folds(df, k, stratify=stratify, seed=seed)
    return {str(s): i for i, parts in enumerate(folds) for s in parts["val"]["subject_id"].astype(str).unique()}


def fold_round(df: pd.DataFrame, fold_of: dict[str, int], round_index: int, k: int):
    """``(train, val or None, test)`` row subsets of ``df`` for one round (source attrs kept)."""
    fold = df["subject_id"].astype(str).map(fold_of).to_numpy()
    test_mask = fold == round_index
    val_mask = (fold == (round_index + 1) % k) if k >= 3 else np.zeros(len(df), dtype=bool)
    parts = []
    for mask in (~test_mask & ~val_mask, val_mask, test_mask):
        part = df[mask]
        part.attrs = dict(df.attrs)
        parts.append(part)
    train, val, test = parts
    return train, (val if k >= 3 else None), test


def fold_row(fold: int, metrics: dict) -> dict:
    """One folds.csv row: sizes and the value of every headline metric of a metrics.json dict."""
    row = {"fold": str(fold), "n_test": metrics["n"], "n_test_subjects": metrics["n_subjects"]}
    for name, value in metrics.items():
        if isinstance(value, dict) and "value" in value:
            row[name] = np.nan if value["value"] is None else float(value["value"])
    return row


def summarize_folds(rows: list[dict]) -> pd.DataFrame:
    """The fold rows plus ``mean`` and ``sd`` (sample sd, ddof=1) rows."""
    table = pd.DataFrame(rows)
    numbers = table.drop(columns=["fold"]).astype(float)
    summary = pd.DataFrame([{"fold": "mean", **numbers.mean().to_dict()},
                            {"fold": "sd", **numbers.std(ddof=1).to_dict()}])
    return pd.concat([table, summary], ignore_index=True)


def format_folds(table: pd.DataFrame) -> str:
    """``metric  mean +- sd`` lines for the terminal."""
    stats = table.set_index("fold")
    metrics = [c for c in stats.columns if c not in ("n_test", "n_test_subjects")]
    return "\n".join(f"{m:>18}  {stats.at['mean', m]:.3f} +- {stats.at['sd', m]:.3f}" for m in metrics)
