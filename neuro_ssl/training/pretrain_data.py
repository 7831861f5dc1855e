"""The data side of pretraining: manifest checks, covariates, bad-scan skipping, the two-view dataset.

Everything a user can get wrong in the manifest is refused here, before a network is built, with
one line naming the file, the rows and the fix: an empty manifest, a ``--meta`` column that does
not exist, scans with a missing covariate (``--missing-y fail|skip``), bad rows and unusable scans
(data.screening: the first stops the run; reported in RUN/skipped.csv and skipped only with
``--skip-bad``), SupCon labels with a single class.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from neuro_ssl.data.cache import resolve_cache_dir
from neuro_ssl.data.screening import nothing_left, screen_rows
from neuro_ssl.errors import ImageError, ManifestError, row_context
from neuro_ssl.training.config import PretrainConfig
from neuro_ssl.training.loop import DistInfo, SeededItems, broadcast_object

#: item keys holding the covariates / integer labels (prefixed so they never clash with user columns)
Y_PREFIX = "_ssl_y"
MAX_ROWS_SHOWN = 5


@dataclass
class PretrainData:
    """The training dataset (items keyed by ``(epoch, index)``) and what the loop needs to know."""

    dataset: Any
    n_items: int
    y_columns: list[str]
    subjects: list[str]
    classes: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    skipped_rows: list = field(default_factory=list)  # data.screening.SkippedRow, for RUN/skipped.csv
    frame: pd.DataFrame | None = None  # the manifest rows trained on, indexed by row (batch["index"])

    @property
    def y_dim(self) -> int:
        return len(self.y_columns)

    def batch_y(self, batch: dict, device: torch.device) -> torch.Tensor | None:
        """(B, k) float64 covariates of a collated batch, or None when the loss uses none."""
        if not self.y_columns:
            return None
        return torch.stack([torch.as_tensor(batch[c], dtype=torch.float64) for c in self.y_columns], 1).to(device)


@dataclass
class ProbeData:
    dataset: Any          # ManifestDataset (no augmentation)
    manifest: pd.DataFrame  # one row per item, aligned with ``dataset``


def preprocess_config(cfg: PretrainConfig):
    from neuro_ssl.data.transforms import PreprocessConfig

    return PreprocessConfig.from_dict(cfg.preprocess_dict())


def _manifest_dataset(df: pd.DataFrame, cfg: PretrainConfig, columns=()):
    from neuro_ssl.data.datasets import ManifestDataset

    return ManifestDataset(df, preprocess_config(cfg), resolve_cache_dir(cfg.cache_dir), columns=tuple(columns))


def _rows_text(rows) -> str:
    rows = list(rows)
    shown = ", ".join(str(r) for r in rows[:MAX_ROWS_SHOWN])
    return shown + (f", ... ({len(rows) - MAX_ROWS_SHOWN} more)" if len(rows) > MAX_ROWS_SHOWN else "")


def check_clinical_columns(df: pd.DataFrame, cfg: PretrainConfig, source: str) -> None:
    """The --clinical / --text columns exist (checked before any scan is read; values may be missing)."""
    for column in (*cfg.clinical, *([cfg.text] if cfg.text else [])):
        if column not in df.columns:
            shown = ", ".join(map(str, df.columns[:15]))
            raise ManifestError(f"{source}: no column '{column}' for --clinical/--text (columns: {shown})")


def check_not_empty(df: pd.DataFrame, source: str) -> None:
    if df is None or len(df) == 0:
        raise ManifestError(f"{source}: the manifest has no rows")


def covariates(frame: pd.DataFrame, cfg: PretrainConfig, source: str) -> tuple[pd.DataFrame, list[str]]:
    """The loss's y per item row: float columns (yaware, the autoencoders) or integer class codes (supcon)."""
    missing = [c for c in cfg.meta if c not in frame.columns]
    if missing:
        shown = ", ".join(map(str, frame.columns[:15]))
        raise ManifestError(f"{source}: no column '{missing[0]}' for --meta (columns: {shown})")
    if cfg.pair_loss != "supcon":
        values = {}
        for column in cfg.meta:
            raw = frame[column]
            numbers = pd.to_numeric(raw, errors="coerce")
            text = raw.notna() & numbers.isna()
            if text.any():
                idx = raw.index[text.to_numpy().argmax()]
                raise ManifestError(f"{row_context(source, idx)}: --meta {column} value {raw.loc[idx]!r} is not a number")
            values[column] = numbers.astype(float)
        return pd.DataFrame(values, index=frame.index), []
    label = frame[cfg.meta[0]].where(frame[cfg.meta[0]].notna(), None)
    text = label.map(lambda v: None if v is None or str(v).strip() == "" else str(v).strip())
    classes = sorted({v for v in text if v is not None})
    codes = text.map(lambda v: float(classes.index(v)) if v is not None else np.nan)
    return pd.DataFrame({cfg.meta[0]: codes.astype(float)}, index=frame.index), classes


def drop_missing_y(ys: pd.DataFrame, cfg: PretrainConfig, source: str, log: Callable[[str], None]) -> list:
    """Manifest rows to drop for a missing covariate (``--missing-y skip``); fail lists them otherwise."""
    bad = ys.index[ys.isna().any(axis=1).to_numpy()].tolist()
    if not bad:
        return []
    what = ",".join(cfg.meta)
    if cfg.missing_y == "fail":
        raise ManifestError(f"{source}: {len(bad)} scan(s) without a value of {what} (rows {_rows_text(bad)}); "
                            f"fill them in, or pass --missing-y skip to leave them out")
    if len(bad) < len(ys):
        log(f"skipping {len(bad)} scan(s) without {what} (rows {_rows_text(bad)})")
    return bad


def screen_scans(df: pd.DataFrame, cfg: PretrainConfig, info: DistInfo) -> tuple[list, list]:
    """Preprocess every scan once before training (this also fills the cache) on rank 0.

    Without ``--skip-bad`` the first unusable scan stops every rank with its one-line message
    (not hours later, mid-epoch); with it, the rows are dropped and listed.
    """
    from neuro_ssl.data.screening import screen_items

    outcome = None
    if info.is_main:
        dataset = _manifest_dataset(df, cfg)
        try:
            outcome = ("ok",) + screen_items(len(dataset), dataset.preprocessed,
                                             lambda i: list(dataset.rows[i]), df, skip_bad=cfg.skip_bad)
        except (ImageError, ManifestError) as exc:
            outcome = ("error", type(exc).__name__, str(exc))
    outcome = broadcast_object(info, outcome)
    if outcome[0] == "error":
        raise (ImageError if outcome[1] == "ImageError" else ManifestError)(outcome[2])
    return outcome[1], outcome[2]


def build_train_data(df: pd.DataFrame, cfg: PretrainConfig, info: DistInfo | None = None,
                     log: Callable[[str], None] | None = None) -> PretrainData:
    """Checked manifest -> seeded two-view dataset; see the module docstring for what is refused."""
    info = info or DistInfo()
    log = log or (lambda message: print(f"neuro-ssl pretrain: {message}", file=sys.stderr))
    source = df.attrs.get("source", "manifest") if df is not None else "manifest"
    check_not_empty(df, source)
    df = df.copy()
    df.attrs["source"] = source
    n_rows, left_out = len(df), []
    check_clinical_columns(df, cfg, source)
    df, skipped_rows = screen_rows(df, used_columns=cfg.meta, skip_bad=cfg.skip_bad)
    skipped = {"bad_rows": len(skipped_rows)} if skipped_rows else {}
    if skipped_rows:
        left_out.append(f"{len(skipped_rows)} bad row(s) skipped (--skip-bad)")
    base = _manifest_dataset(df, cfg)
    if base.left_out():
        left_out.append(base.left_out())
    ys, classes = (covariates(base.frame, cfg, source) if cfg.meta else (pd.DataFrame(index=base.frame.index), []))
    no_y = drop_missing_y(ys, cfg, source, log) if cfg.meta else []
    if no_y:
        skipped["missing_y"] = len(no_y)
        left_out.append(f"{len(no_y)} scan(s) without {','.join(cfg.meta)} skipped (--missing-y skip)")
        if len(no_y) == len(base):
            raise nothing_left(source, n_rows, left_out, "pretrain on")
    if base.left_out():
        log(f"using {len(base) - len(no_y)} {'+'.join(cfg.input_modalities)} item(s); {base.left_out()}")
    if cfg.loss == "supcon" and len(classes) < 2:
        raise ManifestError(f"{source}: --loss supcon needs at least 2 classes in '{cfg.meta[0]}', found "
                            f"{classes or 'none'}")
    y_columns = [f"{Y_PREFIX}{k}" for k in range(ys.shape[1])]
    for k, column in enumerate(y_columns):
        df[column] = np.nan
        df.loc[ys.index, column] = ys.iloc[:, k].to_numpy()
    df = df.drop(index=_item_rows(base, no_y))
    bad, bad_scans = screen_scans(df, cfg, info)
    if bad:
        skipped["unreadable"] = len(bad_scans)
        skipped_rows += bad_scans
        left_out.append(f"{len(bad_scans)} unreadable scan(s) skipped (--skip-bad)")
        if _items_left(base, set(no_y), set(bad)) == 0:
            raise nothing_left(source, n_rows, left_out, "pretrain on")
        df = df.drop(index=bad)
    if skipped_rows:
        log(f"skipping {len(skipped_rows)} bad row(s) (--skip-bad); first: {skipped_rows[0].reason}")
    base = _manifest_dataset(df, cfg, y_columns)
    views = _two_view_dataset(base, cfg, _visit_partners(base.frame, cfg, log))
    subjects = sorted({str(s) for s in base.frame["subject_id"]}) if "subject_id" in base.frame else []
    return PretrainData(SeededItems(views, cfg.seed), len(base), y_columns, subjects, classes, skipped, skipped_rows,
                        base.frame)


def _item_rows(base, first_rows) -> list:
    """Every channel's manifest row of the items whose first-channel row is in ``first_rows``."""
    wanted = set(first_rows)
    return [row for rows in base.rows if rows[0] in wanted for row in rows]


def _items_left(base, no_y: set, bad: set) -> int:
    return sum(1 for rows in base.rows if rows[0] not in no_y and not bad.intersection(rows))


def build_probe_data(df: pd.DataFrame, cfg: PretrainConfig) -> ProbeData:
    """The held-out manifest for the online probes (deterministic preprocessing only)."""
    source = df.attrs.get("source", "validation manifest")
    check_not_empty(df, source)
    check_clinical_columns(df, cfg, source)
    base = _manifest_dataset(df, cfg)
    return ProbeData(base, base.frame)


def _visit_partners(frame: pd.DataFrame, cfg: PretrainConfig, log: Callable[[str], None]):
    """Temporal positives (``--positives visits``): each scan's other visits, or None."""
    if cfg.positives != "visits":
        return None
    from neuro_ssl.data.views import visit_partners

    partners = visit_partners(frame)
    paired = sum(bool(p) for p in partners)
    log(f"--positives visits: {paired} of {len(partners)} scan(s) pair with another visit of their subject; "
        f"the other {len(partners) - paired} pair two views of the same scan")
    return partners


def _two_view_dataset(base, cfg: PretrainConfig, partners=None):
    from neuro_ssl.data.views import AugmentConfig, TwoViewDataset

    from neuro_ssl.training.objectives import OBJECTIVES

    augment = AugmentConfig.from_dict(dict(cfg.augment))
    targets = bool(getattr(OBJECTIVES.get(cfg.loss), "reconstructs", False))  # autoencoders: the clean scans
    return TwoViewDataset(base, augment, seed=cfg.seed, cross_modal=tuple(cfg.views) if cfg.views else None,
                          partners=partners, targets=targets)
