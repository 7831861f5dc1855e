"""A tiny real cohort, its canonical rows, and one uninterrupted pretraining run every test compares to."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from .corpus import COLUMNS
from .helpers import PRETRAIN, run_cli


@pytest.fixture(scope="session")
def cohort(tmp_path_factory) -> Path:
    """A synthetic T1w cohort (6 subjects, 1-3 visits, 6 mm voxels): path of its ADNI-style manifest."""
    from neuro_ssl.data.synth import make_cohort

    return make_cohort(tmp_path_factory.mktemp("reliability_cohort"), n_subjects=6, seed=0, voxel_mm=6.0)


@pytest.fixture(scope="session")
def good_rows(cohort) -> pd.DataFrame:
    """The cohort as a plain canonical table of strings (absolute image paths), one row per scan."""
    from neuro_ssl.data.manifest import read_manifest

    table = read_manifest(cohort)[list(COLUMNS)].copy()
    table["age"] = table["age"].map(lambda a: f"{a:.2f}")
    return table.astype(str).reset_index(drop=True)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """The preprocessing cache the reference run filled (tests that damage a cache copy it first)."""
    return tmp_path_factory.mktemp("reliability_cache")


@pytest.fixture(scope="session")
def reference_run(cohort, cache_dir, tmp_path_factory) -> Path:
    """``pretrain`` with PRETRAIN options, never interrupted: the weights every other run must match."""
    run = tmp_path_factory.mktemp("reference") / "run"
    result = run_cli(["pretrain", "--manifest", cohort, "--out", run, "--cache-dir", cache_dir, *PRETRAIN])
    assert result.code == 0, result.err[-3000:]
    return run
