"""MONAI image readers for the formats neuro-ssl reads, each returning a RAS+ world affine.

MONAI picks ``NibabelReader`` for ``.nii``/``.nii.gz`` but not for FreeSurfer ``.mgz``, and its
only ITK-format reader needs the ``itk`` package. SimpleITK is already a dependency, so a small
``ImageReader`` over it reads ``.nrrd``/``.nhdr``/``.mha``/``.mhd``.

ITK geometry is LPS: ``world_lps = origin + direction @ diag(spacing) @ index`` with the index in
(x, y, z) order. NIfTI/nibabel geometry is RAS, so the affine handed to MONAI is
``diag(-1, -1, 1, 1) @ affine_lps`` and the array is transposed from SimpleITK's (z, y, x) to
(x, y, z) so that the affine's voxel axes match the array's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
from monai.data import ImageReader, NibabelReader
from monai.utils import MetaKeys, SpaceKeys, ensure_tuple

#: suffixes read by SimpleITK (lower case, with the dot).
SIMPLEITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
#: suffixes read by nibabel.
NIBABEL_SUFFIXES = (".nii", ".nii.gz", ".mgz", ".mgh")
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _has_suffix(filename, suffixes: Sequence[str]) -> bool:
    names = ensure_tuple(filename)
    return all(str(n).lower().endswith(tuple(suffixes)) for n in names)


def sitk_affine_ras(image) -> np.ndarray:
    """The 4x4 RAS+ affine of a SimpleITK image (index (x, y, z) -> world mm)."""
    dim = image.GetDimension()
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(dim, dim)
    spacing = np.asarray(image.GetSpacing(), dtype=np.float64)
    origin = np.asarray(image.GetOrigin(), dtype=np.float64)
    affine_lps = np.eye(4)
    affine_lps[:dim, :dim] = direction @ np.diag(spacing)
    affine_lps[:dim, 3] = origin
    if dim < 3:  # keep a valid 4x4 for 2D images: validation rejects them later with a clear message
        affine_lps[dim:3, dim:3] = np.eye(3 - dim)
    return LPS_TO_RAS @ affine_lps


class NibabelAnyReader(NibabelReader):
    """``NibabelReader`` that also claims FreeSurfer ``.mgz``/``.mgh``, and keeps nibabel's affine.

    MONAI's reader "corrects" a NIfTI whose sform zooms disagree with ``pixdim`` by swapping in
    the qform (even one whose code says unknown), so its affine can differ from the one nibabel,
    viewers and ``data/io.py`` report. Saliency maps go back to the native grid through this
    affine, so here the file's own affine is used unchanged and bad ones are refused later.
    """

    def verify_suffix(self, filename) -> bool:
        return _has_suffix(filename, NIBABEL_SUFFIXES)

    def read(self, data, **kwargs):
        import nibabel as nib

        self.filenames = ensure_tuple(data)
        options = {**self.kwargs, **kwargs}
        images = [nib.load(str(name), **options) for name in self.filenames]
        return images if len(images) > 1 else images[0]


class SimpleITKReader(ImageReader):
    """Read one ITK-format volume with SimpleITK; RAS+ affine, array indexed (x, y, z[, c]).

    Multi-file reads (a list of paths) stack the files as channels, as MONAI readers do.
    """

    def verify_suffix(self, filename) -> bool:
        return _has_suffix(filename, SIMPLEITK_SUFFIXES)

    def read(self, data, **kwargs) -> Any:
        import SimpleITK as sitk

        images = [sitk.ReadImage(str(Path(name))) for name in ensure_tuple(data)]
        return images if len(images) > 1 else images[0]

    def get_data(self, img) -> tuple[np.ndarray, dict]:
        import SimpleITK as sitk

        arrays, meta = [], {}
        # not ensure_tuple: a SimpleITK image is itself iterable (over its pixels)
        for image in (img if isinstance(img, (list, tuple)) else [img]):
            array = sitk.GetArrayFromImage(image)  # (z, y, x[, components])
            dim = image.GetDimension()
            spatial = tuple(reversed(range(dim)))
            components = image.GetNumberOfComponentsPerPixel()
            order = spatial + ((dim,) if components > 1 else ())
            arrays.append(np.ascontiguousarray(np.transpose(array, order)))
            affine = sitk_affine_ras(image)
            if not meta:
                meta = {
                    MetaKeys.AFFINE: affine,
                    MetaKeys.ORIGINAL_AFFINE: affine.copy(),
                    MetaKeys.SPATIAL_SHAPE: np.asarray(image.GetSize()),
                    MetaKeys.SPACE: SpaceKeys.RAS,
                    MetaKeys.ORIGINAL_CHANNEL_DIM: -1 if components > 1 else float("nan"),
                    "pixdim": np.r_[1.0, np.asarray(image.GetSpacing()), [1.0] * (7 - dim)],
                }
            elif not np.allclose(affine, meta[MetaKeys.AFFINE]):
                raise ValueError("files stacked as channels must share one voxel grid (affines differ)")
        if len(arrays) == 1:
            return arrays[0], meta
        meta[MetaKeys.ORIGINAL_CHANNEL_DIM] = 0
        return np.stack(arrays, axis=0), meta
