"""Build a synthetic longitudinal cohort from the MNI152 template that ships with nilearn.

Each subject gets a smooth random deformation, age effects (cortical thinning, ventricle
growth) and, for MCI and AD, focal medial-temporal atrophy (half as strong in MCI), over 1-3
visits; with --pet also an FDG scan per session with posterior cingulate / temporoparietal
hypometabolism. Scans come from several sites, balanced against diagnosis, with different voxel
sizes, orientations (RAS, LAS, LPS, one oblique), intensity scales, bias fields and noise.
Clinical scores (MMSE, CDRSB, ADAS13, APOE4, PTEDUCAT) follow the disease and age.

Writes an ADNI-style download, OUT/images/ADNI_<PTID>_..._I<id>.nii.gz with OUT/ADNIMERGE.csv and
OUT/idaSearch.csv, plus OUT/manifest.csv (every column in one table: PTID, VISCODE, modality,
image_path, AGE, Years_bl, DX, ..., truth_region) and the planted regions under OUT/truth/ (MNI
space, and per scan in the scan's own grid; OUT/truth/README.txt explains each file).
No download: nothing leaves the machine.

examples:
  neuro-ssl synth cohort --subjects 60 --seed 0 --pet
  neuro-ssl synth confounded --subjects 60 --confound scanner     # a planted shortcut for neuro-ssl audit
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from neuro_ssl.cli import _common


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", type=Path, metavar="OUT",
                        help="folder for the cohort (new, empty, or an earlier synth cohort)")
    parser.add_argument("--subjects", type=_common.positive_int, default=60, help="number of subjects")
    _common.add_seed(parser)
    parser.add_argument("--pet", action="store_true", help="also write an FDG-PET scan per session")
    parser.add_argument("--voxel-mm", type=_common.positive_float, default=None, metavar="MM",
                        help="one isotropic voxel size for every scan (e.g. 4 for tiny test volumes); "
                             "default: each site's realistic size, 1.0-1.5 mm")
    parser.add_argument("--visits", type=_common.int_tuple(2), default=(1, 3), metavar="MIN,MAX",
                        help="number of visits per subject, drawn between MIN and MAX (12 months apart)")
    parser.add_argument("--global-ad-effects", action="store_true",
                        help="the disease also thins the cortex and widens the ventricles (each with a truth mask); "
                             "default: it acts in the medial temporal region only")
    parser.add_argument("--confound", choices=("scanner",), default=None,
                        help="plant a shortcut: a 'scanner' column and a low-contrast, noisier scanner that "
                             "scans most AD and few CN subjects")
    parser.add_argument("--jobs", type=_common.positive_int, default=None,
                        help="subjects simulated side by side (threads); default: one per CPU, at most 4")


def run(args: argparse.Namespace) -> int:
    from neuro_ssl.data.manifest import read_table
    from neuro_ssl.data.synth import make_cohort, summarize

    started = time.perf_counter()
    manifest = make_cohort(
        args.out, n_subjects=args.subjects, seed=args.seed, pet=args.pet, voxel_mm=args.voxel_mm,
        visits=tuple(args.visits), global_ad_effects=args.global_ad_effects, confound=args.confound, jobs=args.jobs,
        progress=lambda results: _common.progress(results, total=args.subjects, desc="synth", unit="subject"),
    )
    table = read_table(manifest)
    table["AGE"] = table["AGE"].astype(float)
    table["Years_bl"] = table["Years_bl"].astype(float)
    print(f"wrote {manifest}")
    print(f"{summarize(table)}; {time.perf_counter() - started:.1f} s")
    return 0
