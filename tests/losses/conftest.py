"""Fixtures for the loss tests: the published y-Aware reference numbers (tests/fixtures)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def yaware_reference(fixtures_dir):
    """The npz described in tests/fixtures/yaware_reference_public.md, kept in the repository; a
    missing file fails the tests instead of skipping them."""
    path = fixtures_dir / "yaware_reference_public.npz"
    if not path.is_file():
        pytest.fail(f"reference fixture missing: {path} (it is part of the repository: restore it from git)")
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
