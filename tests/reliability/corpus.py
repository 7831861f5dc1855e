"""A corpus of bad inputs, each a real file made on disk, beside good scans.

Every entry names the problem a user would see, so tests can check that ``validate`` and the
training commands report each one (file and row named, non-zero exit) and skip it only with
``--skip-bad``. Three kinds:

- :func:`make_bad_files`: broken volumes (truncated gzip, garbage, zero dims, 2D, 4D, NaN, Inf,
  all zero, zero-scale affine, text renamed ``.nii``, missing, unreadable);
- :func:`make_field_files`: files people reported in public bug threads (nibabel, MONAI, BIDS,
  ClinicaDL): RGB24, RGBA32, complex, 1-bit binary, a (x, y, z, 1, 1) 5D file, an Analyze
  ``.hdr/.img`` pair, a ``.hdr`` without its ``.img``, gzip named ``.nii``, a dynamic 4D PET;
- :func:`make_bad_manifests`: manifests that are broken as tables (missing column, wrong
  delimiter: no row can be blamed, the file is) or in one row (duplicate, non-numeric age,
  unknown diagnosis);
- :func:`write_armed_checkpoint`: a crafted pickle that runs code (creates a marker file) when
  loaded by anything but ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import gzip
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

#: canonical manifest columns the tests write (plain CSV, one row per image)
COLUMNS = ("subject_id", "session_id", "image", "modality", "age", "sex", "diagnosis")


@dataclass(frozen=True)
class BadFile:
    name: str                  # what is wrong, as a short slug
    path: Path
    expect: tuple[str, ...]    # the one-line message should contain one of these (lower case)


@dataclass(frozen=True)
class BadManifest:
    name: str
    path: Path
    row: int | None            # the manifest line to blame; None: the file as a whole (its header)
    expect: tuple[str, ...]    # the message should contain one of these (lower case)


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


def _save_raw_sform(data: np.ndarray, affine: np.ndarray, path: Path) -> None:
    """Write ``affine`` into the sform as it is (qform off): nibabel refuses to decompose a singular one."""
    header = nib.Nifti1Header()
    header.set_data_shape(data.shape)
    header.set_data_dtype(np.float32)
    header.set_sform(affine, code=1)
    header.set_qform(None, code=0)
    nib.save(nib.Nifti1Image(data, None, header=header), str(path))


def write_good(path: Path, seed: int = 0) -> Path:
    nib.save(nib.Nifti1Image(_brain(seed=seed), _affine()), str(path))
    return path


def make_bad_files(folder: Path) -> list[BadFile]:
    """Every broken-volume case this machine can make (the permission case needs a non-root user)."""
    folder.mkdir(parents=True, exist_ok=True)
    bad = _broken_files(folder) + _unusable_volumes(folder)
    bad.append(BadFile("missing_file", folder / "does_not_exist.nii.gz", ("not found",)))
    permission = make_unreadable(folder / "locked.nii.gz")
    return bad + ([permission] if permission is not None else [])


def _broken_files(folder: Path) -> list[BadFile]:
    """Files no reader can decode: a cut gzip stream, gzip of random bytes, text named .nii."""
    raw = write_good(folder / "template_good.nii.gz", seed=99).read_bytes()
    (folder / "template_good.nii.gz").unlink()
    truncated = folder / "truncated.nii.gz"
    truncated.write_bytes(raw[: len(raw) // 2])
    garbage = folder / "garbage.nii.gz"
    garbage.write_bytes(gzip.compress(os.urandom(4096)))
    text = folder / "notes.nii"
    text.write_text("this is a text file renamed .nii\n" * 20)
    return [BadFile("truncated_gz", truncated, ("truncat", "ended before")),
            BadFile("gzip_of_garbage", garbage, ("not a nifti", "file type")),
            BadFile("text_renamed_nii", text, ("not a nifti", "file type", "text"))]


def _unusable_volumes(folder: Path) -> list[BadFile]:
    """Valid NIfTI files that are not a usable 3D brain volume."""
    def save(name: str, data: np.ndarray) -> Path:
        nib.save(nib.Nifti1Image(data, _affine()), str(folder / name))
        return folder / name

    vol = _brain()
    nan, inf = vol.copy(), vol.copy()
    nan[5, 5, 5], inf[6, 6, 6] = np.nan, np.inf
    zero_scale = _affine()
    zero_scale[0, 0] = 0.0
    _save_raw_sform(vol, zero_scale, folder / "zero_scale.nii.gz")
    return [BadFile("zero_dims", save("zero_dims.nii.gz", np.zeros((0, 4, 4), np.float32)), ("zero dimension",)),
            BadFile("2d_image", save("flat2d.nii.gz", vol[:, :, 12]), ("2d", "not a 3d")),
            BadFile("4d_three_volumes", save("fourd.nii.gz", np.stack([vol, vol, vol], -1)), ("4d",)),
            BadFile("nan_voxels", save("nan.nii.gz", nan), ("nan",)),
            BadFile("inf_voxels", save("inf.nii.gz", inf), ("inf",)),
            BadFile("all_zero", save("zeros.nii.gz", np.zeros((24, 28, 24), np.float32)), ("zero", "constant")),
            BadFile("absurd_affine", folder / "zero_scale.nii.gz", ("affine",))]


@dataclass(frozen=True)
class FieldFile:
    name: str
    path: Path
    expect: tuple[str, ...] | None     # None: a usable volume; else fragments of the refusal (lower case)
    frames_mean_ok: bool = False       # usable once its frames are averaged (--frames mean)


def _patch_nifti_datatype(path: Path, code: int, bitpix: int) -> None:
    """Rewrite the datatype and bitpix fields (bytes 70-73) of an uncompressed NIfTI-1 header."""
    import struct

    raw = bytearray(path.read_bytes())
    raw[70:74] = struct.pack("<hh", code, bitpix)
    path.write_bytes(bytes(raw))


def make_field_files(folder: Path) -> list[FieldFile]:
    """Files of kinds that users reported in public threads, each a real file on disk."""
    folder.mkdir(parents=True, exist_ok=True)
    vol, aff = _brain(), _affine()
    out = []

    rgb = np.zeros(vol.shape, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    rgb["R"] = np.clip(vol, 0, 255).astype(np.uint8)
    nib.save(nib.Nifti1Image(rgb, aff), str(folder / "rgb24.nii.gz"))
    out.append(FieldFile("rgb24", folder / "rgb24.nii.gz", ("rgb",)))
    rgba = np.zeros(vol.shape, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1"), ("A", "u1")])
    rgba["G"] = np.clip(vol, 0, 255).astype(np.uint8)
    nib.save(nib.Nifti1Image(rgba, aff), str(folder / "rgba32.nii"))
    out.append(FieldFile("rgba32_structured", folder / "rgba32.nii", ("rgba",)))
    nib.save(nib.Nifti1Image((vol + 1j * vol).astype(np.complex64), aff), str(folder / "complex.nii.gz"))
    out.append(FieldFile("complex64", folder / "complex.nii.gz", ("complex",)))
    nib.save(nib.Nifti1Image((vol > 40).astype(np.uint8), aff), str(folder / "binary.nii"))
    _patch_nifti_datatype(folder / "binary.nii", 1, 1)  # DT_BINARY: what some mask tools write
    out.append(FieldFile("binary_bool", folder / "binary.nii", ("binary",)))

    nib.save(nib.Nifti1Image(vol[..., None, None], aff), str(folder / "five_d.nii.gz"))
    out.append(FieldFile("xyz11_5d", folder / "five_d.nii.gz", None))
    nib.save(nib.AnalyzeImage(vol, aff), str(folder / "analyze.img"))
    out.append(FieldFile("analyze_pair", folder / "analyze.img", None))
    nib.save(nib.AnalyzeImage(vol, aff), str(folder / "lonely.img"))
    (folder / "lonely.img").unlink()
    out.append(FieldFile("hdr_without_img", folder / "lonely.hdr", ("without its image file", "lonely.img")))
    nib.save(nib.Nifti1Image(vol, aff), str(folder / "packed.nii.gz"))
    (folder / "packed.nii.gz").rename(folder / "packed.nii")
    out.append(FieldFile("gzip_named_nii", folder / "packed.nii", ("gzip-compressed", ".nii.gz")))
    frames = np.stack([vol * (1 + 0.1 * t) for t in range(6)], -1)  # ADNI dynamic FDG: 6 x 5 min
    nib.save(nib.Nifti1Image(frames, aff), str(folder / "pet_dynamic.nii.gz"))
    out.append(FieldFile("pet_4d_frames", folder / "pet_dynamic.nii.gz", ("6 volumes", "--frames mean"), True))
    return out


def make_unreadable(path: Path) -> BadFile | None:
    """A good volume nobody may read; None where the current user reads anything (root)."""
    write_good(path, seed=7)
    path.chmod(0)
    if os.access(path, os.R_OK):  # root reads anything: the permission case cannot be made here
        path.chmod(0o644)
        path.unlink()
        return None
    return BadFile("unreadable_permissions", path, ("permission",))


# ---------------------------------------------------------------------------------- manifests

def write_manifest(path: Path, rows: pd.DataFrame, sep: str = ",", bom: bool = False) -> Path:
    """Write ``rows`` (strings) as a CSV as a user's spreadsheet would; returns ``path``."""
    text = rows.to_csv(index=False, sep=sep)
    path.write_bytes((("\ufeff" if bom else "") + text).encode("utf-8"))
    return path


def bad_image_row(good: pd.DataFrame, image: Path, subject: str, diagnosis: str = "AD") -> pd.DataFrame:
    """One manifest row (same columns as ``good``) pointing at ``image``, for a subject of its own."""
    row = good.iloc[[0]].copy()
    row["subject_id"], row["session_id"], row["image"], row["diagnosis"] = subject, "bl", str(image), diagnosis
    return row


def insert_row(good: pd.DataFrame, row: pd.DataFrame, position: int) -> tuple[pd.DataFrame, int]:
    """``good`` with ``row`` inserted before data row ``position`` (0-based); and its file line."""
    table = pd.concat([good.iloc[:position], row, good.iloc[position:]], ignore_index=True)
    return table, position + 2  # line 1 is the header


def make_bad_manifests(folder: Path, good: pd.DataFrame) -> list[BadManifest]:
    """Manifests built from ``good`` (>= 4 rows, canonical columns) with one problem each."""
    folder.mkdir(parents=True, exist_ok=True)
    out: list[BadManifest] = []

    p = write_manifest(folder / "no_image_column.csv", good.drop(columns=["image"]))
    out.append(BadManifest("missing_image_column", p, None, ("no image column",)))

    p = write_manifest(folder / "no_subject_column.csv", good.drop(columns=["subject_id"]))
    out.append(BadManifest("missing_subject_column", p, None, ("no subject column",)))

    p = write_manifest(folder / "pipe_delimited.csv", good, sep="|")
    out.append(BadManifest("wrong_delimiter", p, None, ("delimiter",)))

    table, line = insert_row(good, good.iloc[[0]].copy(), 3)
    p = write_manifest(folder / "duplicate_row.csv", table)
    out.append(BadManifest("duplicate_row", p, line, ("duplicate", "same file")))

    table = good.copy()
    table.loc[table.index[2], "age"] = "seventy"
    p = write_manifest(folder / "age_not_a_number.csv", table)
    out.append(BadManifest("non_numeric_age", p, 4, ("seventy",)))

    table = good.copy()
    table.loc[table.index[1], "diagnosis"] = "Alzheimer-ish"
    p = write_manifest(folder / "unknown_diagnosis.csv", table)
    out.append(BadManifest("unknown_diagnosis", p, 3, ("alzheimer-ish",)))
    return out


# ------------------------------------------------------------------------------- checkpoints

class _Payload:
    """Pickles as a call that creates ``marker``: what a malicious checkpoint does on load."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def write_armed_checkpoint(path: Path, marker: Path, fmt: str, container: str = "torch_zip") -> Path:
    """A file shaped like a neuro-ssl checkpoint of format ``fmt`` whose unpickling creates ``marker``.

    ``container``: ``torch_zip`` (what ``torch.save`` writes) or ``raw_pickle`` (a legacy pickle).
    """
    import torch

    evil = {"format": fmt, "state_dict": {}, "model": {}, "meta": {"arch": _Payload(marker)}, "config": {}}
    path.parent.mkdir(parents=True, exist_ok=True)
    if container == "torch_zip":
        torch.save(evil, path)
    elif container == "raw_pickle":
        path.write_bytes(pickle.dumps(evil, protocol=2))
    else:
        raise ValueError(container)
    return path
