"""Region shares: analytic cases, masks in another space, atlases with label tables."""

from __future__ import annotations

import math

import nibabel as nib
import numpy as np
import pytest

from neuro_ssl.errors import ImageError, ManifestError
from neuro_ssl.interpret.regions import (
    label_shares, load_regions, read_label_names, region_shares, resample_labels,
)


def _save(path, data, affine):
    nib.save(nib.Nifti1Image(np.asarray(data), affine), str(path))
    return path


def test_map_fully_inside_a_mask_gives_one():
    mask = np.zeros((10, 10, 10), bool)
    mask[2:7, 3:8, 1:9] = True
    saliency = np.zeros((10, 10, 10))
    saliency[3:5, 4:6, 2:4] = np.arange(8).reshape(2, 2, 2) + 1.0
    assert region_shares(saliency, {"r": mask})["r"] == pytest.approx(1.0)
    assert region_shares(saliency, {"r": ~mask})["r"] == pytest.approx(0.0)


def test_uniform_map_gives_the_region_volume_fraction():
    mask = np.zeros((8, 9, 10), bool)
    mask[:3, :4, :5] = True
    shares = region_shares(np.full(mask.shape, 0.3), {"r": mask})
    assert shares["r"] == pytest.approx(mask.mean())


def test_all_zero_map_has_no_share():
    assert math.isnan(region_shares(np.zeros((3, 3, 3)), {"r": np.ones((3, 3, 3))})["r"])


def test_label_shares_equal_a_loop_over_masks():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, size=(7, 8, 9))
    saliency = rng.random((7, 8, 9))
    names = {1: "a", 2: "b", 4: "d"}
    fast = label_shares(saliency, labels, names)
    slow = {name: float((saliency * (labels == k)).sum() / saliency.sum()) for k, name in names.items()}
    assert fast == pytest.approx(slow)


def test_mask_in_another_space_is_resampled_through_the_affines():
    """A 2 mm RAS mask of a world box, read on a 1 mm LAS grid: same world box."""
    mask_affine = np.diag([2.0, 2.0, 2.0, 1.0])
    mask_affine[:3, 3] = (-20, -20, -20)
    mask = np.zeros((20, 20, 20), np.uint8)
    mask[5:10, 8:12, 10:15] = 1  # world x in [-10, -2], y in [-4, 2], z in [0, 8] (voxel centres)
    native_affine = np.diag([-1.0, 1.0, 1.0, 1.0])
    native_affine[:3, 3] = (20, -20, -20)
    on_native = resample_labels(mask, mask_affine, (40, 40, 40), native_affine)
    ijk = np.argwhere(on_native > 0)
    world = ijk @ native_affine[:3, :3].T + native_affine[:3, 3]
    assert world[:, 0].min() >= -11 and world[:, 0].max() <= -1
    assert world[:, 1].min() >= -5 and world[:, 1].max() <= 3
    assert world[:, 2].min() >= -1 and world[:, 2].max() <= 9
    assert len(ijk) == pytest.approx(10 * 8 * 10, rel=0.15)  # the box's volume in 1 mm voxels


def test_folder_of_masks(tmp_path):
    affine = np.eye(4)
    a = np.zeros((6, 6, 6), np.uint8)
    a[:3] = 1
    b = np.zeros((6, 6, 6), np.float32)
    b[:, :2] = 1.0
    (tmp_path / "masks").mkdir()
    _save(tmp_path / "masks" / "left half.nii.gz", a, affine)
    _save(tmp_path / "masks" / "front.nii", b, affine)
    (tmp_path / "masks" / "README.txt").write_text("not a mask")
    regions = load_regions(tmp_path / "masks")
    assert sorted(regions.names) == ["front", "left_half"]
    shares = regions.shares(np.ones((6, 6, 6), np.float32), affine)
    assert shares["left_half"] == pytest.approx(0.5) and shares["front"] == pytest.approx(1 / 3)


def test_atlas_with_label_table(tmp_path):
    atlas = np.zeros((4, 4, 4), np.int16)
    atlas[0] = 1
    atlas[1] = 2
    atlas[2, :2] = 7
    _save(tmp_path / "atlas.nii.gz", atlas, np.eye(4))
    (tmp_path / "atlas.tsv").write_text("index\tname\n1\tHippocampus L\n2\tAmygdala\n")
    regions = load_regions(tmp_path / "atlas.nii.gz")
    assert regions.names == ["Hippocampus_L", "Amygdala", "label_7"]
    shares = regions.shares(np.ones((4, 4, 4)), np.eye(4))
    assert shares == pytest.approx({"Hippocampus_L": 0.25, "Amygdala": 0.25, "label_7": 0.125})


def test_binary_file_is_one_region_named_by_its_stem(tmp_path):
    _save(tmp_path / "diagnosis_region.nii.gz", np.eye(4)[:, :, None].repeat(3, 2).astype(np.uint8), np.eye(4))
    assert load_regions(tmp_path / "diagnosis_region.nii.gz").names == ["diagnosis_region"]


def test_bad_region_inputs_are_one_line_errors(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        load_regions(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageError, match="no mask files"):
        load_regions(tmp_path / "empty")
    _save(tmp_path / "frac.nii.gz", np.full((3, 3, 3), 0.5, np.float32), np.eye(4))
    with pytest.raises(ImageError, match="integer labels"):
        load_regions(tmp_path / "frac.nii.gz")
    (tmp_path / "labels.csv").write_text("index,name\nx,oops\n")
    with pytest.raises(ManifestError, match="row 2"):
        read_label_names(tmp_path / "labels.csv")


def test_region_share_and_its_chance_are_both_taken_inside_the_brain(tmp_path):
    """A map uniform over the brain is at chance (ratio 1) whatever it puts on the background;
    the background's part is reported as outside_brain_share. (Before: the share divided by the
    whole map's mass, the chance by the brain's volume, so background saliency diluted it.)"""
    import types

    from neuro_ssl.interpret.cohort import _CohortState
    from neuro_ssl.interpret.summary import summarize_map

    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    brain = np.zeros((10, 10, 10), dtype=bool)
    brain[2:8, 2:8, 2:8] = True
    region = np.zeros((10, 10, 10), dtype=np.uint8)
    region[2:4, 2:8, 2:8] = 1  # a third of the brain
    nib.save(nib.Nifti1Image(region, affine), str(tmp_path / "region.nii.gz"))
    saliency = np.where(brain, 1.0, 3.0)  # three times as much per voxel on the background
    state = _CohortState(None, "truth_region")
    scan = types.SimpleNamespace(values={"truth_region": str(tmp_path / "region.nii.gz")}, base_dir=None)
    row = state.measure(saliency, affine, brain, scan)
    assert row["region_truth_region"] == pytest.approx(1 / 3)
    assert state.chance["truth_region"] == [pytest.approx(1 / 3)]
    outside = 3.0 * (~brain).sum() / saliency.sum()
    assert summarize_map(saliency, affine, brain)["outside_brain_share"] == pytest.approx(outside)
