"""Fixtures of the federated tests: a three-site manifest of real NIfTI scans and the tiny run options."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
#: sites of the session's tiny cohort and how many T1w scans each keeps: one optimizer step per
#: local epoch at batch 4, and unequal counts, so a count-weighted mean differs from a plain one
SITE_SCANS = {"002": 6, "023": 4, "941": 5}
#: synth at 4 mm, 6 mm / 32^3 preprocessing, resnet10 at 1/4 width, batch 4, y-Aware on age
FED = ["--loss", "yaware", "--meta", "age", "--sigma", "5", "--arch", "resnet10", "--width", "0.25",
       "--spacing", "6", "--shape", "32,32,32", "--proj-dims", "32,16", "--batch-size", "4", "--lr", "1e-3",
       "--warmup", "0", "--workers", "0", "--device", "cpu", "--seed", "0", "--rounds", "2", "--local-epochs", "1"]


@pytest.fixture(scope="session")
def site_manifest(tiny_cohort, tmp_path_factory) -> Path:
    """T1w scans of three sites of the tiny cohort (6, 4 and 5 scans), absolute paths, in a CSV."""
    import pandas as pd

    from neuro_ssl.data.manifest import read_manifest, write_manifest

    df = read_manifest(tiny_cohort)
    t1 = df[df["modality"] == "T1w"]
    parts = [t1[t1["site"] == site].head(n) for site, n in SITE_SCANS.items()]
    assert [len(p) for p in parts] == list(SITE_SCANS.values()), "the tiny cohort's sites changed"
    return write_manifest(pd.concat(parts), tmp_path_factory.mktemp("federated") / "sites.csv")


def child_env() -> dict[str, str]:
    """A child ``python -m neuro_ssl``: quiet, one thread per process (the sites run side by side)."""
    return {**os.environ, "NEURO_SSL_QUIET": "1", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1", "RAY_DEDUP_LOGS": "0"}


def start_federate(argv: list, cwd: Path = REPO) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "neuro_ssl", "federate", *map(str, argv)], env=child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)
