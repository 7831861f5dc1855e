"""Bring a map from the model grid back onto the voxel grid of the file it explains.

Preprocessing (reorientation to RAS, resampling to the model spacing, crop/pad) changes the
voxel grid but not the world: both grids carry a 4x4 affine from voxel indices to the same
RAS+ world millimetres. A native voxel ``v`` therefore sits at model voxel

    m = inv(model_affine) @ native_affine @ v

and the native map is the model map sampled there (trilinear by default, zero outside the
model grid). No registration is involved and no header is guessed: the map written with the
scan's own affine and shape overlays the scan in any viewer.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy import ndimage

from neuro_ssl.errors import ImageError


def native_to_model_voxels(model_affine: np.ndarray, native_affine: np.ndarray) -> np.ndarray:
    """The 4x4 map from native voxel indices to (fractional) model voxel indices."""
    model_affine = _check_affine(model_affine, "model_affine")
    native_affine = _check_affine(native_affine, "native_affine")
    return np.linalg.inv(model_affine) @ native_affine


def resample_to_grid(
    data: np.ndarray,
    data_affine: np.ndarray,
    target_shape: tuple[int, int, int],
    target_affine: np.ndarray,
    order: int = 1,
    cval: float = 0.0,
) -> np.ndarray:
    """Sample ``data`` (on ``data_affine``) at every voxel of the target grid.

    ``order`` is the spline order (0 nearest, 1 trilinear, 3 cubic); points outside the source
    grid get ``cval``. ``scipy.ndimage.affine_transform`` computes the coordinates on the fly,
    so a 256^3 target needs no 400 MB coordinate array (as ``map_coordinates`` would).
    """
    data = np.asarray(data)
    if data.ndim != 3:
        raise ValueError(f"expected a 3D array, got shape {data.shape}")
    target_shape = tuple(int(s) for s in target_shape)
    if len(target_shape) != 3 or min(target_shape) < 1:
        raise ValueError(f"target_shape must be three positive integers, got {target_shape}")
    vox = native_to_model_voxels(data_affine, target_affine)
    source = data.astype(np.float64, copy=False) if order > 0 else data
    out = ndimage.affine_transform(
        source, vox[:3, :3], offset=vox[:3, 3], output_shape=target_shape,
        order=order, mode="constant", cval=cval, prefilter=order > 1,
    )
    return out


def to_native(
    map_model: np.ndarray,
    model_affine: np.ndarray,
    native_shape: tuple[int, int, int],
    native_affine: np.ndarray,
    order: int = 1,
) -> np.ndarray:
    """Resample a model-grid map onto the native grid: float32, same shape as the scan, >= 0.

    Zero outside the model's field of view (a crop removed that part of the scan). Negative
    values that a cubic spline (``order=3``) can overshoot to are clipped, as saliency is >= 0.
    """
    out = resample_to_grid(map_model, model_affine, native_shape, native_affine, order=order)
    out = out.astype(np.float32, copy=False)
    np.maximum(out, 0.0, out=out)
    return out


def write_saliency(
    map_native: np.ndarray,
    native_affine: np.ndarray,
    path: str | os.PathLike,
    like: str | os.PathLike | None = None,
) -> Path:
    """Write a native-grid map as float32 NIfTI with the scan's affine (header from ``like``).

    Refuses a map whose shape differs from ``like``'s: that would be a map that cannot overlay.
    """
    from neuro_ssl.data.io import save_nifti

    map_native = np.asarray(map_native, dtype=np.float32)
    if map_native.ndim != 3:
        raise ValueError(f"saliency must be 3D, got shape {map_native.shape}")
    if like is not None:
        _check_same_grid(map_native.shape, native_affine, like)
    return Path(save_nifti(map_native, np.asarray(native_affine, dtype=np.float64), path, like=like))


def _check_same_grid(shape, affine, like) -> None:
    import nibabel as nib

    if not str(like).lower().endswith((".nii", ".nii.gz")):
        return  # other formats: save_nifti takes what it can from them
    try:
        ref = nib.load(str(like))
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file for the user
        raise ImageError(f"{like}: cannot be read as a reference image ({exc})") from None
    ref_shape = tuple(ref.shape[:3])
    if ref_shape != tuple(shape):
        raise ImageError(f"{like}: reference shape {ref_shape} differs from the map's {tuple(shape)}")
    if not np.allclose(ref.affine, affine, atol=1e-4):
        raise ImageError(f"{like}: reference affine differs from the map's affine")


def _check_affine(affine, name: str) -> np.ndarray:
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise ValueError(f"{name} must be 4x4, got shape {affine.shape}")
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise ValueError(f"{name} is not an invertible affine: {affine.tolist()}")
    return affine
