"""The MONAI ``ImageReader`` of neuro-ssl: every file goes through ``data.io.read_volume``.

One reader and one set of checks serve every command: ``validate`` calls
:func:`neuro_ssl.data.io.check_volume`, and the MONAI chain of pretraining, fine-tuning,
evaluation, embedding and saliency loads files with :class:`VolumeReader`, which calls
:func:`neuro_ssl.data.io.read_volume` on the same file. So a file ``validate`` passes is read
by every command, a file it refuses is refused by every command, and the one-line message is
the same. Formats, geometry (RAS+ affine in mm, SimpleITK's LPS converted) and the checks are
those of ``data/io.py``; this module only hands the result to MONAI.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from monai.data import ImageReader
from monai.utils import MetaKeys, SpaceKeys, ensure_tuple

from neuro_ssl.data import io
from neuro_ssl.errors import ImageError


class VolumeReader(ImageReader):
    """Read one 3D volume per file through ``io.read_volume``; array (x, y, z) float32, RAS+ affine.

    Args:
        frames: ``"single"`` refuses a file with several volumes; ``"mean"`` averages them
            (dynamic PET), as ``io.read_volume`` does.
        check_values: the voxel-value and geometry checks of ``io.read_volume`` (NaN/Inf,
            constant, absurd affine); off (``io.load_volume``) for brain masks, which are binary.
        role: a name for the file in messages when it is not a scan (``"mask"``).
    Claims every file name, so that an unknown suffix is reported by ``io`` in its own words
    instead of falling through to another MONAI reader. A list of paths stacks the files as
    channels (they must share one voxel grid), as MONAI readers do. Raises
    :class:`~neuro_ssl.errors.ImageError` (one line naming the file) for an unusable file.
    """

    def __init__(self, frames: str = "single", check_values: bool = True, role: str | None = None):
        super().__init__()
        self.frames = frames
        self.check_values = bool(check_values)
        self.role = role

    def verify_suffix(self, filename) -> bool:
        return True

    def read(self, data, **kwargs) -> Any:
        read = (lambda name: io.read_volume(name, self.frames)[:2]) if self.check_values else \
            (lambda name: io.load_volume(name, self.frames, self.role))
        volumes = [(*read(str(name)), str(name)) for name in ensure_tuple(data)]
        return volumes if len(volumes) > 1 else volumes[0]

    def get_data(self, img) -> tuple[np.ndarray, dict]:
        volumes = img if isinstance(img, list) else [img]
        first_affine = volumes[0][1]
        for array, affine, name in volumes[1:]:
            if array.shape != volumes[0][0].shape or not np.allclose(affine, first_affine):
                raise ImageError(f"{name}: files stacked as channels must share one voxel grid")
        meta = {
            MetaKeys.AFFINE: first_affine.copy(),
            MetaKeys.ORIGINAL_AFFINE: first_affine.copy(),
            MetaKeys.SPATIAL_SHAPE: np.asarray(volumes[0][0].shape),
            MetaKeys.SPACE: SpaceKeys.RAS,
            MetaKeys.ORIGINAL_CHANNEL_DIM: float("nan") if len(volumes) == 1 else 0,
        }
        arrays = [np.ascontiguousarray(v[0]) for v in volumes]
        return (arrays[0] if len(arrays) == 1 else np.stack(arrays, axis=0)), meta


class SimpleITKReader(VolumeReader):
    """``VolumeReader`` that claims only the SimpleITK formats (``.nrrd``, ``.nhdr``, ``.mha``, ``.mhd``),
    for MONAI chains that register several readers."""

    def verify_suffix(self, filename) -> bool:
        return all(str(name).lower().endswith(io.SITK_SUFFIXES) for name in ensure_tuple(filename))
