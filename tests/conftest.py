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
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # `make test` runs two pytest-xdist workers on the two cores: one thread each (and in the
        # commands they start), not two workers fighting over two threads each.
        import torch

        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the marks (it appends the group to the node id)
def pytest_collection_modifyitems(config, items):
    """Keep a module's tests on one pytest-xdist worker when they share a module-scoped fixture
    (a federation, a demo run, a trained model: built once, not once per worker), unless the
    module sets ``SPREAD_ACROSS_WORKERS = True`` (its tests are long and its fixture is cheap).
    ``--dist loadgroup`` (the Makefile) reads the ``xdist_group`` marks; without xdist they do nothing."""
    for item in items:
        module = getattr(item, "module", None)
        if module is None or getattr(module, "SPREAD_ACROSS_WORKERS", False):
            continue
        info = getattr(item, "_fixtureinfo", None)
        defs = [d for ds in (info.name2fixturedefs.values() if info else ()) for d in ds]
        if any(d.scope in ("module", "class") for d in defs):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))


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
