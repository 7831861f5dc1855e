"""``neuro-ssl pretrain`` as a user meets it: one-line refusals with exit codes, skipping, --config resume."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest

from neuro_ssl.cli.main import main

FAST = ["--arch", "resnet10", "--width", "0.25", "--proj-dims", "16", "--spacing", "8", "--shape", "24,24,24",
        "--epochs", "1", "--batch-size", "4", "--workers", "0", "--warmup", "0"]


@pytest.fixture()
def t1w_csv(tiny_cohort, tmp_path) -> Path:
    """The shared cohort's T1w rows as a plain CSV with absolute image paths (editable per test)."""
    raw = pd.read_csv(tiny_cohort, dtype=str)
    raw = raw[raw["modality"] == "T1w"].reset_index(drop=True)
    raw["image_path"] = [str((Path(tiny_cohort).parent / p).resolve()) for p in raw["image_path"]]
    path = tmp_path / "t1w.csv"
    raw.to_csv(path, index=False)
    return path


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("NEURO_SSL_CACHE", str(tmp_path_factory.getbasetemp() / "cli-pretrain-cache"))


def _run(capsys, *argv) -> tuple[int, str]:
    code = main(["pretrain", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _error_line(text: str) -> str:
    lines = [l for l in text.splitlines() if "error:" in l]
    assert len(lines) == 1, text
    return lines[0]


@pytest.mark.parametrize("extra,code,pattern", [
    (["--loss", "yaware", "--meta", "weight_kg"], 1, r"t1w\.csv: no column 'weight_kg' for --meta"),
    (["--loss", "yaware"], 2, r"--loss yaware needs --meta COLUMN"),
    (["--loss", "simclr", "--batch-size", "1"], 2, r"--batch-size must be >= 2"),
    (["--loss", "simclr", "--shape", "8,8,8"], 2, r"shape 8x8x8 is too small for resnet10: every side must be >= 16"),
    (["--loss", "simclr", "--batch-size", "40"], 1, r"has \d+ usable scan\(s\), fewer than one batch of 40"),
    (["--loss", "supcon", "--meta", "PTGENDER,DX"], 2, r"supcon takes one label column"),
    (["--loss", "simclr", "--amp", "fp16"], 2, r"--amp fp16 needs a CUDA device"),
])
def test_refusals_are_one_line(t1w_csv, tmp_path, capsys, extra, code, pattern):
    out = tmp_path / "run"
    got, text = _run(capsys, "--manifest", t1w_csv, "--out", out, *FAST, *extra)
    assert got == code
    import re

    assert re.search(pattern, _error_line(text)), text
    assert "Traceback" not in text
    assert not (out / "checkpoint.pt").exists()


def test_missing_covariate_fails_with_rows_or_is_skipped(t1w_csv, tmp_path, capsys):
    raw = pd.read_csv(t1w_csv, dtype=str)
    raw.loc[[1, 4], "AGE"] = ""
    raw.to_csv(t1w_csv, index=False)
    code, text = _run(capsys, "--manifest", t1w_csv, "--out", tmp_path / "a", "--loss", "yaware", "--meta", "age", *FAST)
    assert code == 1
    assert "2 scan(s) without a value of age (rows 3, 6)" in _error_line(text) and "--missing-y skip" in text
    code, text = _run(capsys, "--manifest", t1w_csv, "--out", tmp_path / "b", "--loss", "yaware", "--meta", "age",
                      "--missing-y", "skip", *FAST)
    assert code == 0, text
    assert "skipping 2 scan(s) without age (rows 3, 6)" in text
    assert f"on {len(raw) - 2} scan(s)" in text


def test_unreadable_scan_stops_the_run_or_is_skipped(t1w_csv, tmp_path, capsys):
    raw = pd.read_csv(t1w_csv, dtype=str)
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(gzip.compress(b"this is not a NIfTI header" * 20))
    raw.loc[2, "image_path"] = str(broken)
    raw.to_csv(t1w_csv, index=False)
    code, text = _run(capsys, "--manifest", t1w_csv, "--out", tmp_path / "a", "--loss", "simclr", *FAST)
    assert code == 1 and "t1w.csv row 4" in _error_line(text) and "broken.nii.gz" in text
    code, text = _run(capsys, "--manifest", t1w_csv, "--out", tmp_path / "b", "--loss", "simclr", "--skip-bad", *FAST)
    assert code == 0, text
    assert "skipping 1 bad row(s) (--skip-bad); first: " in text and "row 4" in text
    skipped = pd.read_csv(tmp_path / "b" / "skipped.csv", dtype=str)
    assert list(skipped["row"]) == ["4"] and skipped.loc[0, "image"] == str(broken)
    assert f"on {len(raw) - 1} scan(s)" in text


def test_existing_run_needs_resume_and_config_yaml_resumes_it(t1w_csv, tmp_path, capsys):
    out = tmp_path / "run"
    code, text = _run(capsys, "--manifest", t1w_csv, "--out", out, "--loss", "simclr", *FAST)
    assert code == 0, text
    assert f"encoder: {out / 'encoder.pt'}" in text
    code, text = _run(capsys, "--manifest", t1w_csv, "--out", out, "--loss", "simclr", *FAST)
    assert code == 2 and "is not empty: pass --resume" in _error_line(text)
    # the saved config repeats the run; one more epoch continues it
    code, text = _run(capsys, "--config", out / "config.yaml", "--out", out, "--resume", "--epochs", "2")
    assert code == 0, text
    steps_per_epoch = len(pd.read_csv(t1w_csv)) // 4  # --batch-size 4, last partial batch dropped
    assert f"pretrained 2 epoch(s), {2 * steps_per_epoch} step(s)" in text
    assert pd.read_csv(out / "metrics.csv")["epoch"].tolist() == [1, 2]


def test_empty_manifest_is_refused(tmp_path, capsys):
    empty = tmp_path / "empty.csv"
    empty.write_text("subject_id,session_id,image,age\n")
    code, text = _run(capsys, "--manifest", empty, "--out", tmp_path / "run", "--loss", "simclr", *FAST)
    assert code == 1 and "empty.csv" in _error_line(text)
