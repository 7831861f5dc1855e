"""Two-view augmentation: independent views, reproducible per (seed, epoch, index), on cached tensors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from neuro_ssl.data.datasets import ManifestDataset
from neuro_ssl.data.transforms import PreprocessConfig
from neuro_ssl.data.views import AugmentConfig, TwoViewDataset, build_view_transform
from neuro_ssl.errors import ConfigError

SHAPE = (12, 14, 12)


def write_volume(path: Path, seed: int) -> str:
    rng = np.random.default_rng(seed)
    x, y, z = np.indices((16, 18, 16)) - np.array([7.5, 8.5, 7.5])[:, None, None, None]
    data = 100 * ((x / 6) ** 2 + (y / 7) ** 2 + (z / 6) ** 2 < 1) * (1 + 0.3 * np.sin(x + seed)) \
        + rng.normal(4, 1, (16, 18, 16))
    nib.save(nib.Nifti1Image(data.astype(np.float32), np.diag([3.0, 3.0, 3.0, 1.0])), str(path))
    return str(path)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> pd.DataFrame:
    root = tmp_path_factory.mktemp("views")
    rows = []
    for i in range(3):
        for modality in ("T1w", "FDG"):
            rows.append({"subject_id": f"s{i}", "session_id": "bl", "modality": modality, "age": 60.0 + i,
                         "image": write_volume(root / f"s{i}_{modality}.nii.gz", 10 * i + len(modality))})
    df = pd.DataFrame(rows, index=pd.RangeIndex(2, 2 + len(rows)))
    df.attrs["source"] = str(root / "manifest.csv")
    return df


@pytest.fixture(scope="module")
def base(manifest, tmp_path_factory):
    cfg = PreprocessConfig(spacing_mm=4.0, shape=SHAPE)
    return ManifestDataset(manifest, cfg, cache_dir=tmp_path_factory.mktemp("cache"))


def test_views_differ_and_items_differ(base):
    views = TwoViewDataset(base, AugmentConfig(), seed=0)
    a, b = views[0], views[1]
    assert a["view1"].shape == (1, *SHAPE) and a["view1"].dtype == torch.float32
    assert not torch.allclose(a["view1"], a["view2"])
    assert not torch.allclose(a["view1"], b["view1"])
    assert a["index"] == base[0]["index"] and a["age"] == 60.0 and "image" not in a


def test_views_are_reproducible_per_seed_epoch_index(base):
    one, two = TwoViewDataset(base, AugmentConfig(), seed=7), TwoViewDataset(base, AugmentConfig(), seed=7)
    _ = two[2], two[0]  # a different call order must not matter
    for i in range(2):
        torch.testing.assert_close(one[i]["view1"], two[i]["view1"], rtol=0, atol=0)
        torch.testing.assert_close(one[i]["view2"], two[i]["view2"], rtol=0, atol=0)
    before = one[0]["view1"]
    one.set_epoch(1)
    assert not torch.allclose(one[0]["view1"], before)
    other_seed = TwoViewDataset(base, AugmentConfig(), seed=8)
    assert not torch.allclose(other_seed[0]["view1"], two[0]["view1"])


def test_dataloader_workers_see_the_same_views(base):
    views = TwoViewDataset(base, AugmentConfig(), seed=3)
    views.set_epoch(2)
    serial = next(iter(torch.utils.data.DataLoader(views, batch_size=3, num_workers=0)))
    parallel = next(iter(torch.utils.data.DataLoader(views, batch_size=3, num_workers=2)))
    torch.testing.assert_close(serial["view1"], parallel["view1"], rtol=0, atol=0)
    torch.testing.assert_close(serial["view2"], parallel["view2"], rtol=0, atol=0)


def test_augmentation_runs_on_the_cached_volume(base):
    views = TwoViewDataset(base, AugmentConfig(), seed=0)
    hits_before = base.cache.cache_stats()["hits"]
    for epoch in range(2):
        views.set_epoch(epoch)
        for i in range(len(views)):
            views[i]
    assert base.cache.cache_stats()["hits"] - hits_before >= len(views)


def test_identity_views_are_the_volume_and_input_is_untouched(base):
    image = base[0]["image"]
    keep = image.clone()
    identity = TwoViewDataset(base, AugmentConfig.identity())[0]
    torch.testing.assert_close(identity["view1"], image, rtol=0, atol=0)
    torch.testing.assert_close(identity["view2"], image, rtol=0, atol=0)
    only_cutout = build_view_transform(dataclasses.replace(AugmentConfig.identity(), cutout=1.0), seed=0)
    out = only_cutout(image)
    torch.testing.assert_close(image, keep, rtol=0, atol=0)  # the transform worked on a copy
    solid = torch.rand(1, *SHAPE, generator=torch.Generator().manual_seed(0)) + 1.0  # no voxel is 0
    out = only_cutout(solid)
    holes = out != solid
    assert holes.any() and torch.all(out[holes] == 0)
    sizes = [int(holes.any(dim=[d for d in (1, 2, 3) if d != axis]).sum()) for axis in (1, 2, 3)]
    assert all(round(0.1 * s) <= n <= round(0.25 * s) for n, s in zip(sizes, SHAPE))


STRONG = AugmentConfig(crop_scale=(0.7, 0.9), flip_lr=0.5, affine=1.0, affine_deg=15.0, noise=1.0, noise_std=0.3,
                       blur=1.0, bias_field=1.0, bias_field_coeff=0.3, contrast=1.0, cutout=1.0)


def test_masked_views_never_write_into_the_background(base):
    """Masked preprocessing leaves the background at exactly 0; every augmentation keeps it so.

    Identity geometry: the non-zero voxels of the view are the brain's (cutout may only remove
    some inside); any geometry: what lies outside the moved brain is exactly 0, and the same
    chain without re-masking does paint the background (so the check can fail).
    """
    image = base[0]["image"]
    brain = (image != 0).any(dim=0)
    assert base.config.mask_background and 0 < int(brain.sum()) < brain.numel()
    intensity_only = dataclasses.replace(STRONG, crop_scale=(1.0, 1.0), flip_lr=0.0, affine=0.0)
    for seed in range(5):
        view = build_view_transform(intensity_only, seed=seed, remask=True)(image)
        assert torch.all(view[:, ~brain] == 0)
        strong = build_view_transform(STRONG, seed=seed, remask=True)(image)
        assert torch.isfinite(strong).all() and 0 < int((strong != 0).sum()) < strong.numel()
        moved = build_view_transform(dataclasses.replace(STRONG, noise=0.0, bias_field=0.0, contrast=0.0, blur=0.0,
                                                         cutout=0.0), seed=seed, remask=True)(image)
        assert torch.all(strong[(moved == 0)] == 0)  # same seed, same geometry: background stays 0
    painted = build_view_transform(intensity_only, seed=0, remask=False)(image)
    assert bool((painted[:, ~brain] != 0).any())


def test_two_view_dataset_remasks_only_masked_volumes(manifest, tmp_path):
    masked = TwoViewDataset(ManifestDataset(manifest, PreprocessConfig(spacing_mm=4.0, shape=SHAPE), tmp_path), STRONG)
    plain = TwoViewDataset(ManifestDataset(manifest, PreprocessConfig(spacing_mm=4.0, shape=SHAPE,
                                                                      mask_background=False), tmp_path), STRONG)
    assert masked.transform.remask and not plain.transform.remask
    item = masked[1]
    assert bool((item["view1"] == 0).any()) and bool((item["view2"] == 0).any())


def test_flip_is_left_right_only(base):
    image = base[1]["image"]
    flip = build_view_transform(dataclasses.replace(AugmentConfig.identity(), flip_lr=1.0), seed=0)
    torch.testing.assert_close(flip(image), torch.flip(image, dims=[1]), rtol=0, atol=0)  # axis 0 of X,Y,Z


def test_default_views_keep_the_volume_recognizable(base):
    """Mild by default: over several epochs each view keeps the brain where it was (the
    non-zero support overlaps the source's, Dice > 0.7, or its mirror image's: the flip is one
    of the augmentations) and its intensity scale (std inside within a factor 2)."""
    views = TwoViewDataset(base, AugmentConfig(), seed=0)
    image = base[0]["image"]
    supports = [(image != 0).any(0), (torch.flip(image, dims=[1]) != 0).any(0)]
    scale = float(image[image != 0].std())
    for epoch in range(3):
        views.set_epoch(epoch)
        item = views[0]
        for key in ("view1", "view2"):
            view = item[key]
            assert torch.isfinite(view).all()
            support = (view != 0).any(0)
            dice = max(2 * float((support & s).sum()) / float(support.sum() + s.sum()) for s in supports)
            assert dice > 0.7, (epoch, key, dice)
            assert 0.5 < float(view[view != 0].std()) / scale < 2.0


def test_cross_modal_views_take_one_modality_each(manifest, tmp_path):
    cfg = PreprocessConfig(spacing_mm=4.0, shape=SHAPE, modalities=("T1w", "FDG"))
    base = ManifestDataset(manifest, cfg, cache_dir=tmp_path)
    item = TwoViewDataset(base, AugmentConfig.identity(), cross_modal=("T1w", "FDG"))[0]
    image = base[0]["image"]
    torch.testing.assert_close(item["view1"], image[0:1], rtol=0, atol=0)
    torch.testing.assert_close(item["view2"], image[1:2], rtol=0, atol=0)
    augmented = TwoViewDataset(base, AugmentConfig(), cross_modal=("FDG", "T1w"))[0]
    assert augmented["view1"].shape == (1, *SHAPE)
    with pytest.raises(ConfigError, match="AV45 is not among"):
        TwoViewDataset(base, AugmentConfig(), cross_modal=("T1w", "AV45"))


def test_augment_config_round_trip_and_checks():
    cfg = AugmentConfig(flip_lr=0.0, crop_scale=(0.7, 0.9))
    assert AugmentConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="did you mean 'cutout'"):
        AugmentConfig.from_dict({"cutuot": 0.5})
    with pytest.raises(ConfigError, match="probability blur"):
        AugmentConfig(blur=1.5)
    with pytest.raises(ConfigError, match="crop_scale"):
        AugmentConfig(crop_scale=(0.0, 1.0))
