"""Saliency for every scan of a manifest: maps in each scan's own space, summary, group mean.

For each scan: preprocess exactly as the model was trained (the run's stored
``PreprocessConfig``, through the shared cache), explain it on the model grid
(:mod:`~neuro_ssl.interpret.gradcam`), map it back onto the file's voxel grid
(:mod:`~neuro_ssl.interpret.native`), write it as NIfTI with the file's affine, and measure it
(:mod:`~neuro_ssl.interpret.summary`, :mod:`~neuro_ssl.interpret.regions`).

Writes under ``out_dir``: ``maps/<subject>_<session>_<modality>_saliency.nii.gz`` (one file per
manifest row, see :func:`saliency_file_names`), ``summary.csv``, ``regions.csv`` (mean share per
region against chance), ``group_mean.nii.gz`` (when all maps share one grid), ``skipped.csv``
(scans left out with ``skip_bad``) and, with ``checks``, ``checks.json``
(:mod:`~neuro_ssl.interpret.sanity`).
"""

from __future__ import annotations

import math
import os
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from neuro_ssl._utils.files import write_csv
from neuro_ssl.errors import ConfigError, ManifestError, NeuroSSLError
from neuro_ssl.interpret.gradcam import compute_saliency, grid_text
from neuro_ssl.interpret.native import to_native, write_saliency
from neuro_ssl.interpret.regions import RegionSet, load_mask, load_regions, resample_labels, safe_region_name
from neuro_ssl.interpret.summary import GroupMean, brain_mask, is_correct, summarize_map, summary_table, true_label


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
    checks: bool = False  # the sanity checks, written to checks.json
    compare: tuple | None = None  # (model, label) of a second model for the repeatability check
    seed: int = 0


@dataclass
class CohortSaliency:
    """What ``explain_cohort`` wrote: the summary table and the paths of the other outputs."""

    summary: pd.DataFrame
    summary_path: Path
    skipped: list = field(default_factory=list)  # data.screening.SkippedRow
    group_mean: Path | None = None
    regions_path: Path | None = None
    layer: str | None = None
    warnings: list[str] = field(default_factory=list)  # maps that cannot localize anything
    checks_path: Path | None = None
    checks: dict | None = None


@dataclass
class _Scan:
    row: int
    subject_id: str
    session_id: str
    modality: str
    paths: list[str]
    values: dict
    base_dir: Path | None = None
    file_name: str = ""
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
    checks = _cohort_checks(model, meta, options)
    rows, results = [], []
    for scan in progress(scans):
        try:
            if scan.problem:
                raise ManifestError(scan.problem)
            row, result = _explain_scan(model, meta, cache, scan, out_dir, options, state, template_brain, checks)
        except ConfigError:
            raise  # an option that fails on one scan (e.g. a --layer with no grid) fails on all: no row, no skip
        except NeuroSSLError as exc:
            if not options.skip_bad:
                raise type(exc)(f"{_source(manifest)} row {scan.row}: {exc}") from None
            skipped.append(SkippedRow(int(scan.row), scan.subject_id, scan.session_id, scan.paths[0],
                                      f"{_source(manifest)} row {scan.row}: {' '.join(str(exc).split())}"))
            continue
        rows.append(row)
        results.append(result)
    if not rows:
        raise ManifestError(f"{_source(manifest)}: no scan could be explained ({len(skipped)} skipped)")
    summary = summary_table(rows, state.region_names())
    summary_path = out_dir / "summary.csv"
    write_csv(summary_path, summary)
    write_skipped(out_dir, skipped)
    warnings = map_warnings(results, config.shape, options.method)
    out = CohortSaliency(summary, summary_path, skipped, state.write_group_mean(out_dir),
                         state.write_region_table(out_dir), results[0].layer, warnings)
    if checks is not None:
        out.checks_path, out.checks = checks.write(out_dir, warnings)
    return out


def _cohort_checks(model, meta: dict, options: SaliencyOptions):
    if not options.checks:
        if options.compare is not None:
            raise ConfigError("--compare-run is part of the sanity checks: add --checks")
        return None
    from neuro_ssl.interpret.sanity import CohortChecks

    return CohortChecks(model, meta, options.method, options.n_steps, options.seed, options.compare)


def map_warnings(results: list, input_shape, method: str = "gradcam") -> list[str]:
    """Sentences for maps that cannot localize anything: a 1x1x1 layer, every map constant."""
    warnings = []
    first = results[0]
    finer = ", ".join(f"{name} ({grid_text(grid)})" for name, grid in first.stage_grids.items()
                      if math.prod(grid) > 1)
    hint = f"; choose a finer layer with --layer: {finer}" if finer else ""
    if first.layer_grid is not None and math.prod(first.layer_grid) == 1:
        effect = ("a constant map that localizes nothing" if method == "gradcam" else
                  "so the map is guided backpropagation alone, which ignores the model's weights (Adebayo et al. 2018)")
        warnings.append(f"layer {first.layer} has a 1x1x1 grid on the {grid_text(input_shape)} model input: "
                        f"Grad-CAM gives one value per scan there, {effect}{hint}")
    n_constant = sum(r.constant for r in results)
    if n_constant == len(results):
        advice = hint if first.layer and not warnings else ""
        warnings.append(f"every map is constant ({n_constant} of {len(results)} scans): the maps say nothing "
                        f"about where the model looked{advice}")
    return warnings


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

    def masks_on(self, shape, affine, scan: _Scan) -> dict[str, np.ndarray]:
        """{region: bool mask} on the grid (shape, affine), e.g. the model grid for the checks."""
        masks: dict[str, np.ndarray] = {}
        if self.regions is not None:
            for layer, labels in zip(self.regions.layers, self.regions.labels_on(shape, affine)):
                masks.update({name: labels == k for k, name in layer.names.items()})
        if self.column:
            mask = _row_mask(scan, self.column, shape, affine)
            if mask is not None:
                masks[self.column_name] = mask
        return masks

    def measure(self, map_native, affine, brain, scan: _Scan) -> dict[str, float]:
        """Per region: the share of the map's mass inside the brain that lies in the region, and
        chance, the region's share of the brain voxels, so that a map uniform over the brain has
        ratio 1 (the definition of checks.json's localization). Mass outside the brain is left
        out of both and reported on its own (``outside_brain_share`` in summary.csv)."""
        shares: dict[str, float] = {}
        chance: dict[str, float] = {}
        brain = np.asarray(brain, dtype=bool)
        in_brain = np.where(brain, np.asarray(map_native, dtype=np.float64), 0.0)
        if self.regions is not None:
            shares.update(self.regions.shares(in_brain, affine))
            chance.update(self.regions.volume_fractions(map_native.shape, affine, within=brain))
        if self.column:
            mask = _row_mask(scan, self.column, map_native.shape, affine)
            if mask is None:
                shares[self.column_name] = chance[self.column_name] = math.nan
            else:
                total = float(in_brain.sum())
                shares[self.column_name] = float(in_brain[mask].sum()) / total if total > 0 else math.nan
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
                  state: _CohortState, template_brain, checks) -> tuple[dict, object]:
    from neuro_ssl.data.io import load_volume

    mask = scan.values.get("mask")
    pre = cache.get(scan.paths if len(scan.paths) > 1 else scan.paths[0],
                    mask=str(mask) if isinstance(mask, str) and mask.strip() else None)
    result = compute_saliency(
        model, pre.image, method=options.method, layer=options.layer, target=options.target,
        classes=meta.get("classes"), task=meta.get("task", "classification"), n_steps=options.n_steps,
    )
    map_native = to_native(result.map, pre.affine, pre.native_shape, pre.native_affine)
    path = out_dir / "maps" / scan.file_name
    write_saliency(map_native, pre.native_affine, path, like=scan.paths[0])
    image, _ = load_volume(scan.paths[0])
    if template_brain is not None:
        brain = resample_labels(template_brain[0], template_brain[1], map_native.shape, pre.native_affine) > 0
    else:
        brain = brain_mask(image)
    state.group.add(map_native, pre.native_affine)
    truth = true_label(scan.values.get(meta.get("label")), meta.get("classes"), meta.get("label"), meta.get("task"))
    row = {"subject_id": scan.subject_id, "session_id": scan.session_id, "image": scan.paths[0],
           "saliency": str(path.resolve()), "predicted": result.predicted,
           "confidence": result.confidence, "modality": scan.modality, "target": result.target,
           "true_label": truth, "correct": is_correct(result.predicted, truth, meta.get("classes"), meta.get("task")),
           "constant_map": "true" if result.constant else "false",
           "layer_grid": grid_text(result.layer_grid) if result.layer_grid else ""}
    row.update(summarize_map(map_native, pre.native_affine, brain, options.threshold))
    row.update(state.measure(map_native, pre.native_affine, brain, scan))
    if checks is not None:
        grid_brain = None
        if template_brain is not None:
            grid_brain = resample_labels(template_brain[0], template_brain[1], result.map.shape, pre.affine) > 0
        checks.add((scan.subject_id, scan.session_id), pre, result,
                   state.masks_on(result.map.shape, pre.affine, scan), grid_brain)
    return row, result


def select_scans(manifest: pd.DataFrame, modalities: tuple[str, ...], options: SaliencyOptions) -> list[_Scan]:
    """The scans to explain: rows of the model's modality (one group per session if several)."""
    source = _source(manifest)
    for column in ("subject_id", "image"):
        if column not in manifest.columns:
            raise ManifestError(f"{source}: no '{column}' column")
    if options.regions_column and options.regions_column not in manifest.columns:
        raise ManifestError(f"--regions-column {options.regions_column}: no such column in {source}")
    has_modality = "modality" in manifest.columns and manifest["modality"].notna().any()
    if len(modalities) == 1:
        scans = [_scan(idx, row, [row["image"]], modalities[0]) for idx, row in manifest.iterrows()
                 if not has_modality or _same(row.get("modality"), modalities[0]) or pd.isna(row.get("modality"))]
    else:
        scans = _grouped_scans(manifest, modalities, options.skip_bad, source)
    if not scans:
        raise ManifestError(f"{source}: no rows of modality {', '.join(modalities)} (the model's input)")
    base_dir = Path(source).parent if source != "manifest" else None
    for scan, name in zip(scans, saliency_file_names(scans)):
        scan.base_dir, scan.file_name = base_dir, name
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


def saliency_file_names(scans: list[_Scan]) -> list[str]:
    """``<subject>_<session>_<modality>_saliency.nii.gz`` per scan, unique (ignoring case, for
    macOS and Windows disks) and readable: accents are dropped (``sub-ä1`` -> ``sub-a1``), other
    unsafe characters become ``-``, and ``_row<N>`` (the manifest row) is added where the safe
    name differs from the raw ids or two names would collide, so no map overwrites another."""
    raw = ["_".join(p for p in (s.subject_id, s.session_id, s.modality) if p) for s in scans]
    safe = ["_".join(_safe_part(p) for p in (s.subject_id, s.session_id, s.modality) if _safe_part(p))
            for s in scans]
    names = [f"{stem}_row{s.row}" if stem != r else stem for stem, r, s in zip(safe, raw, scans)]
    names = [name if name else f"row{s.row}" for name, s in zip(names, scans)]
    for _ in range(len(names)):
        counts = Counter(n.casefold() for n in names)
        clashes = [i for i, n in enumerate(names) if counts[n.casefold()] > 1]
        if not clashes:
            break
        for i in clashes:
            names[i] = f"{names[i]}_row{scans[i].row}" if not names[i].endswith(f"_row{scans[i].row}") else f"{names[i]}_{i}"
    return [f"{name}_saliency.nii.gz" for name in names]


def _safe_part(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^A-Za-z0-9._-]+", "-", ascii_text).strip("-.")


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
