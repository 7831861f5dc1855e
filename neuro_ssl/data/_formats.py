"""File-format details behind ``data/io.py``: nibabel (NIfTI-1/2, MGH, Analyze pairs) and
SimpleITK (NRRD, MHA/MHD) decoding, each with the checks that name what is wrong with a file.

Private: only ``data/io.py`` imports this module, and its public functions are the API.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import threading
import zlib
from pathlib import Path

import numpy as np

from neuro_ssl.errors import ImageError

_GZIP_SUFFIXES = (".nii.gz", ".mgz")
#: NIfTI datatype codes that hold no single real intensity per voxel (nibabel reads some of them).
_NIFTI_NOT_GREY = {1: "1-bit binary data (NIfTI datatype 1, DT_BINARY)", 32: "complex data (complex64)",
                   128: "RGB colour data (NIfTI datatype 128, RGB24)", 1792: "complex data (complex128)",
                   2048: "complex data (complex256)", 2304: "RGBA colour data (NIfTI datatype 2304, RGBA32)"}
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _read_nibabel(path: Path, suffix: str) -> tuple[np.ndarray, np.ndarray, str, list[str]]:
    import nibabel as nib

    with _quiet_nibabel():
        if suffix in (".nii", ".nii.gz", ".mgz"):
            img = _image_from_bytes(path, suffix)
        else:
            _check_pair(path, suffix)
            try:
                img = nib.load(str(path))
            except Exception as exc:  # noqa: BLE001 - nibabel raises many types for bad files
                raise ImageError(f"{path}: not a readable image ({_first_line(exc)})") from None
            _check_header_datatype(img.header, path)
        shape = tuple(int(s) for s in img.shape)
        if any(s == 0 for s in shape):
            raise ImageError(f"{path}: header has a zero dimension ({_fmt_shape(shape)})")
        try:
            data = np.asanyarray(img.dataobj)
        except (OSError, ValueError, EOFError) as exc:
            raise ImageError(f"{path}: truncated or damaged data ({_first_line(exc)})") from None
        affine = np.asarray(img.affine, dtype=np.float64)
        dtype = str(img.get_data_dtype())
        warnings = _header_warnings(img)
    return data, affine, dtype, warnings


def _check_pair(path: Path, suffix: str) -> None:
    """An Analyze (or NIfTI-pair) header and its image file must lie side by side."""
    other = ".img" if suffix == ".hdr" else ".hdr" if suffix == ".img" else None
    if other is None:
        return
    stem = str(path)[: -len(suffix)]
    if not any(os.path.exists(stem + ext) for ext in (other, other.upper())):
        what = "header" if suffix == ".hdr" else "image file"
        needed = "image file" if suffix == ".hdr" else "header"
        raise ImageError(f"{path}: Analyze {what} without its {needed} {Path(stem).name}{other} beside it")


def _check_header_datatype(header, path: Path) -> None:
    """Name the data type of a header whose voxels are not one real grey level (before reading them)."""
    code = int(header["datatype"]) if "datatype" in header else None
    if code in _NIFTI_NOT_GREY:
        raise ImageError(f"{path}: {_NIFTI_NOT_GREY[code]}: expected one real grey-level intensity per voxel")


class _QuietInThisThread(logging.Filter):
    """Drops nibabel's header-fix messages in the thread that is reading (we report problems ourselves).

    Unlike nibabel's ``LoggingOutputSuppressor`` it leaves other threads and later calls alone.
    """

    def __init__(self):
        super().__init__()
        self.local = threading.local()

    def filter(self, record) -> bool:
        return not getattr(self.local, "active", False)


_QUIET = _QuietInThisThread()


@contextlib.contextmanager
def _quiet_nibabel():
    logger = logging.getLogger("nibabel.global")
    if _QUIET not in logger.filters:
        logger.addFilter(_QUIET)
    _QUIET.local.active = True
    try:
        yield
    finally:
        _QUIET.local.active = False


def _image_from_bytes(path: Path, suffix: str):
    """Read the whole file (decompressing it and checking the CRC), then parse it from memory."""
    import nibabel as nib

    raw = path.read_bytes()
    if suffix in _GZIP_SUFFIXES:
        try:
            raw = gzip.decompress(raw)
        except EOFError:
            raise ImageError(f"{path}: truncated gzip stream (file ends early)") from None
        except gzip.BadGzipFile as exc:
            if "crc" in str(exc).lower():
                raise ImageError(f"{path}: corrupt gzip stream (CRC check failed)") from None
            raise ImageError(f"{path}: not a gzip file although named {suffix}") from None
        except zlib.error as exc:
            raise ImageError(f"{path}: corrupt gzip stream ({_first_line(exc)})") from None
    if suffix == ".mgz":
        klass = nib.MGHImage
    else:
        klass = _check_nifti_magic(raw[:352], path, compressed=suffix in _GZIP_SUFFIXES)
        _check_nifti_length(raw, klass, path)
    try:
        return klass.from_bytes(raw)
    except Exception as exc:  # noqa: BLE001
        raise ImageError(f"{path}: not a readable image ({_first_line(exc)})") from None


def _check_nifti_magic(head: bytes, path: Path, compressed: bool = False):
    """Nifti1Image or Nifti2Image from the header-size field; ImageError for anything else."""
    import nibabel as nib

    for size, klass in ((348, nib.Nifti1Image), (540, nib.Nifti2Image)):
        for order in ("little", "big"):
            if len(head) >= 4 and int.from_bytes(head[:4], order) == size:
                return klass
    what = "decompressed content" if compressed else "file"
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head[:256]):
        raise ImageError(f"{path}: not a NIfTI file (the {what} is text)")
    raise ImageError(f"{path}: not a NIfTI file (the {what} has no NIfTI header)")


def _check_nifti_length(raw: bytes, klass, path: Path) -> None:
    """Refuse a header whose data would run past the end of the file, or whose voxel size is 0/NaN.

    The header is parsed unchecked: nibabel silently 'fixes' a zero pixdim to 1 mm.
    """
    import io

    try:
        header = klass.header_class.from_fileobj(io.BytesIO(raw), check=False)
    except Exception as exc:  # noqa: BLE001
        raise ImageError(f"{path}: damaged NIfTI header ({_first_line(exc)})") from None
    _check_header_datatype(header, path)
    shape = header.get_data_shape()
    expected = int(header.get_data_offset()) + int(np.prod(shape)) * header.get_data_dtype().itemsize
    if len(raw) < expected:
        raise ImageError(f"{path}: truncated data (header says {expected} bytes, the file holds {len(raw)})")
    pixdim = np.asarray(header["pixdim"][1:4], dtype=np.float64)
    if int(header["sform_code"]) == 0 and not np.all(np.isfinite(pixdim) & (pixdim != 0)):
        shown = "x".join(f"{v:g}" for v in pixdim)
        raise ImageError(f"{path}: absurd affine (voxel size {shown} in the header's pixdim)")


def _header_warnings(img) -> list[str]:
    header = img.header
    if "sform_code" in header and "qform_code" in header:
        if int(header["sform_code"]) == 0 and int(header["qform_code"]) == 0:
            return ["no sform/qform in the header: orientation guessed from voxel sizes"]
    return []


def _read_sitk(path: Path) -> tuple[np.ndarray, np.ndarray, str, list[str]]:
    import SimpleITK as sitk

    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise ImageError(f"{path}: not a readable image (SimpleITK: {_sitk_message(exc)})") from None
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ImageError(f"{path}: {image.GetNumberOfComponentsPerPixel()} components per voxel, expected 1")
    data, affine = sitk_to_ras(image)
    return data, affine, image.GetPixelIDTypeAsString(), []


def sitk_to_ras(image) -> tuple[np.ndarray, np.ndarray]:
    """A SimpleITK image as (array indexed x, y, z[, t], RAS+ affine).

    ITK's physical point of index i is ``origin + D @ (spacing * i)`` in LPS; flipping the
    first two world axes gives RAS. ``GetArrayFromImage`` returns z, y, x order: transposed.
    """
    import SimpleITK as sitk

    ndim = image.GetDimension()
    spatial = min(ndim, 3)
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(ndim, ndim)[:spatial, :spatial]
    spacing = np.asarray(image.GetSpacing(), dtype=np.float64)[:spatial]
    origin = np.asarray(image.GetOrigin(), dtype=np.float64)[:spatial]
    affine_lps = np.eye(4)
    affine_lps[:spatial, :spatial] = direction * spacing[None, :]
    affine_lps[:spatial, 3] = origin
    data = sitk.GetArrayFromImage(image).transpose(tuple(range(ndim))[::-1])
    return data, _LPS_TO_RAS @ affine_lps


def _sitk_message(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    last = lines[-1] if lines else type(exc).__name__
    return last.replace("sitk::ERROR:", "").strip()[:160]


def _fmt_shape(shape) -> str:
    return "x".join(str(int(s)) for s in shape)


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text or type(exc).__name__)[:160]
