"""Saliency for every scan of a manifest: maps in each scan's own space, summary, group mean.

For each scan: preprocess exactly as the model was trained (the run's stored
``PreprocessConfig``, through the shared cache), explain it on the model grid
(:mod:`~neuro_ssl.interpret.gradcam`), map it back onto the file's voxel grid
(:mod:`~neuro_ssl.interpret.native`), write it as NIfTI with the file's affine, and measure it
(:mod:`~neuro_ssl.interpret.summary`, :mod:`~neuro_ssl.interpret.regions`).

Writes under ``out_dir``: ``maps/<subject>_<session>_<modality>_saliency.nii.gz``,
``summary.csv``, ``regions.csv`` (mean share per region against chance), ``group_mean.nii.gz``
(when all maps share one grid) and ``skipped.csv`` (scans left out with ``skip_bad``).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from neuro_ssl._utils.files import write_csv
from neuro_ssl.errors import ConfigError, ManifestError, NeuroSSLError
from neuro_ssl.interpret.gradcam import compute_saliency
from neuro_ssl.interpret.native import to_native, write_saliency
from neuro_ssl.interpret.regions import RegionSet, load_mask, load_regions, resample_labels, safe_region_name
from neuro_ssl.interpret.summary import GroupMean, brain_mask, summarize_map, summary_table


@dataclass
class SaliencyOptions:
    """What to explain and how to measure it (the ``neuro-ssl saliency`` flags)."""

    method: str = "gradcam"
    layer: str | None = None
    target: str | None = None
    threshold: float = 0.5
    n_steps: int = 16
    max_scans: int | None = None
    skip_bad: bool = False
    regions: Path | None = None
    region_labels: Path | None = None
    regions_column: str | None = None
    brain_mask: Path | None = None
    cache_dir: Path | None = None


@dataclass
class CohortSaliency:
    """What ``explain_cohort`` wrote: the summary table and the paths of the other outputs."""

    summary: pd.DataFrame
    summary_path: Path
    skipped: list = field(default_factory=list)  # data.screening.SkippedRow
    group_mean: Path | None = None
    regions_path: Path | None = None
    layer: str | None = None


@dataclass
class _Scan:
    row: int
    subject_id: str
    session_id: str
    modality: str
    paths: list[str]
    values: dict
    base_dir: Path | None = None
    problem: str | None = None  # a manifest problem found while grouping, raised when explained


def explain_cohort(model, meta: dict, manifest: pd.DataFrame, out_dir: str | os.PathLike,
                   options: SaliencyOptions | None = None,
                   progress: Callable[[Iterable], Iterable] = iter) -> CohortSaliency:
    """Explain every scan of ``manifest`` with ``model`` (from ``load_model``) and write the outputs."""
    from neuro_ssl.data.cache import VolumeCache
    from neuro_ssl.data.screening import SkippedRow, screen_rows, write_skipped
    from neuro_ssl.data.transforms import PreprocessConfig

    options = options or SaliencyOptions()
    out_dir = Path(out_dir)
    manifest, skipped = screen_rows(manifest, skip_bad=options.skip_bad)
    config = PreprocessConfig.from_dict(dict(meta.get("preprocess") or {}))
    scans = select_scans(manifest, config.modalities, options)
    regions = load_regions(options.regions, options.region_labels) if options.regions else None
    template_brain = load_mask(options.brain_mask) if options.brain_mask else None
    cache = VolumeCache(config, options.cache_dir)
    state = _CohortState(regions, options.regions_column)
    rows, layer = [], None
    for scan in progress(scans):
        try:
            if scan.problem:
                raise ManifestError(scan.problem)
            row, layer = _explain_scan(model, meta, cache, scan, out_dir, options, state, template_brain)
        except NeuroSSLError as exc:
            if not options.skip_bad:
                raise type(exc)(f"{_source(manifest)} row {scan.row}: {exc}") from None
            skipped.append(SkippedRow(int(scan.row), scan.subject_id, scan.session_id, scan.paths[0],
                                      f"{_source(manifest)} row {scan.row}: {' '.join(str(exc).split())}"))
            continue
        rows.append(row)
    if not rows:
        raise ManifestError(f"{_source(manifest)}: no scan could be explained ({len(skipped)} skipped)")
    summary = summary_table(rows, state.region_names())
    summary_path = out_dir / "summary.csv"
    write_csv(summary_path, summary)
    write_skipped(out_dir, skipped)
    return CohortSaliency(summary, summary_path, skipped, state.write_group_mean(out_dir),
                          state.write_region_table(out_dir), layer)


class _CohortState:
    """Region definitions plus what accumulates over scans (group mean, shares, chance)."""

    def __init__(self, regions: RegionSet | None, regions_column: str | None):
        self.regions = regions
        self.column = regions_column
        self.column_name = safe_region_name(regions_column) if regions_column else None
        self.group = GroupMean()
        self.shares: dict[str, list[float]] = {}
        self.chance: dict[str, list[float]] = {}

    def region_names(self) -> list[str]:
        names = list(self.regions.names) if self.regions else []
        return names + ([self.column_name] if self.column_name and self.column_name not in names else [])

    def measure(self, map_native, affine, brain, scan: _Scan) -> dict[str, float]:
        shares: dict[str, float] = {}
        chance: dict[str, float] = {}
        if self.regions is not None:
            shares.update(self.regions.shares(map_native, affine))
            chance.update(self.regions.volume_fractions(map_native.shape, affine, within=brain))
        if self.column:
            mask = _row_mask(scan, self.column, map_native.shape, affine)
            if mask is None:
                shares[self.column_name] = chance[self.column_name] = math.nan
            else:
                total = float(map_native.sum(dtype=np.float64))
                shares[self.column_name] = float(map_native[mask].sum(dtype=np.float64)) / total if total > 0 else math.nan
                chance[self.column_name] = float((mask & brain).sum()) / max(int(brain.sum()), 1)
        for name, value in shares.items():
            self.shares.setdefault(name, []).append(value)
            self.chance.setdefault(name, []).append(chance.get(name, math.nan))
        return {f"region_{name}": value for name, value in shares.items()}

    def write_group_mean(self, out_dir: Path) -> Path | None:
        from neuro_ssl.data.io import save_nifti

        result = self.group.result()
        if result is None or self.group.count_ < 2:
            return None
        return Path(save_nifti(result[0], result[1], out_dir / "group_mean.nii.gz"))

    def write_region_table(self, out_dir: Path) -> Path | None:
        if not self.shares:
            return None
        table = pd.DataFrame([
            {"region": name, "mean_share": _nanmean(values), "chance_share": _nanmean(self.chance[name]),
             "n_scans": int(np.sum(np.isfinite(values)))}
            for name, values in self.shares.items()
        ])
        table["ratio_to_chance"] = table["mean_share"] / table["chance_share"].where(table["chance_share"] > 0)
        path = out_dir / "regions.csv"
        write_csv(path, table)
        return path


def _explain_scan(model, meta, cache, scan: _Scan, out_dir: Path, options: SaliencyOptions,
                  state: _CohortState, template_brain) -> tuple[dict, str | None]:
    from neuro_ssl.data.io import load_volume

    mask = scan.values.get("mask")
    pre = cache.get(scan.paths if len(scan.paths) > 1 else scan.paths[0],
                    mask=str(mask) if isinstance(mask, str) and mask.strip() else None)
    result = compute_saliency(
        model, pre.image, method=options.method, layer=options.layer, target=options.target,
        classes=meta.get("classes"), task=meta.get("task", "classification"), n_steps=options.n_steps,
    )
    map_native = to_native(result.map, pre.affine, pre.native_shape, pre.native_affine)
    path = out_dir / "maps" / saliency_file_name(scan)
    write_saliency(map_native, pre.native_affine, path, like=scan.paths[0])
    image, _ = load_volume(scan.paths[0])
    if template_brain is not None:
        brain = resample_labels(template_brain[0], template_brain[1], map_native.shape, pre.native_affine) > 0
    else:
        brain = brain_mask(image)
    state.group.add(map_native, pre.native_affine)
    row = {"subject_id": scan.subject_id, "session_id": scan.session_id, "image": scan.paths[0],
           "saliency": str(path.resolve()), "predicted": result.predicted,
           "confidence": result.confidence, "modality": scan.modality, "target": result.target}
    row.update(summarize_map(map_native, pre.native_affine, brain, options.threshold))
    row.update(state.measure(map_native, pre.native_affine, brain, scan))
    return row, result.layer


def select_scans(manifest: pd.DataFrame, modalities: tuple[str, ...], options: SaliencyOptions) -> list[_Scan]:
    """The scans to explain: rows of the model's modality (one group per session if several)."""
    source = _source(manifest)
    for column in ("subject_id", "image"):
        if column not in manifest.columns:
            raise ManifestError(f"{source}: no '{column}' column")
    if options.regions_column and options.regions_column not in manifest.columns:
        raise ConfigError(f"--regions-column {options.regions_column}: no such column in {source}")
    has_modality = "modality" in manifest.columns and manifest["modality"].notna().any()
    if len(modalities) == 1:
        scans = [_scan(idx, row, [row["image"]], modalities[0]) for idx, row in manifest.iterrows()
                 if not has_modality or _same(row.get("modality"), modalities[0]) or pd.isna(row.get("modality"))]
    else:
        scans = _grouped_scans(manifest, modalities, options.skip_bad, source)
    if not scans:
        raise ManifestError(f"{source}: no rows of modality {', '.join(modalities)} (the model's input)")
    base_dir = Path(source).parent if source != "manifest" else None
    for scan in scans:
        scan.base_dir = base_dir
    return scans[: options.max_scans] if options.max_scans else scans


def _grouped_scans(manifest, modalities, skip_bad: bool, source: str) -> list[_Scan]:
    if "modality" not in manifest.columns:
        raise ManifestError(f"{source}: the model takes {', '.join(modalities)}: a 'modality' column is needed")
    session = manifest["session_id"] if "session_id" in manifest.columns else pd.Series("", index=manifest.index)
    scans = []
    for _, group in manifest.groupby([manifest["subject_id"], session.fillna("")], sort=False):
        by_modality = {str(m).lower(): (idx, row) for idx, row in group.iterrows() if pd.notna(m := row["modality"])}
        missing = [m for m in modalities if m.lower() not in by_modality]
        first_idx, first_row = by_modality.get(modalities[0].lower(), next(iter(group.iterrows())))
        if missing:
            problem = f"no {', '.join(missing)} image for this session"
            if not skip_bad:
                raise ManifestError(f"{source} row {first_idx}: {problem}")
            scan = _scan(first_idx, first_row, [first_row["image"]], modalities[0])
            scan.problem = problem
            scans.append(scan)
            continue
        paths = [by_modality[m.lower()][1]["image"] for m in modalities]
        scans.append(_scan(first_idx, first_row, paths, modalities[0]))
    return scans


def _scan(idx, row, paths, modality) -> _Scan:
    session = row.get("session_id")
    return _Scan(int(idx), str(row["subject_id"]), "" if pd.isna(session) else str(session),
                 str(row.get("modality")) if pd.notna(row.get("modality")) else modality,
                 [str(p) for p in paths], row.to_dict())


def saliency_file_name(scan: _Scan) -> str:
    """``<subject>_<session>_<modality>_saliency.nii.gz`` with unsafe characters replaced."""
    parts = [p for p in (scan.subject_id, scan.session_id, scan.modality) if p]
    stem = "_".join(re.sub(r"[^A-Za-z0-9._-]+", "-", p).strip("-") for p in parts)
    return f"{stem or f'row{scan.row}'}_saliency.nii.gz"


def _row_mask(scan: _Scan, column: str, shape, affine) -> np.ndarray | None:
    value = scan.values.get(column)
    if value is None or (isinstance(value, float) and math.isnan(value)) or not str(value).strip():
        return None
    mask, mask_affine = load_mask(resolve_row_path(str(value).strip(), scan))
    return resample_labels(mask, mask_affine, shape, affine) > 0


def resolve_row_path(value: str, scan: _Scan) -> Path:
    """A path from a manifest column; ``read_manifest`` already made volume paths absolute,
    a relative one left (a non-volume suffix) resolves against the manifest's folder."""
    path = Path(value)
    if path.is_absolute() or scan.base_dir is None:
        return path
    return scan.base_dir / path


def _same(value, modality: str) -> bool:
    return pd.notna(value) and str(value).strip().lower() == modality.lower()


def _source(manifest: pd.DataFrame) -> str:
    return str(manifest.attrs.get("source", "manifest"))


def _nanmean(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(values)) if np.isfinite(values).any() else math.nan
