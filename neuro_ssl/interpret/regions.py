"""Regions of interest for saliency shares: mask folders, integer atlases, per-scan masks.

The share of a map inside a region is ``sum(map * mask) / sum(map)``: 1.0 when all saliency
lies inside, the region's share of the volume when the map is uniform (what chance gives).
Regions may live in any space: each is resampled (nearest neighbour) onto the scan's own grid
through the two affines, the same voxel-to-voxel map the saliency itself goes through.

``--regions`` accepts
- a folder of binary masks: one region per file, named by the file's stem (``hippocampus.nii.gz``
  -> ``hippocampus``); masks may overlap;
- one integer atlas file: one region per non-zero label, named from a labels table (``index,name``
  CSV/TSV, given or found beside the atlas as ``<stem>.tsv|.csv`` or ``<stem>_labels.tsv|.csv``),
  else ``label_<n>``; a file holding only 0/1 is a single mask named by its stem.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from neuro_ssl.data.io import is_volume_file, load_volume, volume_suffix
from neuro_ssl.errors import ImageError, ManifestError
from neuro_ssl.interpret.native import resample_to_grid


@dataclass
class LabelLayer:
    """An integer label volume in its own space and the names of its labels (0 = outside)."""

    labels: np.ndarray
    affine: np.ndarray
    names: dict[int, str]
    source: str


@dataclass
class RegionSet:
    """Regions from one ``--regions`` argument; resampled grids are cached per scan geometry."""

    layers: list[LabelLayer]
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def names(self) -> list[str]:
        return [name for layer in self.layers for name in layer.names.values()]

    def labels_on(self, shape, affine) -> list[np.ndarray]:
        """Each layer's labels on the grid (shape, affine); the last four grids asked are cached
        (a scan's own grid and the model grid, which the checks use, alternate)."""
        key = (tuple(int(s) for s in shape), np.round(np.asarray(affine, dtype=np.float64), 6).tobytes())
        if key not in self._cache:
            while len(self._cache) >= 4:  # scans of one cohort usually share few grids; keep memory flat
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = [resample_labels(l.labels, l.affine, shape, affine) for l in self.layers]
        return self._cache[key]

    def shares(self, map_native: np.ndarray, affine: np.ndarray) -> dict[str, float]:
        """Share of ``map_native`` (on its grid ``affine``) inside every region."""
        out: dict[str, float] = {}
        for layer, labels in zip(self.layers, self.labels_on(map_native.shape, affine)):
            out.update(label_shares(map_native, labels, layer.names))
        return out

    def volume_fractions(self, shape, affine, within: np.ndarray | None = None) -> dict[str, float]:
        """Each region's share of the voxels (of ``within`` when given): the share chance gives."""
        out: dict[str, float] = {}
        for layer, labels in zip(self.layers, self.labels_on(shape, affine)):
            weights = np.ones(labels.shape, dtype=np.float64) if within is None else within.astype(np.float64)
            out.update(label_shares(weights, labels, layer.names))
        return out


def region_shares(map_native: np.ndarray, masks: Mapping[str, np.ndarray]) -> dict[str, float]:
    """``sum(map * mask) / sum(map)`` for each mask on the map's grid; NaN for an all-zero map."""
    saliency = np.asarray(map_native, dtype=np.float64)
    total = float(saliency.sum())
    out = {}
    for name, mask in masks.items():
        mask = np.asarray(mask)
        if mask.shape != saliency.shape:
            raise ValueError(f"region {name}: mask shape {mask.shape} differs from the map's {saliency.shape}")
        out[name] = float(saliency[mask > 0].sum()) / total if total > 0 else math.nan
    return out


def label_shares(map_native: np.ndarray, labels: np.ndarray, names: Mapping[int, str]) -> dict[str, float]:
    """Shares for every named label at once (one pass with ``bincount``)."""
    saliency = np.asarray(map_native, dtype=np.float64).ravel()
    flat = np.asarray(labels).ravel()
    if flat.shape != saliency.shape:
        raise ValueError(f"labels shape {labels.shape} differs from the map's {np.shape(map_native)}")
    total = float(saliency.sum())
    top = max([int(k) for k in names] + [int(flat.max(initial=0))]) + 1
    sums = np.bincount(np.clip(flat, 0, None), weights=saliency, minlength=top)
    return {name: float(sums[int(k)]) / total if total > 0 else math.nan for k, name in names.items()}


def resample_labels(labels, labels_affine, shape, affine) -> np.ndarray:
    """Nearest-neighbour resampling of an integer volume onto the grid (shape, affine); 0 outside."""
    labels = np.asarray(labels)
    if labels.dtype.kind == "f":
        labels = np.rint(labels)
    labels = labels.astype(np.int32, copy=False)
    same = tuple(labels.shape) == tuple(shape) and np.allclose(labels_affine, affine, atol=1e-5)
    if same:
        return labels
    return resample_to_grid(labels, labels_affine, shape, affine, order=0, cval=0).astype(np.int32)


def load_regions(path: str | os.PathLike, labels_path: str | os.PathLike | None = None) -> RegionSet:
    """Read ``--regions`` (a folder of masks or one atlas file); ImageError/ManifestError if unusable (data: exit 1)."""
    path = Path(path)
    if not path.exists():
        raise ImageError(f"--regions {path}: not found")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and is_volume_file(p) and not p.name.startswith("."))
        if not files:
            raise ImageError(f"--regions {path}: the folder holds no mask files (.nii, .nii.gz, .nrrd, .mha, ...)")
        layers = [_mask_layer(f) for f in files]
        _check_unique(layers, path)
        return RegionSet(layers)
    return RegionSet([_atlas_layer(path, labels_path)])


def volume_stem(path: str | os.PathLike) -> str:
    """``a/hippocampus.nii.gz`` -> ``hippocampus``."""
    name = Path(path).name
    suffix = volume_suffix(name)
    return name[: -len(suffix)] if suffix else Path(path).stem


def safe_region_name(name: str) -> str:
    """A name usable in a CSV column ``region_<name>``: letters, digits, ``_`` and ``-``."""
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "_", str(name).strip()).strip("_")
    return cleaned or "region"


def load_mask(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """One mask file as (int32 0/1 array, affine)."""
    data, affine = _read(path)
    return (data > 0.5).astype(np.int32), affine


def _read(path) -> tuple[np.ndarray, np.ndarray]:
    data, affine = load_volume(path)
    if data.ndim != 3:
        raise ImageError(f"{path}: a region must be a 3D volume, got shape {data.shape}")
    if not np.all(np.isfinite(data)):
        raise ImageError(f"{path}: region volume holds NaN or infinite values")
    return data, affine


def _mask_layer(path: Path) -> LabelLayer:
    mask, affine = load_mask(path)
    return LabelLayer(mask, affine, {1: safe_region_name(volume_stem(path))}, str(path))


def _atlas_layer(path: Path, labels_path) -> LabelLayer:
    data, affine = _read(path)
    values = np.unique(np.rint(data).astype(np.int64))
    if not np.allclose(data, np.rint(data)) or values.min() < 0:
        raise ImageError(f"--regions {path}: an atlas must hold non-negative integer labels")
    present = [int(v) for v in values if v != 0]
    if not present:
        raise ImageError(f"--regions {path}: no non-zero voxels (an empty mask or atlas)")
    if present == [1] and labels_path is None:
        return LabelLayer(np.rint(data).astype(np.int32), affine, {1: safe_region_name(volume_stem(path))}, str(path))
    table = _find_labels_table(path, labels_path)
    names = read_label_names(table) if table else {}
    named = {v: safe_region_name(names.get(v, f"label_{v}")) for v in present}
    return LabelLayer(np.rint(data).astype(np.int32), affine, named, str(path))


def _find_labels_table(atlas: Path, labels_path) -> Path | None:
    if labels_path is not None:
        labels_path = Path(labels_path)
        if not labels_path.is_file():
            raise ManifestError(f"--region-labels {labels_path}: not found")
        return labels_path
    stem = volume_stem(atlas)
    for name in (f"{stem}.tsv", f"{stem}.csv", f"{stem}_labels.tsv", f"{stem}_labels.csv"):
        if (atlas.parent / name).is_file():
            return atlas.parent / name
    return None


def read_label_names(path: str | os.PathLike) -> dict[int, str]:
    """``index,name`` rows (header optional; CSV or TSV) -> {index: name}."""
    from neuro_ssl.data.manifest import sniff_delimiter

    path = Path(path)
    text = path.read_text(encoding="utf-8-sig")
    delimiter = sniff_delimiter(text, path)
    names: dict[int, str] = {}
    for line_no, line in enumerate(text.splitlines(), start=1):
        cells = [c.strip() for c in line.split(delimiter)]
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if len(cells) < 2:
            raise ManifestError(f"{path} row {line_no}: expected 'index{delimiter}name'")
        try:
            index = int(float(cells[0]))
        except ValueError:
            if line_no == 1:
                continue  # a header row
            raise ManifestError(f"{path} row {line_no}: label index {cells[0]!r} is not an integer") from None
        names[index] = cells[1]
    return names


def _check_unique(layers: list[LabelLayer], folder: Path) -> None:
    seen: dict[str, str] = {}
    for layer in layers:
        for name in layer.names.values():
            if name in seen:
                raise ImageError(f"--regions {folder}: two masks are both named '{name}' ({seen[name]}, {layer.source})")
            seen[name] = layer.source
