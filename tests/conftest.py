"""Session-wide fixtures: one tiny synthetic cohort written as real NIfTI files, shared by all tests."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

#: data the tests need lives in the repository (tests/fixtures/README.md says where it comes from)
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def pytest_configure(config):
    # Tests never touch the user's cache and never draw progress bars.
    os.environ.setdefault("NEURO_SSL_CACHE", tempfile.mkdtemp(prefix="neuro-ssl-test-cache-"))
    os.environ.setdefault("NEURO_SSL_QUIET", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory) -> Path:
    """A synthetic cohort at 4 mm (12 subjects, T1w + FDG, 1-3 visits): path of its manifest.csv."""
    from neuro_ssl.data.synth import make_cohort

    out = tmp_path_factory.mktemp("cohort")
    return make_cohort(out, n_subjects=12, seed=0, pet=True, voxel_mm=4.0)


@pytest.fixture(scope="session")
def tiny_config():
    """Preprocessing small enough for CPU tests: 6 mm voxels, 32^3 grid."""
    from neuro_ssl.data.transforms import PreprocessConfig

    return PreprocessConfig(spacing_mm=(6.0, 6.0, 6.0), shape=(32, 32, 32))


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES
