"""A tiny NIfTI cohort with an obvious disease signal, written in a second, for fine-tuning tests.

20^3 voxels of 4 mm in an LPS-like (non-RAS) orientation. Every scan is a bright ellipsoid "brain"
with a dark centre whose radius grows with age; AD scans (spelled ``Dementia``, the ADNI way) also
lose intensity in one lobe, strongly enough that even random-encoder features separate them.
Tests outside tests/evaluation load this file by path (the test folders are not all packages).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

SIDE = 20
VOXEL_MM = 4.0
SPACING_MM = (5.0, 5.0, 5.0)
SHAPE = (16, 16, 16)


def _volume(rng: np.random.Generator, age: float, ad: bool) -> np.ndarray:
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, SIDE)] * 3, indexing="ij"))
    radius = np.sqrt(((grid / np.array([0.8, 0.9, 0.75])[:, None, None, None]) ** 2).sum(0))
    volume = np.where(radius < 1.0, 100.0, 0.0)
    volume[radius < 0.15 + 0.006 * (age - 55)] = 20.0  # ventricles grow with age
    if ad:
        lobe = (grid[0] > 0.2) & (radius < 1.0)
        volume[lobe] *= 0.35
    return (volume + rng.normal(0, 4.0, volume.shape) * (volume > 0)).astype(np.float32)


def write_cohort(root: Path, n_subjects: int = 24, seed: int = 0) -> Path:
    """Write images + manifest.csv under ``root``; returns the manifest path."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    affine = np.diag([-VOXEL_MM, -VOXEL_MM, VOXEL_MM, 1.0])
    affine[:3, 3] = [40.0, 40.0, -40.0]
    diagnoses = ["CN", "Dementia", "MCI", "CN", "Dementia", "EMCI"]
    rows = []
    for s in range(n_subjects):
        subject = f"{s:03d}_S_{s:04d}"
        dx = diagnoses[s % 6]
        age0 = float(rng.uniform(60, 85))
        for v, session in enumerate(("bl", "m12")[: 1 + s % 2]):
            age = age0 + v
            path = root / "images" / f"{subject}_{session}.nii.gz"
            nib.save(nib.Nifti1Image(_volume(rng, age, dx == "Dementia"), affine), path)
            rows.append({"subject_id": subject, "session_id": session, "image": f"images/{path.name}",
                         "modality": "T1w", "age": round(age, 2), "sex": "MF"[s % 2], "diagnosis": dx,
                         "site": f"site{s % 3}", "MMSE": int(29 - 8 * (dx == "Dementia") - s % 3)})
    manifest = root / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest


def split_manifest(manifest: Path, out: Path, parts: dict[str, range]) -> dict[str, Path]:
    """Subject-level subsets of the manifest (by subject number), written next to it."""
    df = pd.read_csv(manifest, dtype=str)
    number = df["subject_id"].str[:3].astype(int)
    paths = {}
    for name, members in parts.items():
        path = out / f"{name}.csv"
        df[number.isin(list(members))].to_csv(path, index=False)
        paths[name] = path
    return paths


def save_random_encoder(path: Path, subjects=(), seed: int = 0) -> Path:
    """A stand-in "pretrained" encoder: random resnet10 weights, meta with preprocessing and subjects."""
    import torch

    from neuro_ssl.data.transforms import PreprocessConfig
    from neuro_ssl.models import build_encoder, save_encoder

    torch.manual_seed(seed)
    encoder = build_encoder("resnet10", 1, "batch", width=0.25)
    meta = {"preprocess": PreprocessConfig(SPACING_MM, SHAPE).to_dict(), "subjects": sorted(subjects), "loss": "simclr"}
    return save_encoder(path, encoder, meta)

