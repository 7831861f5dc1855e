"""Fixtures for the loss tests: the published y-Aware reference numbers (../shared/fixtures)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def yaware_reference(shared_dir):
    """The npz described in shared/fixtures/yaware_reference_public.md; CI always has it, so a
    missing file fails the tests instead of skipping them."""
    path = shared_dir / "fixtures" / "yaware_reference_public.npz"
    if not path.is_file():
        pytest.fail(f"reference fixture missing: {path} (CI provides ../shared next to the repository)")
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
