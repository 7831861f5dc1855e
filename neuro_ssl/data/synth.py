"""A synthetic longitudinal cohort with planted age and disease effects, from nilearn's MNI152.

``make_cohort`` is the embedded default for the demo and the tests: it needs no download (the
template and tissue maps ship inside nilearn), runs in seconds, and its effects are known, so
every later stage can be checked against the truth:

- diagnosis: focal medial-temporal atrophy (``truth/medial_temporal.nii.gz``), severity ~1 for
  AD, ~0.5 for MCI (faster for converters), 0 for CN, progressing over the visits; FDG-PET
  hypometabolism in the posterior cingulate / temporoparietal cortex (``truth/pet_region.nii.gz``).
  By default that is the disease's only effect, so its truth mask is the whole truth; with
  ``global_ad_effects`` the disease also thins the cortex and widens the ventricles, and those
  regions get truth masks of their own (``truth_cortex``, ``truth_ventricles``) and join the
  union (``truth_region``, ``truth/diagnosis_region.nii.gz``);
- age: cortical thinning and ventricle growth, plus a per-subject offset so age is predictable
  from the image but not exactly; diagnosis is correlated with age (AD ~2.5 years older on average)
  but far from confounded, so the two effects are separable;
- sites with different voxel sizes, axis orders (RAS, LAS, LPS, one oblique), contrasts,
  intensity scales, bias fields and noise, balanced against diagnosis (each group spread evenly
  over the sites); a new head position at every session;
- ``confound="scanner"`` plants a shortcut for the audit to find: a ``scanner`` column and a
  low-contrast, noisier scanner that scans most AD and few CN subjects;
- clinical scores that follow the disease and age (MMSE, CDR-SB, ADAS13, APOE4, education), with
  missing values at a few visits as in ADNIMERGE.

Besides the plain ``manifest.csv`` (ADNIMERGE columns, ``AGE`` the baseline age, ``Years_bl``
the time since baseline, one row per image, ``truth_*`` the planted regions resampled into that
very scan's grid, so saliency can be scored per scan), the cohort is also an ADNI download:
file names carrying the Image Data ID, ``idaSearch.csv`` and ``ADNIMERGE.csv``
(see ``_synth_export``), for ``neuro-ssl manifest import adni``.
"""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from neuro_ssl._utils.files import write_csv, write_text
from neuro_ssl.data import _synth_anatomy as anatomy
from neuro_ssl.data import _synth_export as export
from neuro_ssl.data import _synth_scanner as scanner
from neuro_ssl.errors import ConfigError

__all__ = ["make_cohort", "plan_cohort", "SubjectPlan", "SITES"]

SITES = scanner.SITES
CONFOUNDS = ("scanner",)
#: confound="scanner": probability of being scanned on the low-contrast scanner B, by baseline group.
SCANNER_B_SHARE = {"CN": 0.05, "MCI": 0.5, "AD": 0.95}
#: scanner B's T1w grey, white matter and CSF levels (little contrast: a poor sequence) and its
#: noise relative to the site's.
SCANNER_B_T1_MEANS = (0.78, 0.82, 0.62)
SCANNER_B_NOISE_FACTOR = 4.0
DIAGNOSIS_SHARES = {"CN": 0.4, "MCI": 0.3, "AD": 0.3}
MEAN_AGE_BL = {"CN": 72.0, "MCI": 73.0, "AD": 74.5}
AGE_SD_YEARS = 7.5
AGE_RANGE = (55.0, 88.0)
_README = """\
Ground truth of a neuro-ssl synthetic cohort (neuro-ssl synth); masks are uint8, 1 = inside.

MNI space (nilearn's MNI152 2009 template on its 2 mm grid, 99 x 117 x 95, sform/qform code 4):
  medial_temporal.nii.gz   the planted disease region: bilateral medial temporal lobe
                           (hippocampus / entorhinal ellipsoids around MNI x=+-27, y=-22, z=-14).
                           Grey matter there is lost by {gm_loss:.0%} x severity and white matter by
                           {wm_loss:.0%} x severity on the left, {right:.0%} of that on the right.
                           Severity is ~1 for AD, ~0.5 for MCI (faster for converters), 0 for CN,
                           and grows with the years since baseline (manifest column true_atrophy).
  diagnosis_region.nii.gz  the union of every planted disease effect: the medial temporal region,
                           and with --global-ad-effects also the cortex (grey-matter fraction
                           >= {cortex:g}; thinned by a further {thin:.0%} at severity 1) and the ventricles
                           (widened by a further {vent_ad:g} mm at severity 1). Without that option
                           the disease acts in the medial temporal region only, and this file
                           equals medial_temporal.nii.gz.
  pet_region.nii.gz        (with --pet) the planted FDG hypometabolism: posterior cingulate / precuneus
                           (0,-56,30) and temporoparietal cortex (+-46,-60,30); grey-matter uptake
                           drops by {pet:.0%} x severity.
  ventricles.nii.gz        the template's lateral and third ventricles before ageing; each scan's
                           ventricles grow outwards from these by {vent_age:g} mm per year of age
                           above 55, and grey matter thins by {gm_age:.1%} per year.
  brain_mask.nii.gz        the template brain.

Per scan, in that scan's own grid (same shape and affine as the image; manifest columns,
relative to the manifest's folder):
  truth_region             union of the planted disease regions of that scan (T1w), or its
                           planted PET region (FDG)
  truth_medial_temporal    the medial temporal region alone (T1w)
  truth_cortex, truth_ventricles   (with --global-ad-effects) those regions at that visit (T1w)
These follow the subject's deformation and head position, so "share of saliency inside the
planted region" can be computed per scan without any registration.

sites.csv lists each site's grid, orientation, contrast, intensity scale, bias and noise; sites are
balanced against diagnosis. With --confound scanner, the column 'scanner' says which scanner made
each T1w scan: B has little tissue contrast ({b_means}) and {b_noise:g}x the noise, and scans
{b_ad:.0%} of AD, {b_mci:.0%} of MCI and {b_cn:.0%} of CN subjects: a shortcut planted on purpose.

Manifest extras: MMSE, CDRSB, ADAS13 (follow severity and age; missing at a few visits), APOE4
(e4 alleles; missing for a few subjects), PTEDUCAT, EXAMDATE, FLDSTRENG, Image Data ID,
true_atrophy (the severity at that visit), true_ventricle_ml (ventricle volume at that visit).

The cohort is also an ADNI download: images/ADNI_<PTID>_..._I<Image Data ID>.nii.gz,
idaSearch.csv (every image, IDA's columns) and ADNIMERGE.csv (one row per visit, IMAGEUID = the
visit's T1w), for: neuro-ssl manifest import adni --images images --csv ADNIMERGE.csv --out ...
""".format(
    gm_loss=anatomy.FOCAL_GM_LOSS, wm_loss=anatomy.FOCAL_GM_LOSS * anatomy.FOCAL_WM_SHARE,
    right=anatomy.DIAGNOSIS_ELLIPSOIDS[1][3], thin=anatomy.AD_EXTRA_THINNING, cortex=anatomy.CORTEX_GM_FRACTION,
    vent_ad=anatomy.AD_EXTRA_VENTRICLE_MM, pet=anatomy.PET_HYPOMETABOLISM,
    vent_age=anatomy.VENTRICLE_GROWTH_MM_PER_YEAR, gm_age=anatomy.GM_LOSS_PER_YEAR,
    b_means="GM, WM, CSF " + ", ".join(f"{v:g}" for v in SCANNER_B_T1_MEANS), b_noise=SCANNER_B_NOISE_FACTOR,
    b_ad=SCANNER_B_SHARE["AD"], b_mci=SCANNER_B_SHARE["MCI"], b_cn=SCANNER_B_SHARE["CN"],
)


@dataclass(frozen=True)
class SubjectPlan:
    """Everything drawn for one subject before any image is made."""

    index: int
    ptid: str
    site: scanner.Site
    sex: str                     # Male / Female
    group: str                   # CN / MCI / AD at baseline
    dx_bl: str                   # ADNI DX_bl: CN, EMCI, LMCI, AD
    age_bl: float
    years: tuple[float, ...]     # Years_bl of each visit
    severity_bl: float
    severity_per_year: float
    brain_age_gap_years: float
    ventricle_offset_mm: float
    head_scale: float
    education_years: int = 16
    apoe4: int | None = 0         # e4 alleles; None: not genotyped
    baseline_date: object = export.FIRST_BASELINE
    scanner: str = ""             # "A" / "B" with confound="scanner"

    def severity(self, years: float) -> float:
        return 0.0 if self.group == "CN" else self.severity_bl + self.severity_per_year * years

    def diagnosis(self, years: float) -> str:
        """DX at a visit: MCI converts to Dementia once its severity reaches 0.8."""
        if self.group == "CN":
            return "CN"
        if self.group == "AD" or self.severity(years) >= 0.8:
            return "Dementia"
        return "MCI"


def diagnosis_counts(n_subjects: int) -> dict[str, int]:
    """About 40/30/30 CN/MCI/AD, with at least one CN and one AD as soon as there are two subjects."""
    n_cn = max(1, int(round(DIAGNOSIS_SHARES["CN"] * n_subjects)))
    n_ad = max(1, int(round(DIAGNOSIS_SHARES["AD"] * n_subjects))) if n_subjects >= 2 else 0
    n_cn = min(n_cn, n_subjects - n_ad)
    return {"CN": n_cn, "MCI": n_subjects - n_cn - n_ad, "AD": n_ad}


def plan_cohort(n_subjects: int, seed: int = 0, visits: tuple[int, int] = (1, 3),
                confound: str | None = None) -> list[SubjectPlan]:
    """Draw demographics, diagnoses, sites and effect sizes for every subject (no images).

    Sites are balanced against diagnosis: each group is dealt round the sites in turn. Draws
    that later options add (clinical constants, the scanner) come from streams of their own,
    so a subject is the same person with and without them.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    counts = diagnosis_counts(n_subjects)
    groups = rng.permutation(np.repeat(list(counts), list(counts.values())))
    sites = np.zeros(n_subjects, dtype=int)
    for group in counts:
        members = np.flatnonzero(groups == group)
        sites[members] = (int(rng.integers(len(SITES))) + np.arange(len(members))) % len(SITES)
    extra = np.random.default_rng(np.random.SeedSequence([seed, 2]))
    plans = []
    for i in range(n_subjects):
        group = str(groups[i])
        male = bool(rng.random() < 0.5)
        age_bl = round(float(np.clip(rng.normal(MEAN_AGE_BL[group], AGE_SD_YEARS), *AGE_RANGE)), 1)
        n_visits = int(rng.integers(visits[0], visits[1] + 1))
        years = (0.0,) + tuple(round(k + float(rng.normal(0.0, 0.04)), 3) for k in range(1, n_visits))
        severity_bl, per_year = _draw_severity(group, rng)
        site = SITES[int(sites[i])]
        clinical = export.subject_draws(group, extra)
        scanner_b = extra.random() < SCANNER_B_SHARE[group]
        plans.append(SubjectPlan(
            index=i, ptid=f"{site.code}_S_{i + 1:04d}", site=site, sex="Male" if male else "Female",
            group=group, dx_bl=_dx_bl(group, severity_bl), age_bl=age_bl, years=years,
            severity_bl=severity_bl, severity_per_year=per_year,
            brain_age_gap_years=float(rng.normal(0.0, 2.0)),
            ventricle_offset_mm=float(rng.normal(0.0, 0.3)),
            head_scale=float(rng.normal(1.04 if male else 0.98, 0.025)),
            scanner=("B" if scanner_b else "A") if confound == "scanner" else "", **clinical,
        ))
    return plans


def _draw_severity(group: str, rng: np.random.Generator) -> tuple[float, float]:
    if group == "AD":
        return float(rng.uniform(0.85, 1.15)), 0.10
    if group == "MCI":
        converter = rng.random() < 0.35
        return float(rng.uniform(0.35, 0.6)), (0.15 if converter else 0.03)
    return 0.0, 0.0


def _dx_bl(group: str, severity_bl: float) -> str:
    if group == "MCI":
        return "LMCI" if severity_bl >= 0.48 else "EMCI"
    return group


def viscode(visit: int) -> str:
    return "bl" if visit == 0 else f"m{12 * visit:02d}"


def make_cohort(out: Path, n_subjects: int = 60, seed: int = 0, pet: bool = False,
                voxel_mm: float | None = None, visits: tuple[int, int] = (1, 3), *,
                global_ad_effects: bool = False, confound: str | None = None,
                jobs: int | None = None, progress: Callable[[Iterable], Iterable] | None = None) -> Path:
    """Write a synthetic cohort under ``out`` and return the path of its ``manifest.csv``.

    ``voxel_mm`` None gives each site its realistic voxel size (1.0-1.5 mm T1w, 1.5-2.5 mm PET);
    a number gives every scan that isotropic size (4.0 -> 44 x 52 x 44 voxels) while sites keep
    their orientations, contrasts and noise. ``visits`` is the (min, max) number of visits per
    subject. ``global_ad_effects``: the disease also thins the cortex and widens the ventricles
    (default: it acts in the medial temporal region only). ``confound="scanner"`` plants a
    scanner shortcut (see the module docstring). ``jobs`` threads simulate subjects side by side
    (None: up to 4, one per CPU); the files do not depend on it. ``progress`` wraps the iterable
    of finished subjects (a tqdm bar). Same arguments, same files, byte for byte. The manifest
    is written last: a cohort folder with a manifest is complete.
    """
    out = Path(out)
    _check_arguments(out, n_subjects, seed, voxel_mm, visits, jobs, confound)
    manifest = out / "manifest.csv"
    manifest.unlink(missing_ok=True)  # an earlier cohort here is no longer complete once we start
    tpl = anatomy.working_template(working_spacing_mm(voxel_mm))
    plans = plan_cohort(n_subjects, seed, tuple(visits), confound)
    written = _write_truth(out, anatomy.mni_template(), pet, global_ad_effects)
    jobs = min(jobs or min(4, os.cpu_count() or 1), n_subjects)
    rows: list[dict] = []
    pool = ThreadPoolExecutor(max_workers=jobs)  # numpy, scipy.ndimage and zlib release the GIL
    try:
        options = _Options(seed, pet, voxel_mm, global_ad_effects, confound)
        results = pool.map(lambda plan: _simulate_subject(out, plan, tpl, options), plans)
        for subject_rows, files in (progress(results) if progress is not None else results):
            rows += subject_rows
            written |= files
    finally:  # on an error or Ctrl-C, subjects not yet started are dropped, not simulated
        pool.shutdown(wait=True, cancel_futures=True)
    _remove_stale(out, written)
    table = _ordered(rows)
    write_csv(out / "idaSearch.csv", export.ida_table(table))
    write_csv(out / "ADNIMERGE.csv", export.adnimerge_table(table))
    write_csv(manifest, table)
    return manifest


@dataclass(frozen=True)
class _Options:
    seed: int
    pet: bool
    voxel_mm: float | None
    global_ad_effects: bool
    confound: str | None


def working_spacing_mm(voxel_mm: float | None) -> float:
    """Template grid the effects are computed on: 4 mm when every scan is that coarse, else 2 mm."""
    return 4.0 if voxel_mm is not None and voxel_mm >= 4.0 else 2.0


def _check_arguments(out: Path, n_subjects, seed, voxel_mm, visits, jobs, confound=None) -> None:
    if int(n_subjects) != n_subjects or n_subjects < 1:
        raise ConfigError(f"--subjects must be a positive integer, got {n_subjects}")
    if int(seed) != seed or seed < 0:
        raise ConfigError(f"--seed must be a non-negative integer, got {seed}")
    if voxel_mm is not None and not (0.5 <= float(voxel_mm) <= 12.0):
        raise ConfigError(f"--voxel-mm must be between 0.5 and 12 mm, got {voxel_mm}")
    if len(visits) != 2 or not (1 <= visits[0] <= visits[1] <= 10):
        raise ConfigError(f"--visits must be MIN,MAX with 1 <= MIN <= MAX <= 10, got {','.join(map(str, visits))}")
    if jobs is not None and (int(jobs) != jobs or jobs < 1):
        raise ConfigError(f"--jobs must be a positive integer, got {jobs}")
    if confound is not None and confound not in CONFOUNDS:
        raise ConfigError(f"--confound must be one of {', '.join(CONFOUNDS)}, got {confound!r}")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder; choose a folder for the cohort")
    if out.is_dir() and any(out.iterdir()) and not (out / "truth" / "README.txt").exists():
        raise ConfigError(f"{out}: folder is not empty and holds no synthetic cohort; choose an empty or new folder")


def _simulate_subject(out: Path, plan: SubjectPlan, tpl: anatomy.Template,
                      options: _Options) -> tuple[list[dict], set[Path]]:
    """All visits (T1w, and FDG with ``pet``) of one subject: files written, manifest rows returned."""
    rng = np.random.default_rng(np.random.SeedSequence([options.seed, 1, plan.index]))
    clinical_rng = np.random.default_rng(np.random.SeedSequence([options.seed, 4, plan.index]))
    displacement = anatomy.random_displacement(tpl.brain > 0.5, rng, rms_mm=2.0, max_mm=6.0)
    coords = anatomy.warp_coordinates(displacement, tpl.spacing_mm)
    del displacement
    profiles = {"medial_temporal": anatomy.warp(tpl.diagnosis_profile, coords)}
    if options.global_ad_effects:
        cortex = (tpl.gm >= anatomy.CORTEX_GM_FRACTION).astype(np.float32)
        profiles["cortex"] = anatomy.warp(cortex, coords)
    pet_region = anatomy.warp(tpl.pet_profile, coords) if options.pet else None
    site = _scanner_site(plan)
    t1_voxel = site.voxel_mm if options.voxel_mm is None else (float(options.voxel_mm),) * 3
    pet_voxel = site.pet_voxel_mm if options.voxel_mm is None else (float(options.voxel_mm),) * 3
    means = dict(zip(("gm", "wm", "csf"), site.t1_means))
    rows, files = [], set()
    for visit, years in enumerate(plan.years):
        code = viscode(visit)
        state = anatomy.VisitState(age_years=plan.age_bl + years, severity=plan.severity(years),
                                   brain_age_gap_years=plan.brain_age_gap_years,
                                   ventricle_offset_mm=plan.ventricle_offset_mm,
                                   global_ad_effects=options.global_ad_effects)
        tissue = anatomy.tissue_at_visit(tpl, state)
        when = export.visit_date(plan.baseline_date, years)
        common = _visit_columns(plan, visit, state, anatomy.ventricle_volume_ml(state, plan.head_scale),
                                when, clinical_rng)
        t1 = anatomy.warp(anatomy.t1_image(tpl, tissue, means), coords)
        visit_profiles = dict(profiles)
        if options.global_ad_effects:
            visit_profiles["ventricles"] = anatomy.warp(tissue["ventricle"], coords)
        image, regions = _acquire(out, plan, site, visit, "T1w", t1, visit_profiles, tpl, t1_voxel, when, rng)
        rows.append({**common, "modality": "T1w", "image_path": image, **regions,
                     "Image Data ID": f"I{export.image_id(plan.index, visit, 'T1w')}"})
        if options.pet:
            fdg = anatomy.warp(anatomy.pet_image(tpl, tissue, state), coords)
            image_pet, regions_pet = _acquire(out, plan, plan.site, visit, "FDG", fdg, {"pet_region": pet_region},
                                              tpl, pet_voxel, when, rng)
            rows.append({**common, "modality": "FDG", "image_path": image_pet, **regions_pet,
                         "Image Data ID": f"I{export.image_id(plan.index, visit, 'FDG')}",
                         **({"scanner": None} if plan.scanner else {})})  # the confound is the MRI's
    for row in rows:
        files |= {out / v for k, v in row.items() if (k == "image_path" or k.startswith("truth_")) and v}
    return rows, files


def _scanner_site(plan: SubjectPlan) -> scanner.Site:
    """The site as this subject's T1w scanner sees it (confound="scanner": B is flatter and noisier)."""
    if plan.scanner != "B":
        return plan.site
    return dataclasses.replace(plan.site, t1_means=SCANNER_B_T1_MEANS,
                               noise_fraction=plan.site.noise_fraction * SCANNER_B_NOISE_FACTOR)


def _acquire(out: Path, plan: SubjectPlan, site: scanner.Site, visit: int, modality: str, volume,
             profiles: dict[str, np.ndarray], tpl: anatomy.Template, voxel_mm, when, rng) -> tuple[str, dict]:
    """Scan one session on the subject's site; write the image and one mask per planted region.

    Returns the image path and the manifest's ``truth_*`` columns (relative paths):
    ``truth_region`` is the union of the regions, each region also has a column of its own.
    """
    pose = scanner.head_pose(rng, plan.head_scale)
    acquire = scanner.acquire_t1 if modality == "T1w" else scanner.acquire_pet
    data, affine = acquire(volume, tpl.affine, pose, site, voxel_mm, rng)
    code = viscode(visit)
    image = f"images/{export.image_file_name(plan.ptid, modality, when, export.image_id(plan.index, visit, modality))}"
    scanner.write_nifti(data, affine, out / image, dtype=np.int16)  # PET: float stored with scl_slope
    masks = {name: scanner.region_on_grid(p, tpl.affine, pose, data.shape, affine) for name, p in profiles.items()}
    columns = {}
    for name, mask in masks.items():
        if modality == "T1w":
            columns[f"truth_{name}"] = path = f"truth/regions/{plan.ptid}_{code}_{name}.nii.gz"
            scanner.write_nifti(mask, affine, out / path)
    if modality == "T1w" and len(masks) == 1:
        columns["truth_region"] = columns["truth_medial_temporal"]
    else:
        kind = "diagnosis_region" if modality == "T1w" else "pet_region"
        columns["truth_region"] = path = f"truth/regions/{plan.ptid}_{code}_{kind}.nii.gz"
        scanner.write_nifti(np.maximum.reduce(list(masks.values())), affine, out / path)
    return image, columns


def _visit_columns(plan: SubjectPlan, visit: int, state, ventricle_ml: float, when, rng) -> dict:
    years, severity = plan.years[visit], state.severity
    scores = export.clinical_scores(severity, state.age_years, rng)
    columns = {
        "PTID": plan.ptid, "VISCODE": viscode(visit), "EXAMDATE": when.isoformat(),
        "AGE": plan.age_bl, "Years_bl": years, "PTGENDER": plan.sex,
        "PTEDUCAT": plan.education_years, "APOE4": plan.apoe4,
        "DX": plan.diagnosis(years), "DX_bl": plan.dx_bl, "SITE": plan.site.code,
        "FLDSTRENG": export.FIELD_STRENGTH[plan.site.code], **scores,
        "true_atrophy": round(severity, 4), "true_ventricle_ml": round(ventricle_ml, 2),
    }
    if plan.scanner:
        columns["scanner"] = plan.scanner
    return columns


_COLUMN_ORDER = ("PTID", "VISCODE", "modality", "image_path", "Image Data ID", "EXAMDATE", "AGE", "Years_bl",
                 "PTGENDER", "PTEDUCAT", "APOE4", "DX", "DX_bl", "SITE", "FLDSTRENG", "scanner", "MMSE", "CDRSB",
                 "ADAS13", "true_atrophy", "true_ventricle_ml", "truth_region", "truth_medial_temporal",
                 "truth_cortex", "truth_ventricles")


def _ordered(rows: list[dict]) -> pd.DataFrame:
    """The manifest table, columns in a fixed order (absent options leave their columns out)."""
    table = pd.DataFrame(rows)
    return table[[c for c in _COLUMN_ORDER if c in table.columns]]


def _write_truth(out: Path, tpl: anatomy.Template, pet: bool, global_ad_effects: bool) -> set[Path]:
    """MNI-space truth masks, the site table and the README that explains them."""
    truth = out / "truth"
    medial_temporal = tpl.diagnosis_profile >= 0.5
    union = medial_temporal.copy()
    if global_ad_effects:
        union |= (tpl.gm >= anatomy.CORTEX_GM_FRACTION) | tpl.ventricles
    masks = {"medial_temporal": medial_temporal, "diagnosis_region": union,
             "ventricles": tpl.ventricles, "brain_mask": tpl.brain > 0.5}
    if pet:
        masks["pet_region"] = tpl.pet_profile >= 0.5
    written = set()
    for name, mask in masks.items():
        written.add(scanner.write_nifti(mask.astype(np.uint8), tpl.affine, truth / f"{name}.nii.gz", code=4))
    write_csv(truth / "sites.csv", _site_table())
    write_text(truth / "README.txt", _README)
    return written | {truth / "sites.csv", truth / "README.txt"}


def _site_table() -> pd.DataFrame:
    return pd.DataFrame([{
        "SITE": s.code, "orientation": s.orientation, "t1_voxel_mm": "x".join(f"{v:g}" for v in s.voxel_mm),
        "pet_voxel_mm": "x".join(f"{v:g}" for v in s.pet_voxel_mm),
        "oblique_deg": ",".join(f"{v:g}" for v in s.oblique_deg),
        "t1_gm_wm_csf": ",".join(f"{v:g}" for v in s.t1_means), "t1_scale": s.t1_scale,
        "noise_fraction": s.noise_fraction, "bias_log_sd": s.bias_log_sd, "pet_scale": s.pet_scale,
        "FLDSTRENG": export.FIELD_STRENGTH[s.code],
    } for s in SITES])


def _remove_stale(out: Path, written: set[Path]) -> None:
    """Drop images and masks an earlier, larger synth run left in this cohort folder."""
    keep = {p.resolve() for p in written}
    for folder in (out / "images", out / "truth" / "regions", out / "truth"):
        for path in folder.glob("*.nii.gz") if folder.is_dir() else ():
            if path.resolve() not in keep:
                path.unlink()


def summarize(manifest: pd.DataFrame) -> str:
    """One line: subjects, scans per modality, baseline diagnoses, sites, age range."""
    subjects = manifest.drop_duplicates("PTID")
    groups = subjects["DX_bl"].replace({"EMCI": "MCI", "LMCI": "MCI"}).value_counts()
    scans = ", ".join(f"{n} {m}" for m, n in manifest["modality"].value_counts().sort_index(ascending=False).items())
    age_at_visit = manifest["AGE"] + manifest["Years_bl"]
    return (f"{len(subjects)} subjects ({', '.join(f'{g} {groups.get(g, 0)}' for g in ('CN', 'MCI', 'AD'))}), "
            f"{scans} scans, {manifest['SITE'].nunique()} sites, age {age_at_visit.min():.1f}-{age_at_visit.max():.1f}")
