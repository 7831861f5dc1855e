"""Deterministic preprocessing: geometry (world coordinates survive), readers, normalization, bad files."""

from __future__ import annotations

import subprocess
import sys
import warnings

import nibabel as nib
import numpy as np
import pytest
from scipy.ndimage import map_coordinates

from neuro_ssl.data.transforms import (
    PreprocessConfig, Preprocessor, normalize_intensity, otsu_threshold,
)
from neuro_ssl.errors import ConfigError, ImageError

ZOOMS = np.array([1.2, 0.9, 2.5])  # anisotropic voxels
SHAPE = (40, 48, 20)
# model grid 2 mm, 16 x 30 x 20: crops x and z, pads y of the 48 x 43 x 50 mm native field of view
CONFIG = PreprocessConfig(spacing_mm=2.0, shape=(16, 30, 20), normalization="none")


def rotation(deg_z: float, deg_x: float) -> np.ndarray:
    a, b = np.radians(deg_z), np.radians(deg_x)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx


ORIENTATIONS = {
    "RAS": np.eye(3),
    "LAS": np.diag([-1.0, 1, 1]),
    "LPS": np.diag([-1.0, -1, 1]),
    "oblique": rotation(20, 10),
}


def native_affine(name: str) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = ORIENTATIONS[name] @ np.diag(ZOOMS)
    affine[:3, 3] = [-30.0, 20.0, -15.0]
    return affine


def blob_volume(affine, shape, world_mm, sigma_mm=4.0) -> np.ndarray:
    """An isotropic Gaussian (in mm) centred on ``world_mm``, sampled on the native grid."""
    ijk = np.indices(shape).reshape(3, -1)
    world = affine[:3, :3] @ ijk + affine[:3, 3:4]
    d2 = ((world - np.asarray(world_mm)[:, None]) ** 2).sum(0)
    return np.exp(-d2 / (2 * sigma_mm**2)).reshape(shape).astype(np.float32)


def world_point(affine) -> np.ndarray:
    """A point near the centre of the native field of view, off any voxel centre."""
    return affine[:3, :3] @ (np.array(SHAPE) / 2 + [1.3, -2.6, 0.7]) + affine[:3, 3]


def write_blob(path, affine, world_mm):
    nib.save(nib.Nifti1Image(blob_volume(affine, SHAPE, world_mm), affine), str(path))
    return path


def centroid(volume: np.ndarray) -> np.ndarray:
    weights = np.clip(volume - 0.5 * volume.max(), 0, None)
    ijk = np.indices(volume.shape).reshape(3, -1)
    return (ijk * weights.reshape(-1)).sum(1) / weights.sum()


def to_world(affine, ijk) -> np.ndarray:
    return affine[:3, :3] @ np.asarray(ijk, dtype=float) + affine[:3, 3]


def assert_lands_on(image, affine, point, spacing_mm=2.0):
    """The blob's centre (weighted centroid) maps to ``point`` within 0.3 mm, far inside half a
    voxel; its brightest voxel is the nearest one, give or take the interpolation's 0.1 voxel."""
    assert np.linalg.norm(to_world(affine, centroid(image)) - point) < 0.3
    peak = np.unravel_index(np.argmax(image), image.shape)
    assert np.all(np.abs(to_world(affine, peak) - point) <= 0.6 * spacing_mm)


@pytest.mark.parametrize("name", list(ORIENTATIONS))
def test_point_at_known_world_coordinate_lands_on_its_voxel(tmp_path, name):
    affine = native_affine(name)
    point = world_point(affine)
    path = write_blob(tmp_path / f"{name}.nii.gz", affine, point)
    out = Preprocessor(CONFIG)([str(path)])
    image, model_affine = out["image"][0], out["affine"]
    assert image.shape == CONFIG.shape and image.dtype == np.float32
    np.testing.assert_allclose(np.abs(np.diag(model_affine)[:3]), 2.0)  # axis-aligned RAS grid
    np.testing.assert_allclose(model_affine[:3, :3], np.diag([2.0, 2.0, 2.0]), atol=1e-9)
    assert_lands_on(image, model_affine, point)
    np.testing.assert_allclose(out["native_affine"], nib.load(str(path)).affine)
    assert out["native_shape"] == SHAPE


def native_from_model(model, model_affine, native_affine_, native_shape):
    """Resample a model-grid map onto the native grid with only the two affines (trilinear)."""
    ijk = np.indices(native_shape).reshape(3, -1).astype(float)
    vox = np.linalg.inv(model_affine) @ native_affine_ @ np.vstack([ijk, np.ones(ijk.shape[1])])
    return map_coordinates(model, vox[:3], order=1, mode="constant", cval=0.0).reshape(native_shape)


@pytest.mark.parametrize("name", ["LPS", "oblique"])
def test_round_trip_native_model_native_keeps_the_blob(tmp_path, name):
    affine = native_affine(name)
    point = world_point(affine)
    path = write_blob(tmp_path / "blob.nii.gz", affine, point)
    out = Preprocessor(CONFIG)([str(path)])
    back = native_from_model(out["image"][0], out["affine"], out["native_affine"], out["native_shape"])
    truth_ijk = np.linalg.solve(affine, np.r_[point, 1.0])[:3]
    assert np.linalg.norm(to_world(affine, centroid(back)) - point) < 0.5
    peak = np.array(np.unravel_index(np.argmax(back), back.shape))
    assert np.all(np.abs(peak - truth_ijk) <= 1.0)


def test_preprocessing_is_deterministic_and_warning_free(tmp_path):
    affine = native_affine("oblique")
    path = write_blob(tmp_path / "x.nii.gz", affine, world_point(affine))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. Orientationd's FutureWarning without labels=None
        a = Preprocessor(PreprocessConfig(spacing_mm=3, shape=(16, 16, 16)))([str(path)])
    b = Preprocessor(PreprocessConfig(spacing_mm=3, shape=(16, 16, 16)))([str(path)])
    np.testing.assert_array_equal(a["image"], b["image"])


def test_chain_pickles_for_spawned_workers(tmp_path):
    import pickle

    from neuro_ssl.data.transforms import build_preprocess

    affine = native_affine("LAS")
    path = write_blob(tmp_path / "x.nii.gz", affine, world_point(affine))
    chain = build_preprocess(CONFIG)
    copy = pickle.loads(pickle.dumps(chain))
    np.testing.assert_array_equal(chain({"image": str(path)})["image"].numpy(), copy({"image": str(path)})["image"].numpy())


def sitk_image(array_xyz, spacing, origin, direction):
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(array_xyz, (2, 1, 0))))
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetOrigin(tuple(float(o) for o in origin))
    image.SetDirection(tuple(float(d) for d in np.asarray(direction).reshape(-1)))
    return image


@pytest.mark.parametrize("suffix", [".mha", ".nrrd"])
def test_simpleitk_formats_match_itks_own_nifti_and_world_points(tmp_path, suffix):
    import SimpleITK as sitk

    from neuro_ssl.data.readers import SimpleITKReader

    direction = rotation(15, -8)
    origin_lps = np.array([12.0, -30.0, 25.0])
    ijk = np.array(SHAPE) / 2 + [1.3, -2.6, 0.7]
    probe = sitk_image(np.zeros(SHAPE, np.float32), ZOOMS, origin_lps, direction)
    point_lps = np.array(probe.TransformContinuousIndexToPhysicalPoint(tuple(ijk)))
    point_ras = point_lps * [-1, -1, 1]
    affine_ras = np.diag([-1.0, -1, 1, 1]) @ np.block([[direction @ np.diag(ZOOMS), origin_lps[:, None]],
                                                      [np.zeros((1, 3)), np.ones((1, 1))]])
    data = blob_volume(affine_ras, SHAPE, point_ras)
    image = sitk_image(data, ZOOMS, origin_lps, direction)
    sitk.WriteImage(image, str(tmp_path / f"x{suffix}"))
    sitk.WriteImage(image, str(tmp_path / "itk.nii.gz"))  # ITK's own LPS -> RAS conversion

    reader = SimpleITKReader()
    array, meta = reader.get_data(reader.read(str(tmp_path / f"x{suffix}")))
    reference = nib.load(str(tmp_path / "itk.nii.gz"))
    np.testing.assert_allclose(meta["affine"], reference.affine, atol=1e-4)
    np.testing.assert_array_equal(array, np.asarray(reference.dataobj))

    out = Preprocessor(CONFIG)([str(tmp_path / f"x{suffix}")])
    via_nifti = Preprocessor(CONFIG)([str(tmp_path / "itk.nii.gz")])
    np.testing.assert_allclose(out["image"], via_nifti["image"], atol=1e-4)
    assert_lands_on(out["image"][0], out["affine"], point_ras)


def test_mgz_reads_like_nifti(tmp_path):
    affine = native_affine("LAS")
    data = blob_volume(affine, SHAPE, world_point(affine))
    nib.save(nib.MGHImage(data, affine), str(tmp_path / "x.mgz"))
    nib.save(nib.Nifti1Image(data, affine), str(tmp_path / "x.nii"))
    a = Preprocessor(CONFIG)([str(tmp_path / "x.mgz")])
    b = Preprocessor(CONFIG)([str(tmp_path / "x.nii")])
    np.testing.assert_allclose(a["image"], b["image"], atol=1e-5)
    np.testing.assert_allclose(a["affine"], b["affine"], atol=1e-5)


def test_modalities_share_the_first_channels_grid(tmp_path):
    """PET with another field of view and voxel size lands voxel for voxel on the T1w grid."""
    t1_affine = native_affine("RAS")
    point = world_point(t1_affine)
    pet_affine = np.diag([-2.5, 2.0, 3.0, 1.0])
    pet_affine[:3, 3] = point - pet_affine[:3, :3] @ [9.3, 11.7, 7.2]
    write_blob(tmp_path / "t1.nii.gz", t1_affine, point)
    nib.save(nib.Nifti1Image(3.0 * blob_volume(pet_affine, (20, 24, 16), point, 6.0) + 0.5, pet_affine),
             str(tmp_path / "pet.nii.gz"))
    cfg = PreprocessConfig(spacing_mm=2.0, shape=(16, 30, 20), modalities=("T1w", "FDG"), normalization="none")
    out = Preprocessor(cfg)([str(tmp_path / "t1.nii.gz"), str(tmp_path / "pet.nii.gz")])
    assert out["image"].shape == (2, 16, 30, 20)
    for channel in out["image"]:
        assert np.linalg.norm(to_world(out["affine"], centroid(channel)) - point) < 0.6


# ----- intensity normalization -----

def brain_phantom(rng, shape=(32, 32, 32)) -> np.ndarray:
    """Dark noisy background, a bright ellipsoid with a darker core: a crude T1."""
    x, y, z = np.indices(shape) - (np.array(shape)[:, None, None, None] - 1) / 2
    r = np.sqrt((x / 12) ** 2 + (y / 14) ** 2 + (z / 11) ** 2)
    data = np.where(r < 1, 600.0, 0.0) + np.where(r < 0.4, -250.0, 0.0)
    return (data + rng.normal(20, 8, shape)).astype(np.float32)


def test_otsu_matches_simpleitk():
    import SimpleITK as sitk
    import torch

    rng = np.random.default_rng(0)
    data = brain_phantom(rng)
    ours = otsu_threshold(torch.from_numpy(data))
    clipped = np.minimum(data, np.quantile(data, 0.999)).astype(np.float32)
    f = sitk.OtsuThresholdImageFilter()
    f.SetNumberOfHistogramBins(256)
    f.Execute(sitk.GetImageFromArray(clipped))
    bin_width = (clipped.max() - clipped.min()) / 256
    assert abs(ours - f.GetThreshold()) <= 1.5 * bin_width


def reference_mask(data: np.ndarray) -> np.ndarray:
    import SimpleITK as sitk

    clipped = np.minimum(data, np.quantile(data, 0.999)).astype(np.float32)
    f = sitk.OtsuThresholdImageFilter()
    f.SetNumberOfHistogramBins(256)
    f.Execute(sitk.GetImageFromArray(clipped))
    return data > f.GetThreshold()


@pytest.mark.parametrize("method", ["zscore", "percentile", "suvr"])
def test_normalization_in_the_foreground(method):
    import torch

    rng = np.random.default_rng(1)
    data = brain_phantom(rng)
    out = normalize_intensity(torch.from_numpy(data), method).numpy().astype(np.float64)
    fg = out[reference_mask(data)]
    if method == "zscore":
        assert abs(fg.mean()) < 1e-3 and abs(fg.std(ddof=1) - 1) < 1e-3
    elif method == "percentile":
        np.testing.assert_allclose(np.percentile(fg, [1, 99]), [0, 1], atol=1e-4)
    else:
        assert abs(fg.mean() - 1) < 1e-4
    # a site's scanner gain and offset are removed (suvr: gain only, offset is physical uptake)
    offset = 0.0 if method == "suvr" else 300.0
    rescaled = normalize_intensity(torch.from_numpy(data * 3.7 + offset), method).numpy()
    np.testing.assert_allclose(rescaled, out, atol=2e-4)


def test_auto_normalization_picks_by_modality():
    cfg = PreprocessConfig()
    assert cfg.normalization_for("T1w") == "zscore"
    assert cfg.normalization_for("FDG") == "suvr"
    assert cfg.normalization_for("av45") == "suvr"
    assert cfg.normalization_for("PET") == "suvr"
    assert PreprocessConfig(normalization="percentile").normalization_for("FDG") == "percentile"


# ----- configuration -----

def test_config_round_trip_and_key():
    cfg = PreprocessConfig(spacing_mm=(1.5, 1.5, 2), shape=(64, 64, 48), modalities=("T1w", "FDG"))
    again = PreprocessConfig.from_dict(cfg.to_dict())
    assert again == cfg and again.key() == cfg.key()
    assert PreprocessConfig.from_dict({"spacing_mm": 2, "shape": 32}).shape == (32, 32, 32)
    variants = [PreprocessConfig(spacing_mm=3), PreprocessConfig(shape=(96, 112, 97)),
                PreprocessConfig(normalization="percentile"), PreprocessConfig(modalities=("FDG",))]
    keys = {PreprocessConfig().key()} | {v.key() for v in variants}
    assert len(keys) == 5
    code = "from neuro_ssl.data.transforms import PreprocessConfig as P; print(P(spacing_mm=(1.5,1.5,2), " \
           "shape=(64,64,48), modalities=('T1w','FDG')).key())"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == cfg.key()  # stable across processes (no hash randomization)


@pytest.mark.parametrize("kwargs, words", [
    ({"spacing_mm": (0, 1, 1)}, "spacing_mm"), ({"shape": (32, 32)}, "shape"), ({"shape": (32.5, 32, 32)}, "whole"),
    ({"normalization": "minmax"}, "normalization"), ({"modalities": ()}, "modalities"),
    ({"modalities": ("T1w", "t1w")}, "repeat"),
])
def test_config_rejects_bad_values(kwargs, words):
    with pytest.raises(ConfigError, match=words):
        PreprocessConfig(**kwargs)


def test_config_unknown_key_suggests():
    with pytest.raises(ConfigError, match="did you mean 'spacing_mm'"):
        PreprocessConfig.from_dict({"spacing": 2})


# ----- bad files: one ImageError line naming the file -----

def _bad_files(tmp_path):
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    rng = np.random.default_rng(0)
    good = rng.random((12, 12, 12)).astype(np.float32)
    cases = {}
    cases["four_d"] = (nib.Nifti1Image(rng.random((12, 12, 12, 3)).astype(np.float32), affine), "3 volumes")
    nan = good.copy()
    nan[3, 3, 3] = np.nan
    cases["nan"] = (nib.Nifti1Image(nan, affine), "NaN voxel")
    cases["constant"] = (nib.Nifti1Image(np.full((12, 12, 12), 7, np.float32), affine), "constant")
    cases["flat"] = (nib.Nifti1Image(rng.random((12, 12)).astype(np.float32), affine), "2D image")
    zero_scale = nib.Nifti1Image(good, affine)
    zero_scale.set_qform(None, code=0)
    zero_scale.set_sform(np.diag([2.0, 0.0, 2.0, 1.0]), code=1)  # a header that a broken export writes
    cases["zero_scale"] = (zero_scale, "affine")
    paths = {}
    for name, (img, words) in cases.items():
        path = tmp_path / f"{name}.nii.gz"
        nib.save(img, str(path))
        paths[name] = (path, words)
    (tmp_path / "text.nii").write_text("subject,age\n1,70\n")
    paths["text"] = (tmp_path / "text.nii", "not a NIfTI file")
    paths["missing"] = (tmp_path / "missing.nii.gz", "file not found")
    (tmp_path / "table.csv").write_text("a\n")
    paths["suffix"] = (tmp_path / "table.csv", "unknown image format")
    return paths


def test_bad_files_raise_one_line_image_errors(tmp_path):
    """The chain refuses each file with the line validate's check_volume gives (one reader)."""
    from neuro_ssl.data.io import check_volume

    prep = Preprocessor(PreprocessConfig(spacing_mm=4, shape=(8, 8, 8)))
    for name, (path, words) in _bad_files(tmp_path).items():
        with pytest.raises(ImageError) as info:
            prep([str(path)])
        message = str(info.value)
        assert str(path) in message and words in message and "\n" not in message, (name, message)
        with pytest.raises(ImageError) as same:
            check_volume(path)
        assert str(same.value) == message


def test_native_affine_is_the_files_own_even_when_pixdim_disagrees(tmp_path):
    """MONAI's NIfTI reader would swap in the qform here; saliency needs nibabel's affine."""
    data = np.random.default_rng(0).random((12, 12, 12)).astype(np.float32)
    img = nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0]))
    sform = np.diag([1.5, 1.5, 1.5, 1.0])
    sform[:3, 3] = [-9.0, -9.0, -9.0]
    img.set_sform(sform, code=2)
    nib.save(img, str(tmp_path / "x.nii.gz"))
    reference = nib.load(str(tmp_path / "x.nii.gz"))
    assert np.allclose(reference.affine, sform) and np.allclose(reference.header.get_zooms(), 2.0)
    out = Preprocessor(PreprocessConfig(spacing_mm=4, shape=(8, 8, 8)))([str(tmp_path / "x.nii.gz")])
    np.testing.assert_allclose(out["native_affine"], reference.affine)


def test_single_volume_4d_is_fine(tmp_path):
    data = np.random.default_rng(0).random((12, 12, 12, 1)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])), str(tmp_path / "x.nii.gz"))
    out = Preprocessor(PreprocessConfig(spacing_mm=4, shape=(8, 8, 8)))([str(tmp_path / "x.nii.gz")])
    assert out["image"].shape == (1, 8, 8, 8) and out["native_shape"] == (12, 12, 12)


# ----- the brain mask and the zero background (mask_background, the default) -----

def phantom_mask(shape=(32, 32, 32)) -> np.ndarray:
    x, y, z = np.indices(shape) - (np.array(shape)[:, None, None, None] - 1) / 2
    return np.sqrt((x / 12) ** 2 + (y / 14) ** 2 + (z / 11) ** 2) < 1


@pytest.mark.parametrize("method", ["zscore", "percentile", "suvr", "none"])
def test_masked_normalization_uses_inside_statistics_and_zeroes_outside(method):
    import torch

    data = brain_phantom(np.random.default_rng(2)).astype(np.float64)
    mask = phantom_mask()
    out = normalize_intensity(torch.from_numpy(data.astype(np.float32)), method, torch.from_numpy(mask)).numpy()
    assert np.all(out[~mask] == 0)
    np.testing.assert_array_equal(out != 0, mask)  # the mask is exactly the non-zero voxels
    inside = data[mask]  # float64 references
    expected = {"zscore": (inside - inside.mean()) / inside.std(ddof=1),
                "percentile": (inside - np.percentile(inside, 1)) / (np.percentile(inside, 99) - np.percentile(inside, 1)),
                "suvr": inside / inside.mean(), "none": inside}[method]
    np.testing.assert_allclose(out[mask], expected, rtol=1e-4, atol=1e-4)


def test_a_voxel_at_the_mean_stays_inside_the_mask():
    import torch

    from neuro_ssl.data.transforms import INSIDE_ZERO

    data = np.zeros((8, 8, 8), dtype=np.float32)
    mask = np.zeros((8, 8, 8), dtype=bool)
    mask[2:6, 2:6, 2:6] = True
    data[mask] = np.tile([1.0, 3.0], 32)
    data[3, 3, 3] = 2.0  # exactly the mean of the masked voxels after the next line
    data[4, 4, 4] = 2.0
    out = normalize_intensity(torch.from_numpy(data), "zscore", torch.from_numpy(mask)).numpy()
    assert out[3, 3, 3] == np.float32(INSIDE_ZERO) and out[3, 3, 3] != 0
    np.testing.assert_array_equal(out != 0, mask)


def test_background_no_longer_carries_the_tissue_mix():
    """The shortcut in one picture: two brains of one outline, one with more dark tissue inside.

    Unmasked z-scoring gives their backgrounds different constants (-mean/std); masked, both are 0.
    """
    import torch

    shape = (32, 32, 32)
    mask = phantom_mask(shape)
    x, y, z = np.indices(shape) - 15.5
    core = np.sqrt(x**2 + y**2 + z**2)
    backgrounds = {}
    for name, radius in (("young", 3.0), ("atrophic", 6.0)):  # more CSF inside the same outline
        data = np.where(mask, 600.0, 5.0) - np.where(core < radius, 400.0, 0.0)
        data = torch.from_numpy(data.astype(np.float32))
        old = normalize_intensity(data, "zscore").numpy()
        new = normalize_intensity(data, "zscore", torch.from_numpy(mask)).numpy()
        backgrounds[name] = (float(old[0, 0, 0]), float(new[0, 0, 0]))
    assert abs(backgrounds["young"][0] - backgrounds["atrophic"][0]) > 0.5
    assert backgrounds["young"][1] == backgrounds["atrophic"][1] == 0.0


def test_auto_mask_is_the_filled_largest_piece_grown_by_2mm():
    from scipy import ndimage

    from neuro_ssl.data.transforms import auto_brain_mask

    rng = np.random.default_rng(3)
    data = brain_phantom(rng)  # a bright ellipsoid ...
    x, y, z = np.indices(data.shape) - 15.5
    data[np.sqrt(x**2 + y**2 + z**2) < 4] = 40.0  # ... with a core as dark as CSF (the "ventricles")
    data[1:3, 1:3, 1:3] = 900.0  # a bright speck far from the brain
    fg = data > otsu_threshold(data)
    assert not fg[15, 15, 15]  # Otsu alone leaves the core out
    filled = ndimage.binary_fill_holes(phantom_mask() & fg)
    grown = ndimage.binary_dilation(filled, structure=ndimage.generate_binary_structure(3, 1))
    at_2mm, at_6mm = auto_brain_mask(data, spacing_mm=2.0), auto_brain_mask(data, spacing_mm=6.0)
    assert at_6mm[15, 15, 15] and not at_6mm[1, 1, 1]  # core filled, speck dropped
    np.testing.assert_array_equal(at_6mm, filled)  # no growth at coarse grids
    np.testing.assert_array_equal(at_2mm, grown)  # one voxel (2 mm) at 2 mm


def write_mask_file(path, affine, shape, world_box) -> str:
    """A 0/1 mask on its own grid: 1 where a voxel centre lies in the world box ((lo, hi) per axis, mm)."""
    ijk = np.indices(shape).reshape(3, -1)
    world = affine[:3, :3] @ ijk + affine[:3, 3:4]
    inside = np.all([(world[a] >= lo) & (world[a] <= hi) for a, (lo, hi) in enumerate(world_box)], axis=0)
    nib.save(nib.Nifti1Image(inside.reshape(shape).astype(np.uint8), affine), str(path))
    return str(path)


def test_a_mask_file_on_its_own_grid_lands_on_the_model_grid(tmp_path):
    """Image LAS at anisotropic voxels, mask LPS at 1 mm: the model-grid support is the world box."""
    affine = native_affine("LAS")
    image = write_blob(tmp_path / "t1.nii.gz", affine, world_point(affine))
    centre = world_point(affine)
    box = [(c - 9.0, c + 9.0) for c in centre]
    mask_affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    mask_affine[:3, 3] = centre + np.array([25.0, 25.0, -25.0])
    mask = write_mask_file(tmp_path / "brain_mask.nii.gz", mask_affine, (50, 50, 50), box)
    cfg = PreprocessConfig(spacing_mm=2.0, shape=(16, 30, 20))
    out = Preprocessor(cfg)([image], mask=mask)
    support = out["image"][0] != 0
    ijk = np.argwhere(support)
    world = out["affine"][:3, :3] @ ijk.T + out["affine"][:3, 3:4]
    for axis, (lo, hi) in enumerate(box):
        assert lo - 1.01 <= world[axis].min() and world[axis].max() <= hi + 1.01  # within half a 2 mm voxel
    assert 0.7 * (18 / 2) ** 3 < support.sum() < 1.3 * (18 / 2 + 1) ** 3
    unmasked = Preprocessor(PreprocessConfig(spacing_mm=2.0, shape=(16, 30, 20), mask_background=False))
    assert np.all(unmasked([image], mask=mask)["image"] != 0)  # the old behaviour ignores masks


@pytest.mark.parametrize("kind, words", [("empty", "mask .*empty"), ("4d", "mask .*4D image with 3 volumes.*expected one 3D volume$")])
def test_bad_mask_files_are_one_line_naming_the_mask(tmp_path, kind, words):
    affine = native_affine("RAS")
    image = write_blob(tmp_path / "t1.nii.gz", affine, world_point(affine))
    data = np.zeros((10, 10, 10), dtype=np.uint8) if kind == "empty" else np.ones((10, 10, 10, 3), dtype=np.uint8)
    nib.save(nib.Nifti1Image(data, affine), str(tmp_path / "m.nii.gz"))
    with pytest.raises(ImageError, match=words) as info:
        Preprocessor(PreprocessConfig(spacing_mm=2.0, shape=(16, 30, 20)))([image], mask=str(tmp_path / "m.nii.gz"))
    assert "m.nii.gz" in str(info.value) and "\n" not in str(info.value)


def test_mask_background_is_in_the_config_key_and_round_trip():
    on, off = PreprocessConfig(), PreprocessConfig(mask_background=False)
    assert on.mask_background and on.key() != off.key()
    assert PreprocessConfig.from_dict(off.to_dict()) == off
    with pytest.raises(ConfigError, match="mask_background"):
        PreprocessConfig(mask_background="yes")
