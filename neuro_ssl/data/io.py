"""Reading and writing volumes: the only module that touches image files, always with the affine.

- NIfTI (``.nii``, ``.nii.gz``), FreeSurfer ``.mgz`` and Analyze ``.img`` go through nibabel;
  compressed files are decompressed in full first, so a truncated stream or a bad CRC is caught
  here instead of producing a silently damaged array.
- ``.nrrd``/``.nhdr``/``.mha``/``.mhd`` go through SimpleITK, whose world space is LPS; the affine
  returned here is always RAS+ in mm (x and y flipped), the convention of nibabel and MONAI.
- A 4D (or 5D) file holding a single volume is squeezed to 3D; a dynamic file with several
  frames is averaged into one volume with ``frames="mean"`` (``--frames mean``), refused otherwise.
- Only real grey-level data is an image: RGB/RGBA, complex, 1-bit binary and other structured
  data types are refused with a line saying which type the file holds.

:func:`read_volume` is THE reader: ``validate`` (through :func:`check_volume`) and the MONAI
chain of every training and inference command (through ``readers.VolumeReader``) call it, so
they accept and refuse exactly the same files with the same message.
The format details (header and stream checks per format) live in the private
``data/_formats.py``. ``SimpleITKReader`` (the MONAI reader of ``data/readers.py``) is
re-exported here on first access, so importing this module never imports monai.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from neuro_ssl.data._formats import _first_line, _fmt_shape, _read_nibabel, _read_sitk, sitk_to_ras  # noqa: F401
from neuro_ssl.errors import ConfigError, ImageError

NIBABEL_SUFFIXES = (".nii.gz", ".nii", ".mgz", ".mgh", ".img", ".hdr")
SITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
VOLUME_SUFFIXES = NIBABEL_SUFFIXES + SITK_SUFFIXES
_GZIP_SUFFIXES = (".nii.gz", ".mgz")
_GZIP_MAGIC = b"\x1f\x8b"
#: how a file with several volumes is turned into one: refuse it, or average the frames.
FRAMES = ("single", "mean")
#: voxel sizes outside this range (mm) mean a broken header, not a brain scan.
VOXEL_MM_RANGE = (0.01, 50.0)


@dataclass(frozen=True)
class VolumeInfo:
    """What ``check_volume`` learnt about a readable, usable 3D volume."""

    path: Path
    shape: tuple[int, int, int]
    affine: np.ndarray = field(repr=False)
    voxel_mm: tuple[float, float, float]
    orientation: str          # axis codes of the voxel axes in RAS+ world, e.g. "RAS", "LPS"
    dtype: str                # on-disk data type
    value_range: tuple[float, float]
    warnings: tuple[str, ...] = ()


def volume_suffix(path: str | os.PathLike) -> str | None:
    """The recognised volume suffix of ``path`` (``.nii.gz`` counts as one), or None."""
    name = str(path).lower()
    return next((s for s in VOLUME_SUFFIXES if name.endswith(s)), None)


def is_volume_file(path: str | os.PathLike) -> bool:
    """True for a file name this module can read (an Analyze ``.hdr`` counts via its ``.img``)."""
    suffix = volume_suffix(path)
    return suffix is not None and suffix != ".hdr"


# ----------------------------------------------------------------------------------------- read

def read_volume(path: str | os.PathLike, frames: str = "single") -> tuple[np.ndarray, np.ndarray, "VolumeInfo"]:
    """Read and check one 3D volume: (float32 array, 4x4 voxel-to-RAS+ affine in mm, VolumeInfo).

    The one reader of every command. Checks: the file exists and is readable; its content
    matches its name (gzip, NIfTI header, Analyze header beside its image); the compressed
    stream is complete and its CRC matches; one real grey level per voxel (not RGB, complex or
    binary); no zero dimension; 3D (or 4D with one volume, or several averaged with
    ``frames="mean"``); no NaN/Inf voxel; not all zero or constant; a finite, invertible affine
    with plausible voxel sizes. Raises :class:`ImageError`, one line naming the file and every
    problem found.
    """
    path = Path(path)
    data, affine, dtype, header_warnings = _read(path)
    data = _as_3d(data, path, frames)
    problems = data_problems(data) + affine_problems(affine)
    if problems:
        raise ImageError(f"{path}: {'; '.join(problems)}")
    info = VolumeInfo(
        path=path,
        shape=tuple(int(s) for s in data.shape),
        affine=affine,
        voxel_mm=tuple(float(v) for v in voxel_sizes(affine)),
        orientation=orientation_code(affine),
        dtype=dtype,
        value_range=(float(data.min()), float(data.max())),
        warnings=tuple(header_warnings),
    )
    return np.asarray(data, dtype=np.float32), affine, info


def load_volume(path: str | os.PathLike, frames: str = "single", role: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read a 3D volume as a float32 array and its 4x4 voxel-to-RAS+ (mm) affine.

    The file checks of :func:`read_volume`, without the voxel-value and geometry checks (a
    saliency map or a mask may be all zero). Raises :class:`ImageError` (one line naming the
    file) when the file cannot be read or is not a single 3D volume of grey levels; ``role``
    (e.g. ``"mask"``) starts the message, for a file that is not a scan.
    """
    path = Path(path)
    try:
        data, affine, _, _ = _read(path)
        data = _as_3d(data, path, frames, hint=role is None)
    except ImageError as exc:
        if role is None:
            raise
        raise ImageError(f"{role} {exc}") from None
    return np.asarray(data, dtype=np.float32), affine


def check_volume(path: str | os.PathLike, frames: str = "single") -> VolumeInfo:
    """Check that ``path`` is a usable 3D volume (see :func:`read_volume`); raise :class:`ImageError` if not."""
    return read_volume(path, frames)[2]


def data_problems(data: np.ndarray) -> list[str]:
    """Voxel-value problems of an array: NaN/Inf voxels, all zero, constant."""
    problems = []
    n_nan = int(np.count_nonzero(np.isnan(data)))
    n_inf = int(np.count_nonzero(np.isinf(data)))
    if n_nan:
        problems.append(f"{n_nan} NaN voxel{'s' if n_nan > 1 else ''} of {data.size}")
    if n_inf:
        problems.append(f"{n_inf} Inf voxel{'s' if n_inf > 1 else ''} of {data.size}")
    finite = data[np.isfinite(data)] if (n_nan or n_inf) else data
    if finite.size and not (n_nan or n_inf):
        lo, hi = float(finite.min()), float(finite.max())
        if lo == hi == 0.0:
            problems.append("all voxels are zero (empty image)")
        elif lo == hi:
            problems.append(f"constant image (every voxel is {lo:g})")
    return problems


def affine_problems(affine: np.ndarray) -> list[str]:
    """Geometry problems: non-finite entries, zero or absurd voxel size, non-invertible matrix."""
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        return ["absurd affine (NaN or Inf entries)"]
    sizes = voxel_sizes(affine)
    lo, hi = VOXEL_MM_RANGE
    if np.any(sizes < lo) or np.any(sizes > hi):
        shown = "x".join(f"{s:g}" for s in sizes)
        return [f"absurd affine (voxel size {shown} mm, expected {lo:g}-{hi:g} mm)"]
    det = abs(float(np.linalg.det(affine[:3, :3])))
    if det < 1e-6 * float(np.prod(sizes)):
        return ["absurd affine (axes are collinear: the matrix is not invertible)"]
    if np.any(np.abs(affine[:3, 3]) > 1e5):
        return ["absurd affine (origin more than 100 m away)"]
    return []


def voxel_sizes(affine: np.ndarray) -> np.ndarray:
    """Voxel edge lengths in mm: the norms of the affine's first three columns."""
    return np.sqrt(np.sum(np.asarray(affine, dtype=np.float64)[:3, :3] ** 2, axis=0))


def orientation_code(affine: np.ndarray) -> str:
    """Axis codes such as ``RAS`` or ``LPS`` (``???`` for a degenerate affine)."""
    import nibabel as nib

    try:
        codes = nib.aff2axcodes(affine)
    except Exception:  # noqa: BLE001 - a degenerate affine has no orientation
        return "???"
    return "".join(c if c is not None else "?" for c in codes)


def _read(path: Path) -> tuple[np.ndarray, np.ndarray, str, list[str]]:
    """(data as stored, squeezed of nothing; RAS affine; on-disk dtype; header warnings)."""
    _check_file(path)
    suffix = volume_suffix(path)
    try:
        data, affine, dtype, warnings = _read_sitk(path) if suffix in SITK_SUFFIXES else _read_nibabel(path, suffix)
    except (ImageError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - a reader library failing on a file is a bad file: one line, no traceback
        raise ImageError(f"{path}: not a readable image ({type(exc).__name__}: {_first_line(exc)})") from None
    return _grey_levels(data, path), affine, dtype, warnings


def _grey_levels(data: np.ndarray, path: Path) -> np.ndarray:
    """Real intensities (float32 unless already floating); refuses colour, complex, binary, other types."""
    dtype = data.dtype
    if dtype.names is not None or dtype.kind == "V":
        fields = ",".join(dtype.names or ())
        what = "RGB colour data" if fields in ("R,G,B", "R,G,B,A") else f"structured data ({dtype})"
        raise ImageError(f"{path}: {what}: expected one grey-level intensity per voxel (convert it to greyscale first)")
    if dtype.kind == "c":
        raise ImageError(f"{path}: complex data ({dtype}): expected real intensities (save the magnitude image instead)")
    if dtype.kind == "b":
        raise ImageError(f"{path}: binary data (bool): a mask, not an intensity image")
    if dtype.kind not in "iuf":
        raise ImageError(f"{path}: data type {dtype} is not a number per voxel")
    return data if dtype.kind == "f" else data.astype(np.float32)


def _check_file(path: Path) -> None:
    """The file exists, can be read, is not empty, and its name and first bytes agree."""
    if not path.exists():
        raise ImageError(f"{path}: file not found")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image file")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(2)
    except PermissionError:
        raise ImageError(f"{path}: permission denied") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not magic:
        raise ImageError(f"{path}: empty file (0 bytes)")
    suffix = volume_suffix(path)
    if suffix is None:
        raise ImageError(f"{path}: unknown image format (expected one of {', '.join(VOLUME_SUFFIXES)})")
    if suffix not in _GZIP_SUFFIXES and magic == _GZIP_MAGIC:
        fix = {".nii": "rename it to .nii.gz", ".mgh": "rename it to .mgz"}.get(suffix, "decompress it")
        raise ImageError(f"{path}: the file is gzip-compressed although named {suffix} ({fix})")


def _as_3d(data: np.ndarray, path: Path, frames: str = "single", hint: bool = True) -> np.ndarray:
    """Squeeze trailing singleton dimensions past the third; average frames with ``frames="mean"``;
    refuse 2D and multi-volume data."""
    if frames not in FRAMES:
        raise ConfigError(f"frames must be one of {', '.join(FRAMES)}, got {frames!r}")
    shape = data.shape
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 4 and frames == "mean":
        data = data.mean(axis=3, dtype=np.float64).astype(np.float32)
    if data.ndim > 3:
        extra = int(np.prod(data.shape[3:]))
        hint = ("; a dynamic PET? --frames mean averages its frames into one volume"
                if hint and data.ndim == 4 and frames != "mean" else "")
        raise ImageError(f"{path}: {data.ndim}D image with {extra} volumes ({_fmt_shape(shape)}); "
                         f"expected one 3D volume{hint}")
    if data.ndim < 3 or min(data.shape) < 2:
        raise ImageError(f"{path}: 2D image ({_fmt_shape(shape)}); expected a 3D volume")
    return data


# ---------------------------------------------------------------------------------------- write

def save_nifti(data: np.ndarray, affine: np.ndarray, path: str | os.PathLike, like=None) -> Path:
    """Write ``data`` with ``affine`` as NIfTI, atomically; qform and sform both hold the affine.

    float32, except integer or boolean arrays (masks, labels), which stay integer. ``like``
    (a path or nibabel image, usually the source scan) lends its units and sform/qform codes;
    without it the codes are 1 (scanner) and units mm.
    """
    import nibabel as nib

    from neuro_ssl._utils.files import atomic_path

    path = Path(path)
    if not str(path).lower().endswith((".nii", ".nii.gz")):
        raise ImageError(f"{path}: save_nifti writes .nii or .nii.gz files")
    affine = np.asarray(affine, dtype=np.float64)
    problems = affine_problems(affine)
    if problems:
        raise ImageError(f"{path}: refusing to write: {problems[0]}")
    array = _output_array(np.asarray(data))
    img = nib.Nifti1Image(array, affine)
    codes, units = _header_from_like(like)
    img.header.set_sform(affine, code=codes[0])
    img.header.set_qform(affine, code=codes[1])
    img.header.set_xyzt_units(*units)
    img.set_data_dtype(array.dtype)
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return path


def _output_array(array: np.ndarray) -> np.ndarray:
    if array.dtype == bool:
        return array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        lo, hi = (int(array.min()), int(array.max())) if array.size else (0, 0)
        for candidate in (np.uint8, np.int16, np.int32):
            info = np.iinfo(candidate)
            if info.min <= lo and hi <= info.max:
                return array.astype(candidate)
        raise ImageError(f"integer values {lo}..{hi} do not fit in int32")
    return array.astype(np.float32)


def _header_from_like(like) -> tuple[tuple[int, int], tuple[str, str]]:
    """((sform_code, qform_code), (space unit, time unit)) from a NIfTI ``like``; defaults otherwise.

    A reference that nibabel cannot read as NIfTI (.nrrd, .mgz) lends nothing: scanner codes, mm.
    """
    defaults = ((1, 1), ("mm", "sec"))
    if like is None:
        return defaults
    import nibabel as nib

    try:
        header = (nib.load(str(like)) if isinstance(like, (str, os.PathLike)) else like).header
        sform, qform = int(header["sform_code"]), int(header["qform_code"])
        space, time = header.get_xyzt_units()
    except Exception:  # noqa: BLE001 - not a NIfTI reference: keep the defaults
        return defaults
    best = sform or qform or 1
    return (sform or best, qform or best), (space if space != "unknown" else "mm", time if time != "unknown" else "sec")


# ------------------------------------------------------------------------------ MONAI reader

def __getattr__(name: str):
    """``SimpleITKReader`` (architecture contract) is the MONAI reader of ``data/readers.py``.

    Resolved on first access so that importing this module never imports monai (seconds).
    """
    if name == "SimpleITKReader":
        from neuro_ssl.data.readers import SimpleITKReader

        return SimpleITKReader
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
