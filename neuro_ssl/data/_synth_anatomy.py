"""Synthetic anatomy in MNI space: the template, the planted regions and the effects.

Everything here works on the MNI152 2009 template and tissue maps that ship inside nilearn,
brought to nilearn's own 2 mm grid (99 x 117 x 95) and cropped to the brain, so one visit costs
a few tens of milliseconds (4 mm block means for coarse test cohorts).
Effects are applied to tissue *fractions* (grey matter, white matter, CSF per voxel) and the
image is then composed from them, so atrophy means tissue replaced by CSF, as in a real brain:

- age: cortical thinning (grey matter fraction lost everywhere) and ventricle growth (the
  ventricles expand by a distance in mm that grows with age);
- diagnosis: focal atrophy in a bilateral medial-temporal (hippocampal) region, with a severity
  of ~1 for Alzheimer's disease, ~0.5 for MCI, 0 for controls; optionally
  (``VisitState.global_ad_effects``) also extra cortical thinning and ventricle widening, whose
  regions then join the truth masks;
- FDG-PET: uptake from the tissue fractions, reduced in the posterior cingulate / precuneus and
  temporoparietal cortex in proportion to the same severity, at PET resolution (7 mm FWHM).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields

import numpy as np
from scipy import ndimage

TEMPLATE_SPACING_MM = 2.0
#: T1w intensities of the tissues in the template (fitted on the nilearn template: residual sd 0.023).
T1_TISSUE_MEANS = {"gm": 0.66, "wm": 0.88, "csf": 0.28}
#: relative FDG uptake of the tissues.
PET_TISSUE_UPTAKE = {"gm": 1.0, "wm": 0.3, "csf": 0.05}
PET_FWHM_MM = 7.0
#: bilateral medial temporal lobe (hippocampus + entorhinal): centre (mm), radii (mm), pitch (deg),
#: effect weight. The left side is hit harder, as often reported in AD.
DIAGNOSIS_ELLIPSOIDS = (
    ((-27.0, -22.0, -14.0), (12.0, 22.0, 12.0), 25.0, 1.0),
    ((27.0, -22.0, -14.0), (12.0, 22.0, 12.0), 25.0, 0.75),
)
#: posterior cingulate / precuneus and bilateral temporoparietal (angular gyrus) cortex.
PET_ELLIPSOIDS = (
    ((0.0, -56.0, 30.0), (12.0, 20.0, 16.0), 0.0, 1.0),
    ((-46.0, -60.0, 30.0), (12.0, 18.0, 16.0), 0.0, 1.0),
    ((46.0, -60.0, 30.0), (12.0, 18.0, 16.0), 0.0, 1.0),
)
#: box (MNI mm) in which low-T1, tissue-free voxels are taken as ventricles.
VENTRICLE_BOX_MM = ((-30.0, 30.0), (-50.0, 35.0), (-8.0, 35.0))
#: the working grid keeps this much room around the brain for deformation and head size.
CROP_MARGIN_MM = 14.0


@dataclass(frozen=True)
class Template:
    """Template maps on one grid: tissue fractions, planted-region profiles and the grid affine."""

    affine: np.ndarray          # 4x4 voxel -> MNI mm
    brain: np.ndarray           # soft brain mask in [0, 1]
    gm: np.ndarray
    wm: np.ndarray
    residual: np.ndarray        # T1 texture the three-tissue model does not explain
    ventricles: np.ndarray      # bool, the template's own ventricles
    ventricle_distance_mm: np.ndarray  # signed distance to the ventricle surface (< 0 inside)
    diagnosis_profile: np.ndarray      # shape of the atrophy region in [0, 1] (the truth mask is >= 0.5)
    diagnosis_weight: np.ndarray       # how strongly the atrophy acts: the profile times each side's weight
    pet_profile: np.ndarray            # shape and weight in [0, 1] of the hypometabolism

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.brain.shape

    @property
    def spacing_mm(self) -> float:
        return float(np.sqrt((self.affine[:3, 0] ** 2).sum()))

    def map_arrays(self, fn, affine: np.ndarray) -> "Template":
        """The same template with ``fn`` applied to every map, on the grid ``affine``."""
        maps = {f.name: fn(f.name, getattr(self, f.name)) for f in fields(self) if f.name != "affine"}
        return Template(affine=affine, **maps)


@dataclass(frozen=True)
class VisitState:
    """What the effects need to know about one subject at one visit."""

    age_years: float
    severity: float           # diagnosis effect: 0 control, ~0.5 MCI, ~1 AD, grows over time
    brain_age_gap_years: float  # subject-specific offset of the age effects
    ventricle_offset_mm: float  # subject-specific ventricle size
    global_ad_effects: bool = True  # the disease also thins the cortex and widens the ventricles


@functools.lru_cache(maxsize=1)
def mni_template() -> Template:
    """nilearn's packaged MNI152 maps (never downloaded) on its own 2 mm grid (99 x 117 x 95).

    The grid is the one ``load_mni152_template(resolution=2)`` returns; the maps are made from
    the 1 mm files with a [1, 2, 1] / 4 tent filter before taking every other voxel (anti-aliased,
    and 10x faster than nilearn's resampling).
    """
    from nilearn import datasets  # packaged files only: these loaders never fetch

    t1_img = datasets.load_mni152_template(resolution=1)
    t1 = _halve(t1_img.get_fdata(dtype=np.float32))
    gm = _halve(datasets.load_mni152_gm_template(resolution=1).get_fdata(dtype=np.float32))
    wm = _halve(datasets.load_mni152_wm_template(resolution=1).get_fdata(dtype=np.float32))
    brain = _halve(datasets.load_mni152_brain_mask(resolution=1).get_fdata(dtype=np.float32))
    affine = t1_img.affine.copy()
    affine[:3, :3] *= 2.0
    fit = np.minimum(1.0, brain / np.maximum(gm + wm, 1e-6))  # tissue never exceeds the brain
    gm, wm = gm * fit, wm * fit
    csf = np.clip(brain - gm - wm, 0.0, 1.0)
    residual = np.where(brain > 0.5, t1 - compose_t1(gm, wm, csf, T1_TISSUE_MEANS), 0.0)
    ventricles = _find_ventricles(t1, csf, brain, affine)
    distance = ndimage.distance_transform_edt(~ventricles) - ndimage.distance_transform_edt(ventricles)
    mm = world_grid(brain.shape, affine)
    brain_bool = brain > 0.5
    return Template(
        affine=affine, brain=brain, gm=gm, wm=wm, residual=residual.astype(np.float32), ventricles=ventricles,
        ventricle_distance_mm=(distance * TEMPLATE_SPACING_MM).astype(np.float32),
        diagnosis_profile=(ellipsoid_profile(mm, DIAGNOSIS_ELLIPSOIDS) * brain_bool).astype(np.float32),
        diagnosis_weight=(ellipsoid_profile(mm, DIAGNOSIS_ELLIPSOIDS, weighted=True) * brain_bool).astype(np.float32),
        pet_profile=(ellipsoid_profile(mm, PET_ELLIPSOIDS, weighted=True) * brain_bool).astype(np.float32),
    )


@functools.lru_cache(maxsize=2)
def working_template(spacing_mm: float = 2.0) -> Template:
    """The template cropped to the brain plus a margin (half the voxels), at 2 mm or 4 mm.

    Per-visit work happens on this grid; 4 mm (2x2x2 block means) is for coarse test cohorts.
    """
    full = mni_template()
    inside = np.argwhere(full.brain > 0)
    margin = int(np.ceil(CROP_MARGIN_MM / TEMPLATE_SPACING_MM))
    lo = np.maximum(inside.min(axis=0) - margin, 0)
    hi = np.minimum(inside.max(axis=0) + margin + 1, full.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    affine = full.affine.copy()
    affine[:3, 3] = full.affine[:3, :3] @ lo + full.affine[:3, 3]
    cropped = full.map_arrays(lambda name, v: v[box], affine)
    if spacing_mm == TEMPLATE_SPACING_MM:
        return cropped
    if spacing_mm != 2 * TEMPLATE_SPACING_MM:
        raise ValueError(f"working grid is 2 or 4 mm, not {spacing_mm}")
    coarse = affine.copy()
    coarse[:3, :3] *= 2.0
    coarse[:3, 3] += affine[:3, :3] @ np.full(3, 0.5)  # centre of each 2x2x2 block
    return cropped.map_arrays(
        lambda name, v: _block_mean(v) >= 0.5 if v.dtype == bool else _block_mean(v), coarse)


def _halve(volume: np.ndarray) -> np.ndarray:
    """Every other voxel after a [1, 2, 1] / 4 tent filter on each axis (voxel 2i keeps its centre)."""
    for axis in range(3):
        volume = ndimage.correlate1d(volume, [0.25, 0.5, 0.25], axis=axis, mode="constant")
    return np.ascontiguousarray(volume[::2, ::2, ::2], dtype=np.float32)


def _block_mean(volume: np.ndarray) -> np.ndarray:
    """Average 2x2x2 blocks, edge-padding odd sizes."""
    v = np.pad(volume.astype(np.float32), [(0, s % 2) for s in volume.shape], mode="edge")
    x, y, z = (s // 2 for s in v.shape)
    return v.reshape(x, 2, y, 2, z, 2).mean(axis=(1, 3, 5), dtype=np.float32)


def world_grid(shape, affine) -> np.ndarray:
    """MNI coordinates (mm) of every voxel centre, shape (3, X, Y, Z), float32."""
    ijk = np.indices(shape, dtype=np.float32)
    linear, offset = affine[:3, :3].astype(np.float32), affine[:3, 3].astype(np.float32)
    return np.einsum("ab,b...->a...", linear, ijk) + offset[:, None, None, None]


def ellipsoid_profile(mm: np.ndarray, ellipsoids, weighted: bool = False) -> np.ndarray:
    """1 inside each ellipsoid (or its weight), a cosine taper to 0 between radius 1.0 and 1.4, max over ellipsoids."""
    out = np.zeros(mm.shape[1:], dtype=np.float32)
    for centre, radii, pitch_deg, weight in ellipsoids:
        rel = mm - np.asarray(centre, dtype=np.float32)[:, None, None, None]
        c, s = np.cos(np.deg2rad(pitch_deg)), np.sin(np.deg2rad(pitch_deg))
        y_axis = c * rel[1] + s * rel[2]     # long axis tilted: rises towards the back
        z_axis = -s * rel[1] + c * rel[2]
        r = np.sqrt((rel[0] / radii[0]) ** 2 + (y_axis / radii[1]) ** 2 + (z_axis / radii[2]) ** 2)
        taper = 0.5 * (1.0 + np.cos(np.pi * np.clip((r - 1.0) / 0.4, 0.0, 1.0)))
        np.maximum(out, taper * np.float32(weight if weighted else 1.0), out=out)
    return out


def _find_ventricles(t1, csf, brain, affine) -> np.ndarray:
    """Ventricles: dark, tissue-free voxels in a central box, the larger connected pieces only."""
    mm = world_grid(t1.shape, affine)
    in_box = np.ones(t1.shape, dtype=bool)
    for axis, (lo, hi) in enumerate(VENTRICLE_BOX_MM):
        in_box &= (mm[axis] >= lo) & (mm[axis] <= hi)
    candidate = in_box & (csf > 0.5) & (t1 < 0.45) & (brain > 0.5)
    labels, n = ndimage.label(candidate)
    if n == 0:
        return candidate
    sizes = ndimage.sum_labels(candidate, labels, index=np.arange(1, n + 1))
    keep = np.flatnonzero(sizes >= 10) + 1
    return np.isin(labels, keep)


# ----- effects -----

#: grey matter fraction lost per year of age beyond 55 (cortical thinning).
GM_LOSS_PER_YEAR = 0.006
#: ventricle surface moves outwards by this many mm per year beyond 55.
VENTRICLE_GROWTH_MM_PER_YEAR = 0.16
#: at severity 1, this fraction of grey matter is lost in the diagnosis region (left side).
FOCAL_GM_LOSS = 0.8
#: white matter loses this share of what grey matter loses there.
FOCAL_WM_SHARE = 0.6
#: at severity 1, with global AD effects, the disease also thins the whole cortex and widens the
#: ventricles (the brain looks ~8 years older, the "brain age gap" reported in AD).
AD_EXTRA_THINNING = 0.05
AD_EXTRA_VENTRICLE_MM = 1.2
#: a voxel belongs to the cortex truth mask when the template's grey-matter fraction reaches this.
CORTEX_GM_FRACTION = 0.5
#: at severity 1, FDG uptake of grey matter drops by this fraction in the PET region.
PET_HYPOMETABOLISM = 0.4


def ventricle_growth_mm(state: VisitState) -> float:
    """How far the ventricle surface has moved out from the template's, at this visit."""
    years = max(0.0, state.age_years - 55.0 + state.brain_age_gap_years)
    disease = AD_EXTRA_VENTRICLE_MM * state.severity if state.global_ad_effects else 0.0
    return VENTRICLE_GROWTH_MM_PER_YEAR * years + state.ventricle_offset_mm + disease


def tissue_at_visit(tpl: Template, state: VisitState) -> dict[str, np.ndarray]:
    """Tissue fractions (gm, wm, csf) and the ventricle fraction after ageing and disease."""
    years = max(0.0, state.age_years - 55.0 + state.brain_age_gap_years)
    disease = AD_EXTRA_THINNING * state.severity if state.global_ad_effects else 0.0
    thinning = min(0.35, GM_LOSS_PER_YEAR * years + disease)
    edge_mm = 0.4 * tpl.spacing_mm
    ventricle = _expit((ventricle_growth_mm(state) - tpl.ventricle_distance_mm) / edge_mm) * (tpl.brain > 0.5)
    focal = np.minimum(FOCAL_GM_LOSS * state.severity * tpl.diagnosis_weight, 0.95)
    keep = 1.0 - ventricle
    gm = tpl.gm * ((1.0 - thinning) * (1.0 - focal) * keep)
    wm = tpl.wm * ((1.0 - FOCAL_WM_SHARE * focal) * keep)
    csf = np.clip(tpl.brain - gm - wm, 0.0, 1.0)
    return {"gm": gm.astype(np.float32), "wm": wm.astype(np.float32),
            "csf": csf.astype(np.float32), "ventricle": ventricle.astype(np.float32)}


def _expit(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -30.0, 30.0)))


def compose_t1(gm, wm, csf, means) -> np.ndarray:
    """T1w intensity as a mix of tissue means (WM brightest, CSF darkest)."""
    return (means["gm"] * gm + means["wm"] * wm + means["csf"] * csf).astype(np.float32)


def t1_image(tpl: Template, tissue: dict, means=T1_TISSUE_MEANS) -> np.ndarray:
    """T1w image on the template grid: tissue mix plus the template's own texture."""
    return compose_t1(tissue["gm"], tissue["wm"], tissue["csf"], means) + tpl.residual


def pet_image(tpl: Template, tissue: dict, state: VisitState) -> np.ndarray:
    """FDG uptake on the template grid: GM-weighted, hypometabolic where the disease acts, 7 mm FWHM."""
    decline = 1.0 - 0.002 * max(0.0, state.age_years - 55.0)
    hypometabolism = PET_HYPOMETABOLISM * min(state.severity, 1.5) * tpl.pet_profile
    gm_uptake = PET_TISSUE_UPTAKE["gm"] * decline * (1.0 - hypometabolism)
    uptake = (gm_uptake * tissue["gm"] + PET_TISSUE_UPTAKE["wm"] * tissue["wm"]
              + PET_TISSUE_UPTAKE["csf"] * tissue["csf"])
    sigma_vox = PET_FWHM_MM / (2.0 * np.sqrt(2.0 * np.log(2.0))) / tpl.spacing_mm
    return ndimage.gaussian_filter(uptake.astype(np.float32), sigma_vox, mode="constant")


def ventricle_volume_ml(state: VisitState, head_scale: float) -> float:
    """A subject's ventricle volume (ml) at a visit, measured on the 2 mm template whatever the grid."""
    growth, volume = _ventricle_volume_table()
    return float(np.interp(ventricle_growth_mm(state), growth, volume)) * head_scale ** 3


@functools.lru_cache(maxsize=1)
def _ventricle_volume_table() -> tuple[np.ndarray, np.ndarray]:
    full = mni_template()
    distance = full.ventricle_distance_mm[(full.brain > 0.5) & (full.ventricle_distance_mm < 40.0)]
    growth = np.linspace(-4.0, 20.0, 97)
    voxel_ml = TEMPLATE_SPACING_MM ** 3 / 1000.0
    volume = np.array([_expit((g - distance) / (0.4 * TEMPLATE_SPACING_MM)).sum() * voxel_ml for g in growth])
    return growth, volume


# ----- smooth random fields (low-frequency cosine basis, as in SPM's normalisation) -----

def cosine_basis(n: int, frequencies) -> np.ndarray:
    """DCT-II basis vectors (len(frequencies), n): smooth across the whole axis."""
    i = np.arange(n, dtype=np.float64)
    return np.stack([np.cos(np.pi * k * (i + 0.5) / n) for k in frequencies])


def smooth_field(shape, coefficients: np.ndarray, frequencies) -> np.ndarray:
    """sum_abc coef[a,b,c] Bx[a] By[b] Bz[c] on a grid of ``shape`` (separable, cheap)."""
    bx, by, bz = (cosine_basis(n, frequencies) for n in shape)
    return np.einsum("abc,ai,bj,ck->ijk", coefficients, bx, by, bz, optimize=True).astype(np.float32)


def random_displacement(mask: np.ndarray, rng: np.random.Generator, rms_mm: float, max_mm: float) -> np.ndarray:
    """A smooth displacement field (3, X, Y, Z) in mm: ``rms_mm`` inside ``mask``, at most ``max_mm`` there.

    Wavelengths of 60 mm and more keep the map one-to-one (no folding) at these amplitudes.
    """
    freqs = (1, 2, 3)
    k = np.add.outer(np.add.outer(np.array(freqs), freqs), freqs).astype(np.float64)
    fields = []
    for _ in range(3):
        field = smooth_field(mask.shape, rng.standard_normal(k.shape) / k, freqs)
        inside = field[mask]
        gain = min(rms_mm / max(float(np.sqrt(np.mean(inside ** 2))), 1e-6),
                   max_mm / max(float(np.abs(inside).max()), 1e-6))
        fields.append(field * np.float32(gain))
    return np.stack(fields)


def warp_coordinates(displacement_mm: np.ndarray, spacing_mm: float) -> np.ndarray:
    """Template voxel coordinates to sample so that warped(x) = image(x + displacement(x))."""
    ijk = np.indices(displacement_mm.shape[1:], dtype=np.float32)
    return ijk + displacement_mm / np.float32(spacing_mm)


def warp(volume: np.ndarray, coordinates: np.ndarray) -> np.ndarray:
    """Apply a subject's deformation (trilinear)."""
    return ndimage.map_coordinates(volume, coordinates, order=1, mode="constant", cval=0.0, output=np.float32)
