"""A corpus of bad inputs, each a real file made on disk, beside good scans.

Every entry names the problem a user would see, so tests can check that ``validate`` and the
training commands report each one (file and row named, non-zero exit) and skip it only with
``--skip-bad``.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np


@dataclass(frozen=True)
class BadFile:
    name: str          # what is wrong, as a short slug
    path: Path
    expect: str        # a fragment the one-line message should contain (lower case)


def _affine(voxel_mm: float = 4.0) -> np.ndarray:
    aff = np.diag([voxel_mm, voxel_mm, voxel_mm, 1.0])
    aff[:3, 3] = -np.array([45.0, 55.0, 45.0])
    return aff


def _brain(shape=(24, 28, 24), seed=0) -> np.ndarray:
    """A smooth blob that looks like a head to any foreground mask."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
    r = np.sqrt((grid**2).sum(0))
    return (np.clip(1.2 - r, 0, None) * 100 + rng.normal(0, 2, shape)).astype(np.float32)


def write_good(path: Path, seed: int = 0) -> Path:
    nib.save(nib.Nifti1Image(_brain(seed=seed), _affine()), str(path))
    return path


def make_bad_files(folder: Path) -> list[BadFile]:
    folder.mkdir(parents=True, exist_ok=True)
    bad: list[BadFile] = []

    good = write_good(folder / "template_good.nii.gz", seed=99)
    raw = good.read_bytes()
    p = folder / "truncated.nii.gz"
    p.write_bytes(raw[: len(raw) // 2])
    bad.append(BadFile("truncated_gz", p, "truncat"))

    p = folder / "garbage.nii.gz"
    p.write_bytes(gzip.compress(os.urandom(4096)))
    bad.append(BadFile("gzip_of_garbage", p, ""))

    p = folder / "zero_dims.nii.gz"
    img = nib.Nifti1Image(np.zeros((0, 4, 4), np.float32), _affine())
    nib.save(img, str(p))
    bad.append(BadFile("zero_dims", p, ""))

    p = folder / "flat2d.nii.gz"
    nib.save(nib.Nifti1Image(_brain()[:, :, 12], _affine()), str(p))
    bad.append(BadFile("2d_image", p, "2d"))

    p = folder / "fourd.nii.gz"
    vol = _brain()
    nib.save(nib.Nifti1Image(np.stack([vol, vol, vol], -1), _affine()), str(p))
    bad.append(BadFile("4d_three_volumes", p, "4d"))

    p = folder / "nan.nii.gz"
    vol = _brain()
    vol[5, 5, 5] = np.nan
    nib.save(nib.Nifti1Image(vol, _affine()), str(p))
    bad.append(BadFile("nan_voxels", p, "nan"))

    p = folder / "inf.nii.gz"
    vol = _brain()
    vol[6, 6, 6] = np.inf
    nib.save(nib.Nifti1Image(vol, _affine()), str(p))
    bad.append(BadFile("inf_voxels", p, "inf"))

    p = folder / "zeros.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((24, 28, 24), np.float32), _affine()), str(p))
    bad.append(BadFile("all_zero", p, ""))

    p = folder / "zero_scale.nii.gz"
    aff = _affine()
    aff[0, 0] = 0.0
    nib.save(nib.Nifti1Image(_brain(), aff), str(p))
    bad.append(BadFile("absurd_affine", p, "affine"))

    p = folder / "notes.nii"
    p.write_text("this is a text file renamed .nii\n" * 20)
    bad.append(BadFile("text_renamed_nii", p, ""))

    bad.append(BadFile("missing_file", folder / "does_not_exist.nii.gz", "not found"))

    p = folder / "locked.nii.gz"
    write_good(p, seed=7)
    p.chmod(0)
    if os.access(p, os.R_OK):  # root reads anything: the permission case cannot be made here
        p.chmod(0o644)
        p.unlink()
    else:
        bad.append(BadFile("unreadable_permissions", p, "permission"))
    good.unlink()
    return bad
