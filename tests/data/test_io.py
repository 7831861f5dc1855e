"""data/io.py over real files: NIfTI/MGH/NRRD/MHA reading, LPS->RAS, atomic NIfTI writing, broken files."""

from __future__ import annotations

import gzip
import io
import os

import nibabel as nib
import numpy as np
import pytest

from neuro_ssl.data.io import check_volume, load_volume, save_nifti
from neuro_ssl.errors import ImageError

def _rotation(ax_deg: float, ay_deg: float) -> np.ndarray:
    a, b = np.deg2rad(ax_deg), np.deg2rad(ay_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    return rx @ ry


#: an oblique, left-right flipped (LAS-like) scan: rotation times voxel sizes, as a scanner writes it.
OBLIQUE = np.eye(4)
OBLIQUE[:3, :3] = _rotation(12, -7) @ np.diag([-1.8, 1.9, 2.4])
OBLIQUE[:3, 3] = [10.0, -20.0, 5.0]


def volume(shape=(8, 9, 10), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).normal(100, 20, size=shape).astype(np.float32)


def nifti_bytes(data, affine=np.eye(4), mutate=None) -> bytes:
    """A NIfTI-1 file as bytes; ``mutate(header)`` edits the raw header (unchecked) afterwards."""
    raw = bytearray(nib.Nifti1Image(data, affine).to_bytes())
    if mutate is not None:
        header = nib.Nifti1Header.from_fileobj(io.BytesIO(bytes(raw)), check=False)
        mutate(header)
        raw[:348] = header.binaryblock
    return bytes(raw)


def write(path, raw: bytes, compress=None):
    compress = str(path).endswith(".gz") if compress is None else compress
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


# ------------------------------------------------------------------------------- reading

@pytest.mark.parametrize("name", ["v.nii", "v.nii.gz"])
def test_load_volume_matches_nibabel_for_oblique_affine(tmp_path, name):
    data = volume()
    nib.save(nib.Nifti1Image(data, OBLIQUE), tmp_path / name)
    array, affine = load_volume(tmp_path / name)
    assert array.dtype == np.float32 and array.shape == data.shape
    np.testing.assert_array_equal(array, data)
    np.testing.assert_allclose(affine, nib.load(tmp_path / name).affine)


def test_integer_data_with_scaling_is_read_as_scaled_float(tmp_path):
    ints = np.arange(8 * 8 * 8, dtype=np.int16).reshape(8, 8, 8)
    img = nib.Nifti1Image(ints, np.eye(4))
    img.header.set_slope_inter(0.5, 10.0)
    nib.save(img, tmp_path / "s.nii.gz")
    array, _ = load_volume(tmp_path / "s.nii.gz")
    np.testing.assert_allclose(array, ints.astype(np.float64) * 0.5 + 10.0)
    assert check_volume(tmp_path / "s.nii.gz").dtype == "int16"


def test_4d_with_one_volume_is_squeezed(tmp_path):
    data = volume((8, 8, 8, 1))
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])), tmp_path / "one.nii.gz")
    array, _ = load_volume(tmp_path / "one.nii.gz")
    assert array.shape == (8, 8, 8)
    assert check_volume(tmp_path / "one.nii.gz").shape == (8, 8, 8)


def test_mgz_is_read(tmp_path):
    data = volume((6, 7, 8))
    nib.save(nib.MGHImage(data, OBLIQUE), tmp_path / "v.mgz")
    array, affine = load_volume(tmp_path / "v.mgz")
    np.testing.assert_array_equal(array, data)
    np.testing.assert_allclose(affine, OBLIQUE, atol=1e-5)


def _sitk_image(data):
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(data.transpose(2, 1, 0))  # SimpleITK arrays are z, y, x
    image.SetSpacing((1.5, 2.0, 2.5))
    image.SetOrigin((10.0, -20.0, 30.0))
    angle = np.deg2rad(20)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    image.SetDirection(tuple(rotation.ravel()))
    return image


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_simpleitk_formats_map_lps_to_ras(tmp_path, suffix):
    """Independent references: ITK's own index->LPS point, and ITK's NIfTI writer read by nibabel."""
    import SimpleITK as sitk

    data = volume((5, 6, 7))
    image = _sitk_image(data)
    sitk.WriteImage(image, str(tmp_path / f"v{suffix}"))
    sitk.WriteImage(image, str(tmp_path / "reference.nii.gz"))
    array, affine = load_volume(tmp_path / f"v{suffix}")
    np.testing.assert_array_equal(array, data)
    for index in [(0, 0, 0), (4, 5, 6), (1, 3, 2)]:
        x, y, z = image.TransformIndexToPhysicalPoint(index)  # LPS
        np.testing.assert_allclose(affine @ [*index, 1], [-x, -y, z, 1], atol=1e-9)
    reference = nib.load(tmp_path / "reference.nii.gz")
    np.testing.assert_allclose(affine, reference.affine, atol=1e-4)
    np.testing.assert_array_equal(array, reference.get_fdata(dtype=np.float32))
    info = check_volume(tmp_path / f"v{suffix}")
    assert info.voxel_mm == pytest.approx((1.5, 2.0, 2.5)) and info.orientation == "LPS"


def test_volume_info_describes_the_file(tmp_path):
    data = (volume((8, 9, 10)) * 10).astype(np.int16)
    affine = np.diag([-2.0, 3.0, 4.0, 1.0])
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "v.nii.gz")
    info = check_volume(tmp_path / "v.nii.gz")
    assert info.shape == (8, 9, 10)
    assert info.voxel_mm == pytest.approx((2.0, 3.0, 4.0))
    assert info.orientation == "LAS"
    assert info.dtype == "int16"
    np.testing.assert_allclose(info.affine, affine)
    assert info.value_range == (float(data.min()), float(data.max()))
    assert info.warnings == ()


def test_simpleitk_reader_for_monai(tmp_path):
    import SimpleITK as sitk
    from monai.transforms import LoadImage

    from neuro_ssl.data.io import SimpleITKReader

    data = volume((5, 6, 7))
    sitk.WriteImage(_sitk_image(data), str(tmp_path / "v.nrrd"))
    loaded = LoadImage(reader=SimpleITKReader(), image_only=True)(str(tmp_path / "v.nrrd"))
    _, affine = load_volume(tmp_path / "v.nrrd")
    np.testing.assert_array_equal(np.asarray(loaded), data)
    np.testing.assert_allclose(np.asarray(loaded.affine), affine, atol=1e-6)


# ------------------------------------------------------------------------------- writing

def test_save_nifti_round_trip_sets_qform_and_sform(tmp_path):
    data = volume().astype(np.float64)
    out = save_nifti(data, OBLIQUE, tmp_path / "sub" / "map.nii.gz")
    assert out == tmp_path / "sub" / "map.nii.gz"
    img = nib.load(out)
    assert img.get_data_dtype() == np.float32
    assert int(img.header["sform_code"]) == 1 and int(img.header["qform_code"]) == 1
    np.testing.assert_allclose(img.get_sform(), OBLIQUE, atol=1e-5)
    np.testing.assert_allclose(img.get_qform(), OBLIQUE, atol=1e-4)
    assert img.header.get_xyzt_units() == ("mm", "sec")
    array, affine = load_volume(out)
    np.testing.assert_allclose(array, data.astype(np.float32))
    assert [p.name for p in out.parent.iterdir()] == ["map.nii.gz"]  # no temporary left behind


def test_save_nifti_keeps_masks_integer_and_copies_like(tmp_path):
    source = nib.Nifti1Image(volume(), OBLIQUE)
    source.header.set_xyzt_units("mm", "msec")
    source.set_sform(OBLIQUE, code=2)
    source.set_qform(OBLIQUE, code=2)
    nib.save(source, tmp_path / "scan.nii.gz")
    mask = volume() > 100
    out = save_nifti(mask, OBLIQUE, tmp_path / "mask.nii", like=tmp_path / "scan.nii.gz")
    img = nib.load(out)
    assert img.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asanyarray(img.dataobj), mask.astype(np.uint8))
    assert img.header.get_xyzt_units() == ("mm", "msec")
    assert int(img.header["sform_code"]) == 2 and int(img.header["qform_code"]) == 2
    labels = np.full((4, 4, 4), 300, dtype=np.int64)
    assert nib.load(save_nifti(labels, np.eye(4), tmp_path / "labels.nii.gz")).get_data_dtype() == np.int16


def test_save_nifti_refuses_bad_affine_and_suffix(tmp_path):
    with pytest.raises(ImageError, match="absurd affine"):
        save_nifti(volume(), np.diag([2.0, 0.0, 2.0, 1.0]), tmp_path / "bad.nii.gz")
    with pytest.raises(ImageError, match=r"\.nii or \.nii\.gz"):
        save_nifti(volume(), np.eye(4), tmp_path / "bad.mgz")
    assert list(tmp_path.iterdir()) == []


# -------------------------------------------------------------------------- broken files

def _zero_dim(h):
    h["dim"][2] = 0


def _srow_zero(h):
    h["srow_y"] = [0, 0, 0, 0]
    h["sform_code"] = 1
    h["qform_code"] = 0


def _srow_nan(h):
    h["srow_x"][0] = np.nan


def _collinear(h):
    h["srow_x"] = [2, 2, 0, 0]  # the first two voxel axes point the same way
    h["srow_y"] = [2, 2, 0, 0]
    h["sform_code"] = 1
    h["qform_code"] = 0


def _pixdim_zero(h):
    h["pixdim"][1:4] = 0
    h["sform_code"] = 0
    h["qform_code"] = 1


GOOD = np.random.default_rng(1).normal(100, 20, size=(8, 8, 8)).astype(np.float32)
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


def _with(values, where=(1, 2, 3)):
    data = GOOD.copy()
    data[where] = values
    return data


BROKEN = {
    # name: (file name, bytes factory, expected message part)
    "truncated_gz": ("t.nii.gz", lambda: gzip.compress(nifti_bytes(GOOD, AFFINE))[:-300], "truncated gzip stream"),
    "bad_crc": ("c.nii.gz", lambda: _flip_crc(gzip.compress(nifti_bytes(GOOD, AFFINE))), "CRC check failed"),
    "gzip_of_garbage": ("g.nii.gz", lambda: gzip.compress(os.urandom(3000)), "not a NIfTI file"),
    "not_gzip": ("n.nii.gz", lambda: b"just some text, not compressed\n" * 20, "not a gzip file"),
    "text_renamed": ("t.nii", lambda: b"subject_id,age\nA,70\n" * 30, "not a NIfTI file (the file is text)"),
    "truncated_nii": ("t.nii", lambda: nifti_bytes(GOOD, AFFINE)[:-500], "truncated data"),
    "empty": ("e.nii.gz", lambda: b"", "empty file"),
    "zero_dim": ("z.nii.gz", lambda: gzip.compress(nifti_bytes(GOOD, AFFINE, _zero_dim)), "zero dimension (8x0x8)"),
    "two_d": ("d.nii.gz", lambda: gzip.compress(nifti_bytes(GOOD[:, :, 0], AFFINE)), "2D image (8x8)"),
    "single_slice": ("s.nii.gz", lambda: gzip.compress(nifti_bytes(GOOD[:, :, :1], AFFINE)), "2D image (8x8x1)"),
    "four_d": ("f.nii.gz", lambda: gzip.compress(nifti_bytes(np.stack([GOOD] * 3, -1), AFFINE)), "4D image with 3 volumes"),
    "nan": ("nan.nii.gz", lambda: gzip.compress(nifti_bytes(_with(np.nan), AFFINE)), "1 NaN voxel of 512"),
    "inf": ("inf.nii.gz", lambda: gzip.compress(nifti_bytes(_with(np.inf), AFFINE)), "1 Inf voxel of 512"),
    "all_zero": ("zero.nii.gz", lambda: gzip.compress(nifti_bytes(np.zeros((8, 8, 8), np.float32), AFFINE)), "all voxels are zero"),
    "constant": ("k.nii.gz", lambda: gzip.compress(nifti_bytes(np.full((8, 8, 8), 7.0, np.float32), AFFINE)), "constant image (every voxel is 7)"),
    "zero_scale": ("a.nii.gz", lambda: gzip.compress(nifti_bytes(GOOD, AFFINE, _srow_zero)), "absurd affine (voxel size 2x0x2"),
    "nan_affine": ("b.nii.gz", lambda: gzip.compress(nifti_bytes(GOOD, AFFINE, _srow_nan)), "absurd affine (NaN or Inf"),
    "collinear": ("l.nii.gz", lambda: gzip.compress(nifti_bytes(GOOD, AFFINE, _collinear)), "not invertible"),
    "pixdim_zero": ("p.nii.gz", lambda: gzip.compress(nifti_bytes(GOOD, AFFINE, _pixdim_zero)), "absurd affine (voxel size 0x0x0"),
}


def _flip_crc(raw: bytes) -> bytes:
    return raw[:-8] + bytes([raw[-8] ^ 0xFF]) + raw[-7:]


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_check_volume_names_file_and_problem(tmp_path, case):
    name, factory, expected = BROKEN[case]
    path = write(tmp_path / name, factory(), compress=False)
    with pytest.raises(ImageError) as info:
        check_volume(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and expected in message
    assert "\n" not in message


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageError, match="file not found"):
        check_volume(tmp_path / "absent.nii.gz")
    with pytest.raises(ImageError, match="is a folder"):
        check_volume(tmp_path)
    with pytest.raises(ImageError, match="truncated gzip stream"):
        load_volume(write(tmp_path / "t.nii.gz", BROKEN["truncated_gz"][1](), compress=False))


def test_unreadable_permissions(tmp_path):
    """chmod 000 blocks reading for a normal user; root reads anyway, and then the file is fine."""
    path = write(tmp_path / "locked.nii.gz", nifti_bytes(GOOD, AFFINE))
    path.chmod(0)
    try:
        root_can_read = os.access(path, os.R_OK)
        if root_can_read:
            assert check_volume(path).shape == (8, 8, 8)
        else:
            with pytest.raises(ImageError, match="permission denied"):
                check_volume(path)
    finally:
        path.chmod(0o644)


def test_header_without_orientation_is_a_warning(tmp_path):
    def no_codes(h):
        h["sform_code"] = 0
        h["qform_code"] = 0

    path = write(tmp_path / "v.nii.gz", nifti_bytes(GOOD, AFFINE, no_codes))
    info = check_volume(path)
    assert any("no sform/qform" in w for w in info.warnings)


def test_save_nifti_like_a_non_nifti_reference_uses_defaults(tmp_path):
    import SimpleITK as sitk

    sitk.WriteImage(_sitk_image(volume((5, 6, 7))), str(tmp_path / "scan.nrrd"))
    out = save_nifti(volume((5, 6, 7)), OBLIQUE, tmp_path / "map.nii.gz", like=tmp_path / "scan.nrrd")
    header = nib.load(out).header
    assert int(header["sform_code"]) == 1 and header.get_xyzt_units() == ("mm", "sec")


def test_any_reader_library_failure_is_one_line_naming_the_file(tmp_path, monkeypatch):
    """Issue 11: an RGB file once escaped as a TypeError traceback from validate. Whatever nibabel
    raises while decoding voxels becomes one ImageError line naming the file."""
    import nibabel.arrayproxy

    path = tmp_path / "odd.img"
    nib.save(nib.AnalyzeImage(volume(), np.eye(4)), str(path))

    def explode(self, *args, **kwargs):
        raise TypeError("Cannot cast array data from dtype([('R', 'u1')]) to dtype('float32')")

    monkeypatch.setattr(nibabel.arrayproxy.ArrayProxy, "__array__", explode)
    with pytest.raises(ImageError) as info:
        check_volume(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "TypeError" in message and "\n" not in message
