"""Tiny real NIfTI scans with realistic (non-RAS, oblique, off-centre) affines."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest


def head_volume(shape, seed: int = 0, lesion=None) -> np.ndarray:
    """An ellipsoid 'head' of value ~100 with noise, optionally a brighter box ``lesion`` (slices)."""
    rng = np.random.default_rng(seed)
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), axis=-1)
    centre, radii = (np.array(shape) - 1) / 2, np.array(shape) * 0.42
    head = (((ijk - centre) / radii) ** 2).sum(-1) < 1
    data = np.where(head, 100.0, 0.0) + rng.normal(0, 3.0, shape)
    if lesion is not None:
        data[lesion] += 150.0
    return data.astype(np.float32)


def write_scan(path: Path, data: np.ndarray, affine: np.ndarray, dtype=np.float32) -> Path:
    img = nib.Nifti1Image(np.asarray(data, dtype=dtype), affine)
    img.header.set_sform(affine, code=1)
    img.header.set_qform(affine, code=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))
    return path


def las_affine(voxel_mm: float, origin=(60.0, -70.0, -50.0)) -> np.ndarray:
    affine = np.diag([-voxel_mm, voxel_mm, voxel_mm, 1.0])
    affine[:3, 3] = origin
    return affine


def oblique_affine(voxel_mm=(3.0, 3.2, 3.6), deg: float = 12.0, origin=(-40.0, -50.0, -30.0)) -> np.ndarray:
    t = np.deg2rad(deg)
    rot = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag(voxel_mm)
    affine[:3, 3] = origin
    return affine


@pytest.fixture
def volumes() -> SimpleNamespace:
    """The helpers above, for test modules (test folders are not packages)."""
    return SimpleNamespace(head_volume=head_volume, write_scan=write_scan, las_affine=las_affine,
                           oblique_affine=oblique_affine)


@pytest.fixture
def two_scans(tmp_path) -> list[dict]:
    """Two scans in different native spaces (LAS 3 mm int16; oblique anisotropic float32)."""
    scans = []
    specs = [("01", (22, 26, 20), las_affine(3.0), np.int16), ("02", (20, 22, 18), oblique_affine(), np.float32)]
    for i, (sub, shape, affine, dtype) in enumerate(specs):
        lesion = tuple(slice(s // 2 - 2, s // 2 + 2) for s in shape)
        path = write_scan(tmp_path / "images" / f"sub-{sub}_T1w.nii.gz", head_volume(shape, i, lesion), affine, dtype)
        mask = np.zeros(shape, np.uint8)
        mask[lesion] = 1
        region = write_scan(tmp_path / "truth" / f"sub-{sub}_region.nii.gz", mask, affine, np.uint8)
        scans.append({"subject_id": sub, "path": path, "affine": affine, "shape": shape, "region": region})
    return scans
