"""A crafted checkpoint that would run code when unpickled is refused by every command that loads one.

Every ``torch.load`` in the package passes ``weights_only=True`` (``tests/test_layering.py``
checks the source); here each command that reads a weights file is handed an armed one, in
both containers an attacker could use (torch's zip format and a raw legacy pickle). The payload
creates a marker file when unpickled; the fixture proves it does so under an unrestricted
``torch.load``, and every command must refuse the file with one line naming it, exit non-zero,
and leave no marker.
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest

from .corpus import write_armed_checkpoint, write_manifest
from .helpers import FINETUNE_SCRATCH, PRETRAIN, assert_one_line_error, run_cli

ENCODER, MODEL, TRAIN = "neuro-ssl-encoder/1", "neuro-ssl-model/1", "neuro-ssl-train-checkpoint/1"


@pytest.fixture(params=["torch_zip", "raw_pickle"])
def container(request) -> str:
    return request.param


@pytest.fixture
def armed(tmp_path, container):
    """``make(path, fmt) -> path``: write an armed file; its marker must stay absent."""
    import torch

    marker = tmp_path / "marker_code_ran.txt"
    probe = write_armed_checkpoint(tmp_path / "probe.pt", marker, ENCODER, container)
    if container == "torch_zip":
        torch.load(probe, weights_only=False)
    else:
        pickle.loads(probe.read_bytes())
    assert marker.read_text() == "pwned"  # the payload really runs under an unrestricted load
    marker.unlink()
    probe.unlink()

    def make(path: Path, fmt: str) -> Path:
        return write_armed_checkpoint(path, marker, fmt, container)

    yield make
    assert not marker.exists(), "the crafted checkpoint ran code"


@pytest.fixture(scope="module")
def manifest(good_rows, tmp_path_factory) -> Path:
    return write_manifest(tmp_path_factory.mktemp("evil") / "manifest.csv", good_rows)


def _refused(result, command: str, path: Path) -> str:
    line = assert_one_line_error(result, command, str(path))
    assert "refused" in line or "not a plain-weights file" in line, line
    return line


def test_finetune_refuses_an_armed_encoder(armed, manifest, cache_dir, tmp_path):
    evil = armed(tmp_path / "encoder.pt", ENCODER)
    result = run_cli(["finetune", "--manifest", manifest, "--encoder", evil, "--out", tmp_path / "ft",
                      "--mode", "linear", "--classes", "CN,AD", "--epochs", "1", "--device", "cpu", "--cache-dir", cache_dir])
    _refused(result, "finetune", evil)


def test_embed_refuses_an_armed_encoder(armed, manifest, cache_dir, tmp_path):
    evil = armed(tmp_path / "encoder.pt", ENCODER)
    result = run_cli(["embed", "--encoder", evil, "--manifest", manifest, "--out", tmp_path / "e.csv",
                      "--device", "cpu", "--cache-dir", cache_dir])
    _refused(result, "embed", evil)


def test_embed_projection_refuses_an_armed_pretraining_checkpoint(armed, reference_run, manifest, cache_dir, tmp_path):
    """--projection reads the head from checkpoint.pt beside a (good) encoder.pt."""
    run = tmp_path / "pretrain"
    run.mkdir()
    shutil.copy(reference_run / "encoder.pt", run / "encoder.pt")
    evil = armed(run / "checkpoint.pt", TRAIN)
    result = run_cli(["embed", "--encoder", run / "encoder.pt", "--projection", "--manifest", manifest,
                      "--out", tmp_path / "e.csv", "--device", "cpu", "--cache-dir", cache_dir])
    _refused(result, "embed", evil)


@pytest.mark.parametrize("command", ["evaluate", "saliency", "embed"])
def test_commands_reading_a_run_refuse_an_armed_model(armed, manifest, cache_dir, tmp_path, command):
    run = tmp_path / "run"
    evil = armed(run / "model.pt", MODEL)
    argv = [command, "--run", run, "--manifest", manifest, "--device", "cpu", "--cache-dir", cache_dir,
            "--out", tmp_path / ("out.csv" if command == "embed" else "out")]
    _refused(run_cli(argv), command, evil)


def test_pretrain_resume_refuses_an_armed_checkpoint(armed, cohort, cache_dir, tmp_path):
    run = tmp_path / "run"
    evil = armed(run / "checkpoint.pt", TRAIN)
    result = run_cli(["pretrain", "--manifest", cohort, "--out", run, "--cache-dir", cache_dir, *PRETRAIN, "--resume"])
    _refused(result, "pretrain", evil)
    assert not (run / "encoder.pt").exists()


def test_finetune_resume_refuses_an_armed_checkpoint(armed, manifest, cache_dir, tmp_path):
    run = tmp_path / "run"
    evil = armed(run / "checkpoint.pt", TRAIN)
    result = run_cli(["finetune", "--manifest", manifest, "--out", run, "--cache-dir", cache_dir, *FINETUNE_SCRATCH,
                      "--resume"])
    _refused(result, "finetune", evil)
    assert not (run / "model.pt").exists()


def test_the_refusal_is_plain_text(armed, manifest, cache_dir, tmp_path):
    """The one line is read in terminals and log files: no escape codes, nothing that refers to text left out."""
    evil = armed(tmp_path / "encoder.pt", ENCODER)
    line = _refused(run_cli(["embed", "--encoder", evil, "--manifest", manifest, "--out", tmp_path / "e.csv",
                             "--device", "cpu", "--cache-dir", cache_dir]), "embed", evil)
    assert "\x1b" not in line, f"terminal escape codes in the message: {line!r}"
    assert "two options" not in line, f"refers to options the line does not show: {line!r}"


def test_every_command_reading_weights_is_covered():
    """The commands above are every CLI module that loads weights (a new one must join this file)."""
    import re

    cli = Path(__file__).resolve().parents[2] / "neuro_ssl" / "cli"
    loaders = re.compile(r"load_(encoder|model|checkpoint)|read_checkpoint|evaluate_run|load_embedding_network|"
                         r"training\.(pretrain|finetune) import")
    readers = sorted(p.stem for p in cli.glob("*.py") if loaders.search(p.read_text()))
    assert readers == ["embed", "evaluate", "finetune", "pretrain", "saliency"], readers
