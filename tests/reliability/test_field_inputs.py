"""Files from public bug reports: validate and every command accept and refuse exactly the same.

Issue 11, points 1, 2 and 5. Each file of ``corpus.make_field_files`` (RGB24, RGBA32, complex,
1-bit binary, a (x, y, z, 1, 1) 5D file, an Analyze pair, a ``.hdr`` without its ``.img``, gzip
named ``.nii``, a dynamic 4D PET) sits in a manifest of good scans. ``validate`` and the
screening that pretrain, finetune, evaluate, embed and saliency run before working (a
``ManifestDataset`` preprocessed item by item, through the cache) must agree on it: both accept
it, or both refuse it with the SAME line (manifest, row, file, problem). With ``--frames mean``
the dynamic PET becomes usable for both; nothing else changes.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from neuro_ssl.data.manifest import read_manifest
from neuro_ssl.data.transforms import PreprocessConfig
from neuro_ssl.errors import ImageError
from neuro_ssl.evaluation.inference import make_dataset

from .corpus import bad_image_row, insert_row, make_field_files, write_manifest
from .helpers import NET, assert_one_line_error, run_cli

CASES = ["rgb24", "rgba32_structured", "complex64", "binary_bool", "xyz11_5d", "analyze_pair", "hdr_without_img",
         "gzip_named_nii", "pet_4d_frames"]
LINE = 4  # the field file's row: third data row


@pytest.fixture(scope="module")
def field(tmp_path_factory) -> dict:
    files = {f.name: f for f in make_field_files(tmp_path_factory.mktemp("field"))}
    assert sorted(files) == sorted(CASES)
    return files


@pytest.fixture(scope="module")
def base_rows(good_rows):
    cn = good_rows[good_rows["diagnosis"] == "CN"].head(2)
    ad = good_rows[good_rows["diagnosis"] == "AD"].head(2)
    return pd.concat([cn.iloc[[0]], ad.iloc[[0]], cn.iloc[[1]], ad.iloc[[1]]], ignore_index=True)


def _manifest(base_rows, path: Path, folder: Path) -> Path:
    table, line = insert_row(base_rows, bad_image_row(base_rows, path, "FIELD_S_0001"), 2)
    assert line == LINE
    return write_manifest(folder / "manifest.csv", table)


def _validate(manifest: Path, frames: str) -> str | None:
    """validate's line for the field file's row (None when it has none), checking the exit code."""
    result = run_cli(["validate", manifest, "--frames", frames])
    assert "Traceback" not in result.err, result.err[-2000:]
    lines = [line for line in result.out.splitlines() if f"row {LINE}:" in line and "warning:" not in line]
    assert result.code == (1 if lines else 0), result.out
    return lines[0] if lines else None


def _screen(manifest: Path, frames: str) -> str | None:
    """What every command's up-front screening says about the manifest (None: every scan usable)."""
    config = PreprocessConfig(spacing_mm=8.0, shape=(16, 16, 16), frames=frames)
    try:
        make_dataset(read_manifest(manifest), config, cache_dir="none")
    except ImageError as exc:
        return str(exc)
    return None


@pytest.mark.parametrize("frames", ["single", "mean"])
@pytest.mark.parametrize("case", CASES)
def test_validate_and_the_commands_accept_and_refuse_the_same_files(field, base_rows, tmp_path, case, frames):
    item = field[case]
    manifest = _manifest(base_rows, item.path, tmp_path)
    said_validate, said_screening = _validate(manifest, frames), _screen(manifest, frames)
    assert said_validate == said_screening  # the same verdict and the same words, or both silent
    usable = item.expect is None or (frames == "mean" and item.frames_mean_ok)
    if usable:
        assert said_validate is None
        return
    assert said_validate is not None and str(manifest) in said_validate and item.path.name in said_validate
    assert "\n" not in said_validate
    assert all(fragment in said_validate.lower() for fragment in item.expect), said_validate


def test_pretrain_reads_what_validate_passes(field, base_rows, tmp_path):
    """The 5D file, the Analyze pair and (with --frames mean) the dynamic PET train as validate said."""
    rows = base_rows
    for k, name in enumerate(("xyz11_5d", "analyze_pair", "pet_4d_frames")):
        rows, _ = insert_row(rows, bad_image_row(rows, field[name].path, f"FIELD_S_{k:04d}"), 1)
    manifest = write_manifest(tmp_path / "odd_but_fine.csv", rows)
    assert run_cli(["validate", manifest, "--frames", "mean"]).code == 0
    argv = ["pretrain", "--manifest", manifest, "--out", tmp_path / "run", "--loss", "simclr", *NET,
            "--proj-dims", "8", "--epochs", "1", "--batch-size", "7", "--workers", "0", "--device", "cpu",
            "--cache-dir", "none", "--frames", "mean"]
    result = run_cli(argv)
    assert result.code == 0, result.err[-2000:]
    from neuro_ssl.models import load_encoder

    _, meta = load_encoder(tmp_path / "run" / "encoder.pt")
    assert meta["preprocess"]["frames"] == "mean"  # later commands read it from here


@pytest.mark.parametrize("command", ["pretrain", "finetune"])
def test_a_refused_file_stops_the_commands_with_validates_line(field, base_rows, tmp_path, command):
    manifest = _manifest(base_rows, field["rgb24"].path, tmp_path)
    line = _validate(manifest, "single")
    common = [*NET, "--epochs", "1", "--device", "cpu", "--cache-dir", "none"]
    argv = (["pretrain", "--loss", "simclr", "--proj-dims", "8", "--batch-size", "2", "--workers", "0"]
            if command == "pretrain" else ["finetune", "--mode", "scratch", "--classes", "CN,AD"])
    result = run_cli([*argv, "--manifest", manifest, "--out", tmp_path / "run", *common])
    assert assert_one_line_error(result, command) == f"neuro-ssl {command}: error: {line}"
    assert not (tmp_path / "run").exists()
