"""Numbers that describe one saliency map, the cohort table, and a group mean map.

Per scan (all on the scan's own grid, after mapping back):
- ``coverage_pct``: share of brain voxels where the map exceeds ``threshold`` x its maximum
  (the seed project reported e.g. "28.10 % of the brain scan"); brain = a given mask, else the
  voxels brighter than a small fraction of the image's robust range;
- ``outside_brain_share``: the map's mass outside that brain mask (region shares and their
  chance are both taken inside it, so a map uniform over the brain scores 1x chance);
- the peak (argmax) as voxel indices ``peak_i, peak_j, peak_k`` and world millimetres
  ``peak_x_mm, peak_y_mm, peak_z_mm`` (RAS+, through the scan's affine);
- ``true_label`` (the model's label column in the manifest, as one of its classes) and
  ``correct`` (``true``/``false``; empty for regression, a missing label or one in no class);
- ``constant_map`` (``true`` when the map holds one value: it localizes nothing) and
  ``layer_grid`` (the explained layer's grid, e.g. ``4x4x4``).
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

#: the columns of ``summary.csv`` in order; ``region_<name>`` columns follow, then EXTRA_COLUMNS.
SUMMARY_COLUMNS = (
    "subject_id", "session_id", "image", "saliency", "predicted", "confidence",
    "coverage_pct", "peak_x_mm", "peak_y_mm", "peak_z_mm",
)
EXTRA_COLUMNS = ("peak_i", "peak_j", "peak_k", "true_label", "correct", "constant_map", "layer_grid",
                 "outside_brain_share")
DIAGNOSIS_COLUMNS = ("diagnosis", "diagnosis_bl")


def true_label(value, classes, label: str | None, task: str | None = "classification"):
    """The manifest's label as the model sees it: the class it belongs to (``Dementia`` -> ``AD``
    on diagnosis columns, ``EMCI`` -> ``MCI``), the raw value when it is in no class, the number
    for regression, None when missing. Matches ``evaluation.labels.class_codes``."""
    from neuro_ssl.data.manifest import diagnosis_matches

    if label is None or value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == "":
        return None
    if task == "regression":
        try:
            return float(value)
        except (TypeError, ValueError):
            return None
    for name in [str(c) for c in (classes or [])]:
        if label in DIAGNOSIS_COLUMNS:
            if diagnosis_matches(value, name):
                return name
        elif str(value).strip() == name or _same_number(value, name):
            return name
    return str(value).strip()


def is_correct(predicted, truth, classes, task: str | None = "classification") -> str:
    """``true``/``false`` when ``truth`` is one of the classes; empty otherwise (and for regression)."""
    if task == "regression" or truth is None or str(truth) not in [str(c) for c in (classes or [])]:
        return ""
    return "true" if str(predicted) == str(truth) else "false"


def _same_number(value, name: str) -> bool:
    try:
        return float(value) == float(name)
    except (TypeError, ValueError):
        return False


def brain_mask(image: np.ndarray, fraction: float = 0.1) -> np.ndarray:
    """Voxels above ``fraction`` of the robust range (1st to 99th percentile) of the image.

    A rough foreground (air and background noise out; CSF, at 20-30 % of white matter on a
    T1w, in) for skull-stripped or template-space scans; pass a real mask when you have one
    (``--brain-mask``).
    """
    image = np.asarray(image, dtype=np.float32)
    finite = np.isfinite(image)
    if not finite.any():
        return np.zeros(image.shape, dtype=bool)
    low, high = (float(v) for v in np.percentile(image[finite], (1, 99)))
    if high <= low:
        return finite & (image > low)
    return finite & (image > low + fraction * (high - low))


def summarize_map(
    map_native: np.ndarray,
    affine: np.ndarray,
    brain: np.ndarray | None = None,
    threshold: float = 0.5,
) -> dict[str, float]:
    """coverage_pct, outside_brain_share (the map's mass outside ``brain``: saliency on the
    background is a shortcut's signature) and the peak (voxel and mm) of one map on its own grid."""
    saliency = np.asarray(map_native, dtype=np.float32)
    peak_value = float(saliency.max()) if saliency.size else 0.0
    out = {name: math.nan for name in ("peak_x_mm", "peak_y_mm", "peak_z_mm", "peak_i", "peak_j", "peak_k")}
    out["coverage_pct"] = coverage_pct(saliency, brain, threshold)
    total = float(saliency.sum(dtype=np.float64))
    outside = float(saliency[~np.asarray(brain, dtype=bool)].sum(dtype=np.float64)) if brain is not None else 0.0
    out["outside_brain_share"] = outside / total if total > 0 else math.nan
    if not peak_value > 0:
        return out
    ijk = np.unravel_index(int(np.argmax(saliency)), saliency.shape)
    xyz = (np.asarray(affine, dtype=np.float64) @ np.array([*ijk, 1.0]))[:3]
    out.update(peak_i=int(ijk[0]), peak_j=int(ijk[1]), peak_k=int(ijk[2]))
    out.update(peak_x_mm=float(xyz[0]), peak_y_mm=float(xyz[1]), peak_z_mm=float(xyz[2]))
    return out


def coverage_pct(map_native: np.ndarray, brain: np.ndarray | None, threshold: float = 0.5) -> float:
    """100 x (brain voxels with map > threshold x max) / (brain voxels); 0 for an all-zero map."""
    if not 0 <= threshold < 1:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    saliency = np.asarray(map_native)
    inside = np.ones(saliency.shape, dtype=bool) if brain is None else np.asarray(brain, dtype=bool)
    if inside.shape != saliency.shape:
        raise ValueError(f"brain mask shape {inside.shape} differs from the map's {saliency.shape}")
    n_brain = int(inside.sum())
    peak = float(saliency.max()) if saliency.size else 0.0
    if n_brain == 0 or not peak > 0:
        return 0.0
    return 100.0 * int(np.count_nonzero(inside & (saliency > threshold * peak))) / n_brain


def summary_table(rows: Iterable[Mapping], region_names: Iterable[str] = ()) -> pd.DataFrame:
    """Rows (dicts) -> the summary DataFrame with the contract's columns in order."""
    region_columns = [f"region_{name}" for name in region_names]
    columns = [*SUMMARY_COLUMNS, *region_columns, *EXTRA_COLUMNS]
    frame = pd.DataFrame([{c: _cell(row.get(c, math.nan)) for c in columns} for row in rows], columns=columns)
    return frame


def _cell(value):
    return math.nan if value is None else value


class GroupMean:
    """Running mean of native maps, kept only while every map shares one grid (shape and affine).

    Scans already in a template space (e.g. a cohort registered to MNI) share a grid; scans in
    their own native spaces do not, and then there is no voxelwise mean to write. Each map is
    divided by its own maximum first, so every scan weighs the same whatever its gradient scale.
    """

    def __init__(self):
        self.sum_: np.ndarray | None = None
        self.affine_: np.ndarray | None = None
        self.count_ = 0
        self.shared_ = True

    def add(self, map_native: np.ndarray, affine: np.ndarray) -> None:
        if not self.shared_:
            return
        saliency = np.asarray(map_native, dtype=np.float64)
        peak = float(saliency.max()) if saliency.size else 0.0
        saliency = saliency / peak if peak > 0 else saliency
        if self.sum_ is None:
            self.sum_, self.affine_ = saliency.copy(), np.asarray(affine, dtype=np.float64)
        elif saliency.shape != self.sum_.shape or not np.allclose(affine, self.affine_, atol=1e-4):
            self.shared_, self.sum_ = False, None
            return
        else:
            self.sum_ += saliency
        self.count_ += 1

    def result(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(mean map float32, affine), or None when the maps do not share a grid or there are none."""
        if not self.shared_ or self.sum_ is None or self.count_ == 0:
            return None
        return (self.sum_ / self.count_).astype(np.float32), self.affine_
