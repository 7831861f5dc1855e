"""Model grid -> native grid, checked against a function of WORLD coordinates.

A map that is a linear function of world millimetres is reproduced exactly by trilinear
interpolation, so after mapping back every native voxel must hold f(its own world position):
an independent check of the voxel-to-voxel algebra for LAS, LPS, oblique, anisotropic and
cropped grids (and zero where the model grid does not reach).
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from neuro_ssl.interpret.native import native_to_model_voxels, to_native, write_saliency


def _rotation(deg_z: float, deg_x: float) -> np.ndarray:
    z, x = np.deg2rad(deg_z), np.deg2rad(deg_x)
    rz = np.array([[np.cos(z), -np.sin(z), 0], [np.sin(z), np.cos(z), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(x), -np.sin(x)], [0, np.sin(x), np.cos(x)]])
    return rz @ rx


def _affine(linear: np.ndarray, origin) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = linear
    out[:3, 3] = origin
    return out


def _world(affine, shape) -> np.ndarray:
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), axis=-1).reshape(-1, 3)
    return (ijk @ affine[:3, :3].T + affine[:3, 3]).reshape(*shape, 3)


def _f(xyz):
    """A positive linear function of world mm (trilinear interpolation reproduces it exactly)."""
    return 100.0 + 0.7 * xyz[..., 0] - 0.4 * xyz[..., 1] + 0.25 * xyz[..., 2]


# The model grid: RAS, 3 mm, 24^3, covering about -36..33 mm on each axis.
MODEL_AFFINE = _affine(np.diag([3.0, 3.0, 3.0]), (-36.0, -36.0, -36.0))
MODEL_SHAPE = (24, 24, 24)

NATIVE_GRIDS = {
    "LAS_1.5mm": (_affine(np.diag([-1.5, 1.5, 1.5]), (20.0, -25.0, -22.0)), (30, 32, 28)),
    "LPS_1mm": (_affine(np.diag([-1.0, -1.0, 1.0]), (15.0, 18.0, -20.0)), (30, 36, 40)),
    "oblique_anisotropic": (_affine(_rotation(20, 10) @ np.diag([1.0, 1.2, 2.0]), (-10.0, -14.0, -12.0)), (22, 20, 14)),
    "permuted_axes": (_affine(np.array([[0, 0, 2.0], [2.0, 0, 0], [0, -2.0, 0]]), (-20.0, -20.0, 20.0)), (20, 18, 16)),
}


@pytest.mark.parametrize("name", sorted(NATIVE_GRIDS))
def test_linear_world_function_survives_the_round_trip(name):
    native_affine, native_shape = NATIVE_GRIDS[name]
    model_map = _f(_world(MODEL_AFFINE, MODEL_SHAPE)).astype(np.float32)
    native = to_native(model_map, MODEL_AFFINE, native_shape, native_affine)
    assert native.shape == native_shape and native.dtype == np.float32
    world = _world(native_affine, native_shape)
    vox = (world - MODEL_AFFINE[:3, 3]) / 3.0  # independent: the model grid is axis-aligned RAS
    inside = np.all((vox >= 0) & (vox <= np.array(MODEL_SHAPE) - 1), axis=-1)
    assert inside.mean() > 0.5
    np.testing.assert_allclose(native[inside], _f(world)[inside], rtol=1e-5)


def test_cropped_field_of_view_is_zero_outside_the_model_grid():
    """A native grid reaching far beyond the model's field of view: zero there, exact inside."""
    native_affine = _affine(np.diag([-1.5, 1.5, 1.5]), (60.0, -80.0, -30.0))
    native_shape = (90, 60, 40)
    model_map = _f(_world(MODEL_AFFINE, MODEL_SHAPE)).astype(np.float32)
    native = to_native(model_map, MODEL_AFFINE, native_shape, native_affine)
    world = _world(native_affine, native_shape)
    vox = (world - MODEL_AFFINE[:3, 3]) / 3.0
    inside = np.all((vox >= 0) & (vox <= np.array(MODEL_SHAPE) - 1), axis=-1)
    far = np.any((vox < -1) | (vox > np.array(MODEL_SHAPE)), axis=-1)
    assert far.mean() > 0.3 and inside.mean() > 0.1
    assert np.all(native[far] == 0)
    np.testing.assert_allclose(native[inside], _f(world)[inside], rtol=1e-5)


def test_nearest_puts_one_hot_voxel_at_its_world_position():
    model_map = np.zeros(MODEL_SHAPE, dtype=np.float32)
    model_map[5, 17, 9] = 1.0
    hot_world = MODEL_AFFINE @ np.array([5, 17, 9, 1.0])
    native_affine, native_shape = _affine(np.diag([-1.0, -1.0, 1.0]), (30.0, 30.0, -40.0)), (64, 64, 80)
    native = to_native(model_map, MODEL_AFFINE, native_shape, native_affine, order=0)
    hot = np.argwhere(native > 0)
    centre_world = native_affine @ np.append(hot.mean(axis=0), 1.0)
    np.testing.assert_allclose(centre_world[:3], hot_world[:3], atol=0.6)
    assert len(hot) == 27  # a 3 mm voxel covers 3x3x3 native 1 mm voxels


def test_voxel_map_is_inverse_model_times_native():
    native_affine = NATIVE_GRIDS["oblique_anisotropic"][0]
    vox = native_to_model_voxels(MODEL_AFFINE, native_affine)
    point = np.array([3.0, 4.0, 5.0, 1.0])
    np.testing.assert_allclose(MODEL_AFFINE @ (vox @ point), native_affine @ point, atol=1e-9)
    with pytest.raises(ValueError, match="invertible"):
        native_to_model_voxels(np.zeros((4, 4)), native_affine)


def test_cubic_never_goes_negative():
    model_map = np.zeros(MODEL_SHAPE, dtype=np.float32)
    model_map[10:12, 10:12, 10:12] = 1.0
    native = to_native(model_map, MODEL_AFFINE, (40, 40, 40), _affine(np.eye(3) * 1.3, (-20, -20, -20)), order=3)
    assert native.min() >= 0 and native.max() > 0.5


def test_write_saliency_keeps_the_scan_affine_shape_and_header(tmp_path):
    native_affine, native_shape = NATIVE_GRIDS["oblique_anisotropic"]
    scan = nib.Nifti1Image(np.random.default_rng(0).random(native_shape).astype(np.int16), native_affine)
    scan.header.set_sform(native_affine, code=4)
    scan.header.set_qform(native_affine, code=2)
    nib.save(scan, tmp_path / "scan.nii.gz")
    saliency = np.random.default_rng(1).random(native_shape)
    out = write_saliency(saliency, native_affine, tmp_path / "maps" / "s_saliency.nii.gz", like=tmp_path / "scan.nii.gz")
    back = nib.load(out)
    assert back.shape == native_shape and back.get_data_dtype() == np.float32
    assert np.allclose(back.affine, native_affine, atol=1e-5)
    assert int(back.header["sform_code"]) == 4
    np.testing.assert_allclose(back.get_fdata(), saliency.astype(np.float32), rtol=1e-6)


def test_write_saliency_refuses_a_map_that_cannot_overlay(tmp_path):
    from neuro_ssl.errors import ImageError

    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6), np.float32), np.eye(4)), tmp_path / "scan.nii")
    with pytest.raises(ImageError, match="shape"):
        write_saliency(np.zeros((4, 5, 7)), np.eye(4), tmp_path / "m.nii.gz", like=tmp_path / "scan.nii")
