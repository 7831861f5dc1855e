"""A torch Dataset over a canonical manifest: one preprocessed volume (all its channels) per item.

Items are ``{"image": FloatTensor (C, X, Y, Z), "index": manifest row, <column>: float}``. With
one modality, each row whose modality matches is an item. With several (``config.modalities``
of length > 1), rows are grouped by (subject_id, session_id) and one channel per modality is
stacked; sessions lacking one are dropped and counted in ``dropped``. Volumes come from a
``VolumeCache`` (disk cache when ``cache_dir`` is given), so memory holds one item at a time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from neuro_ssl.data.cache import VolumeCache
from neuro_ssl.data.transforms import PreprocessConfig
from neuro_ssl.errors import ImageError, ManifestError, row_context


class ManifestDataset(torch.utils.data.Dataset):
    """Preprocessed volumes of a canonical manifest (see module docstring).

    Attributes: ``frame`` (the manifest row of each item's first channel, in item order),
    ``paths`` (per item, one file per channel), ``rows`` (manifest index per item),
    ``dropped`` (sessions lacking a requested modality), ``other_modality`` (rows of
    modalities not requested), ``masks`` (per item, the brain mask file of the manifest's
    ``mask`` column, or None: an automatic mask is made).
    """

    def __init__(self, manifest: pd.DataFrame, config: PreprocessConfig, cache_dir: Path | None = None,
                 columns: Sequence[str] = ("age",)):
        self.config = config
        self.source = manifest.attrs.get("source", "manifest")
        self.columns = tuple(columns)
        _require_columns(manifest, ("image",) + self.columns, self.source)
        self.cache = VolumeCache(config, cache_dir)
        self.dropped = 0
        self.other_modality = 0
        self.other_modality_names: list[str] = []
        if len(config.modalities) == 1:
            self.rows, self.paths = self._single_modality(manifest)
        else:
            self.rows, self.paths = self._group_sessions(manifest)
        self.frame = manifest.loc[[r[0] for r in self.rows]]
        self.masks = [_mask_path(manifest, r[0]) for r in self.rows]
        self.values = {c: _numeric_column(manifest, c, [r[0] for r in self.rows], self.source) for c in self.columns}

    def __len__(self) -> int:
        return len(self.rows)

    def left_out(self) -> str:
        """What the modality selection left out, e.g. ``25 FDG row(s) left out (input: T1w)``; '' if nothing."""
        parts = []
        if self.other_modality:
            names = "/".join(self.other_modality_names) or "other-modality"
            parts.append(f"{self.other_modality} {names} row(s) left out (input: {'+'.join(self.config.modalities)})")
        if self.dropped:
            parts.append(f"{self.dropped} session(s) without every one of {', '.join(self.config.modalities)} left out")
        return "; ".join(parts)

    def __getitem__(self, i: int) -> dict:
        rows, paths = self.rows[i], self.paths[i]
        try:
            pre = self.cache.get(paths, mask=self.masks[i])
        except ImageError as exc:
            raise ImageError(f"{row_context(self.source, rows[0])}: {exc}") from None
        image = pre.image if pre.image.flags.writeable else np.array(pre.image)
        item = {"image": torch.from_numpy(image), "index": int(rows[0])}
        for column in self.columns:
            item[column] = float(self.values[column][i])
        return item

    def preprocessed(self, i: int):
        """The full ``Preprocessed`` record (with affines) of item ``i``: for saliency and export."""
        try:
            return self.cache.get(self.paths[i], mask=self.masks[i])
        except ImageError as exc:
            raise ImageError(f"{row_context(self.source, self.rows[i][0])}: {exc}") from None

    def _single_modality(self, manifest: pd.DataFrame):
        wanted = self.config.modalities[0]
        df = manifest
        if "modality" in manifest.columns:
            names = manifest["modality"].astype(str).str.strip()
            if names.nunique() > 1:
                keep = names.str.lower() == wanted.lower()
                if not keep.any():
                    raise ManifestError(f"{self.source}: no rows with modality {wanted} "
                                        f"(found {', '.join(sorted(names.unique()))})")
                self.other_modality = int((~keep).sum())
                self.other_modality_names = sorted(set(names[~keep]))
                df = manifest[keep]
        _require_paths(df, self.source)
        return [(idx,) for idx in df.index], [(str(p),) for p in df["image"]]

    def _group_sessions(self, manifest: pd.DataFrame):
        _require_columns(manifest, ("subject_id", "session_id", "modality"), self.source)
        wanted = [m.lower() for m in self.config.modalities]
        df = manifest.assign(_modality=manifest["modality"].astype(str).str.strip().str.lower())
        self.other_modality = int((~df["_modality"].isin(wanted)).sum())
        self.other_modality_names = sorted(set(manifest["modality"].astype(str).str.strip()[~df["_modality"].isin(wanted)]))
        df = df[df["_modality"].isin(wanted)]
        _require_paths(df, self.source)
        rows, paths = [], []
        for (subject, session), group in df.groupby(["subject_id", "session_id"], sort=False, dropna=False):
            by_modality = {}
            for idx, modality in zip(group.index, group["_modality"]):
                if modality in by_modality:
                    name = self.config.modalities[wanted.index(modality)]
                    raise ManifestError(f"{row_context(self.source, idx)}: second {name} image for subject "
                                        f"{subject} session {session} (first at row {by_modality[modality]})")
                by_modality[modality] = idx
            if len(by_modality) < len(wanted):
                self.dropped += 1
                continue
            idxs = tuple(by_modality[m] for m in wanted)
            rows.append(idxs)
            paths.append(tuple(str(df.at[i, "image"]) for i in idxs))
        if not rows:
            raise ManifestError(f"{self.source}: no session has all of {', '.join(self.config.modalities)}")
        return rows, paths


def _mask_path(manifest: pd.DataFrame, row) -> str | None:
    """The ``mask`` column's file for a manifest row (the first channel's row), or None."""
    if "mask" not in manifest.columns:
        return None
    value = manifest.at[row, "mask"]
    return None if pd.isna(value) or not str(value).strip() else str(value)


def _require_columns(manifest: pd.DataFrame, columns: Sequence[str], source) -> None:
    missing = [c for c in columns if c not in manifest.columns]
    if missing:
        shown = ", ".join(map(str, manifest.columns[:12]))
        raise ManifestError(f"{source}: no column {', '.join(missing)} (columns: {shown})")


def _require_paths(df: pd.DataFrame, source) -> None:
    for idx, path in zip(df.index, df["image"]):
        if not isinstance(path, str) or not path.strip():
            raise ManifestError(f"{row_context(source, idx)}: empty image path")


def _numeric_column(manifest: pd.DataFrame, column: str, rows, source) -> np.ndarray:
    """Values of ``column`` at ``rows`` as float64; missing -> NaN; text that is not a number is an error."""
    raw = manifest.loc[rows, column]
    values = pd.to_numeric(raw, errors="coerce")
    bad = values.isna() & raw.notna()
    if bad.any():
        idx = raw.index[bad.to_numpy().argmax()]
        raise ManifestError(f"{row_context(source, idx)}: column {column} value {raw.loc[idx]!r} is not a number")
    return values.to_numpy(dtype=np.float64)
