"""Temporal positives: a pair is two visits of one subject, never two subjects."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from neuro_ssl.data.datasets import ManifestDataset
from neuro_ssl.data.transforms import PreprocessConfig
from neuro_ssl.data.views import AugmentConfig, TwoViewDataset, visit_partners

#: subject -> visits; s3 has one visit (same-scan views), s4 two rows of one session (not a pair)
VISITS = {"s0": ("bl", "m12", "m24"), "s1": ("bl", "m12"), "s2": ("bl", "m12", "m24", "m36"), "s3": ("bl",),
          "s4": ("bl", "bl")}


def _volume(path: Path, seed: int) -> str:
    rng = np.random.default_rng(seed)
    x, y, z = np.indices((14, 14, 14)) - 6.5
    data = (100 * ((x / 5) ** 2 + (y / 6) ** 2 + (z / 5) ** 2 < 1) + rng.normal(4, 1, (14, 14, 14))).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([3.0, 3.0, 3.0, 1.0])), str(path))
    return str(path)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("visit_pairs")
    rows = [{"subject_id": s, "session_id": v, "modality": "T1w", "age": 70.0 + k,
             "image": _volume(root / f"{s}_{k}.nii.gz", 100 * i + k)}
            for i, (s, visits) in enumerate(VISITS.items()) for k, v in enumerate(visits)]
    df = pd.DataFrame(rows, index=pd.RangeIndex(2, 2 + len(rows)))
    df.attrs["source"] = str(root / "manifest.csv")
    return ManifestDataset(df, PreprocessConfig(spacing_mm=4.0, shape=(12, 12, 12)), cache_dir=root / "cache")


def test_partners_are_other_visits_of_the_same_subject(base):
    partners = visit_partners(base.frame)
    frame = base.frame.reset_index(drop=True)
    for i, mine in enumerate(partners):
        subject, session = frame.at[i, "subject_id"], frame.at[i, "session_id"]
        others = frame[(frame["subject_id"] == subject) & (frame["session_id"] != session)].index
        assert set(mine) == set(others), (i, subject)
    assert [len(p) for p in partners] == [2, 2, 2, 1, 1, 3, 3, 3, 3, 0, 0, 0]


def test_a_pair_is_two_visits_of_one_subject_and_never_two_subjects(base):
    """Identity views: view2 IS the scan it came from, so its source can be read off the pixels."""
    data = TwoViewDataset(base, AugmentConfig.identity(), seed=3, partners=visit_partners(base.frame))
    scans = torch.stack([base[i]["image"] for i in range(len(base))])
    frame = base.frame
    seen = set()
    for epoch in range(3):
        data.set_epoch(epoch)
        for i in range(len(base)):
            item = data[i]
            source = int(torch.nonzero((scans == item["view2"]).flatten(1).all(1))[0, 0])
            row, row2 = item["index"], item["index2"]
            assert base.rows[source][0] == row2 and torch.equal(item["view1"], scans[i])
            assert frame.at[row2, "subject_id"] == frame.at[row, "subject_id"]  # never two subjects
            if frame.at[row, "subject_id"] in ("s3", "s4"):
                assert row2 == row  # one visit only: two views of the same scan
            else:
                assert frame.at[row2, "session_id"] != frame.at[row, "session_id"]
            seen.add((row, row2))
    s2_rows = [r for r in frame.index if frame.at[r, "subject_id"] == "s2"]
    assert len({(a, b) for a, b in seen if a == s2_rows[0]}) >= 2  # the partner changes across epochs


def test_pairs_are_reproducible_per_seed_epoch_index(base):
    partners = visit_partners(base.frame)
    a = TwoViewDataset(base, AugmentConfig(), seed=5, partners=partners)
    b = TwoViewDataset(base, AugmentConfig(), seed=5, partners=partners)
    for data in (a, b):
        data.set_epoch(2)
    first, second = a[6], b[6]
    assert first["index2"] == second["index2"] and torch.equal(first["view2"], second["view2"])
    plain = TwoViewDataset(base, AugmentConfig(), seed=5)
    plain.set_epoch(2)
    plain = plain[6]
    assert plain["index2"] == plain["index"] and torch.equal(plain["view1"], first["view1"])
