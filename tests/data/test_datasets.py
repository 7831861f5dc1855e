"""ManifestDataset over a real CSV manifest and real NIfTI files: items, modalities, errors, workers."""

from __future__ import annotations

import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from neuro_ssl.data.datasets import ManifestDataset
from neuro_ssl.data.manifest import read_manifest
from neuro_ssl.data.transforms import PreprocessConfig
from neuro_ssl.errors import ImageError, ManifestError

CONFIG = PreprocessConfig(spacing_mm=4.0, shape=(10, 12, 10))
PAIR = PreprocessConfig(spacing_mm=4.0, shape=(10, 12, 10), modalities=("T1w", "FDG"))


def write_volume(path: Path, seed: int, uptake: float = 1.0) -> str:
    rng = np.random.default_rng(seed)
    x, y, z = np.indices((14, 16, 14)) - np.array([6.5, 7.5, 6.5])[:, None, None, None]
    data = 100 * uptake * ((x / 5) ** 2 + (y / 6) ** 2 + (z / 5) ** 2 < 1) + rng.normal(4, 1, (14, 16, 14))
    nib.save(nib.Nifti1Image(data.astype(np.float32), np.diag([3.0, 3.0, 3.0, 1.0])), str(path))
    return path.name


@pytest.fixture(scope="module")
def manifest_path(tmp_path_factory) -> Path:
    """3 subjects; sub-03's second visit has no FDG; row 2 of the CSV is line 2 of the file."""
    root = tmp_path_factory.mktemp("study")
    lines = ["subject_id,session_id,image,modality,age,MMSE"]
    plan = [("sub-01", "bl", 70.5, "29"), ("sub-02", "bl", 81.0, ""), ("sub-03", "bl", 66.0, "27"),
            ("sub-03", "m12", 67.0, "26")]
    seed = 0
    for subject, session, age, mmse in plan:
        for modality in ("T1w", "FDG"):
            if subject == "sub-03" and session == "m12" and modality == "FDG":
                continue
            seed += 1
            name = write_volume(root / f"{subject}_{session}_{modality}.nii.gz", seed, 2.0 if modality == "FDG" else 1.0)
            lines.append(f"{subject},{session},{name},{modality},{age},{mmse}")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root / "manifest.csv"


def test_single_modality_items(manifest_path, tmp_path):
    df = read_manifest(manifest_path)
    ds = ManifestDataset(df, CONFIG, cache_dir=tmp_path / "cache", columns=("age", "MMSE"))
    assert len(ds) == 4 and ds.other_modality == 3 and ds.dropped == 0
    item = ds[1]
    assert item["image"].dtype == torch.float32 and item["image"].shape == (1, 10, 12, 10)
    row = df.loc[item["index"]]
    assert row["modality"] == "T1w" and row["subject_id"] == "sub-02"
    assert item["age"] == 81.0 and math.isnan(item["MMSE"])
    assert [ds[i]["index"] for i in range(4)] == [2, 4, 6, 8]  # file line numbers of the T1w rows
    assert ds[0]["MMSE"] == 29.0
    ds[0]
    assert ds.cache.cache_stats()["hits"] >= 1


def test_modalities_stack_as_channels_and_incomplete_sessions_drop(manifest_path):
    df = read_manifest(manifest_path)
    ds = ManifestDataset(df, PAIR, cache_dir=None)
    assert len(ds) == 3 and ds.dropped == 1 and ds.other_modality == 0
    item = ds[0]
    assert item["image"].shape == (2, 10, 12, 10)
    single_t1 = ManifestDataset(df, CONFIG)[0]["image"][0]
    torch.testing.assert_close(item["image"][0], single_t1)  # channel 0 is the T1w, as alone
    fdg = ManifestDataset(df, PreprocessConfig(spacing_mm=4.0, shape=(10, 12, 10), modalities=("FDG",)))
    assert fdg[0]["index"] == ds.rows[0][1]
    # both channels share the session's brain mask (the T1w's): one support, zero outside it
    brain = item["image"][0] != 0
    torch.testing.assert_close(item["image"][1] != 0, brain)
    assert abs(float(item["image"][1][brain].mean()) - 1.0) < 1e-4  # FDG: SUVR inside the mask, mean 1
    assert abs(float(item["image"][0][brain].mean())) < 1e-4  # T1w: z-scored inside the mask, mean 0
    # without masking, the FDG channel is the FDG volume alone, resampled onto the T1w grid
    unmasked = {k: PreprocessConfig(**{**c.to_dict(), "mask_background": False}) for k, c in
                (("pair", PAIR), ("fdg", PreprocessConfig(spacing_mm=4.0, shape=(10, 12, 10), modalities=("FDG",))))}
    pair_item = ManifestDataset(df, unmasked["pair"], cache_dir=None)[0]
    torch.testing.assert_close(pair_item["image"][1], ManifestDataset(df, unmasked["fdg"])[0]["image"][0],
                               atol=1e-5, rtol=1e-5)
    assert item["index"] == 2


def test_bad_image_names_row_and_file(manifest_path, tmp_path):
    df = read_manifest(manifest_path)
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"\x1f\x8b not really gzip")
    df.loc[4, "image"] = str(bad)
    ds = ManifestDataset(df, CONFIG)
    with pytest.raises(ImageError, match=rf"manifest.csv row 4: {bad}"):
        ds[1]
    ds[0]  # the other rows still load


def test_column_errors(manifest_path):
    df = read_manifest(manifest_path)
    with pytest.raises(ManifestError, match="no column MoCA"):
        ManifestDataset(df, CONFIG, columns=("MoCA",))
    df["score"] = ["high"] + ["1"] * (len(df) - 1)
    with pytest.raises(ManifestError, match="row 2: column score value 'high' is not a number"):
        ManifestDataset(df, CONFIG, columns=("score",))
    with pytest.raises(ManifestError, match="no rows with modality AV45"):
        ManifestDataset(df, PreprocessConfig(spacing_mm=4.0, shape=(10, 12, 10), modalities=("AV45",)))


def test_duplicate_modality_in_a_session_is_refused(manifest_path):
    df = read_manifest(manifest_path)
    df.loc[3, "modality"] = "T1w"  # sub-01 bl now has two T1w rows
    with pytest.raises(ManifestError, match="row 3: second T1w image for subject sub-01 session bl"):
        ManifestDataset(df, PAIR)


def test_dataloader_workers_give_the_same_items(manifest_path, tmp_path):
    df = read_manifest(manifest_path)
    ds = ManifestDataset(df, CONFIG, cache_dir=tmp_path / "cache")
    serial = list(torch.utils.data.DataLoader(ds, batch_size=2, num_workers=0))
    parallel = list(torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2))
    for a, b in zip(serial, parallel):
        torch.testing.assert_close(a["image"], b["image"])
        assert a["index"].tolist() == b["index"].tolist()
        torch.testing.assert_close(a["age"], b["age"])
    assert serial[0]["image"].shape == (2, 1, 10, 12, 10)
