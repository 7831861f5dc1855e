"""A command that fails before it started working leaves no output behind (issue 12, point 4).

Every command with an output path is run into an early failure twice: with --out not existing
(it must still not exist) and with --out an existing empty folder (it must still be empty). The
cases are real user mistakes; a command this file does not know yet gets the generic mistake of
an input file that does not exist. Pretraining that fails in its first epoch (after writing
config.yaml) leaves nothing either, so the same command runs again without --resume; once it
has written a checkpoint, the folder is kept for --resume.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
from pathlib import Path

import pytest

from neuro_ssl.cli.main import COMMANDS, build_parser, main

_spec = importlib.util.spec_from_file_location(
    "neuro_ssl_tests_tiny_cohort", Path(__file__).resolve().parents[1] / "evaluation" / "tiny_cohort.py")
tc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tc)

NET = ["--arch", "resnet10", "--width", "0.125", "--spacing", "8", "--shape", "16,16,16", "--device", "cpu"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict:
    import pandas as pd

    root = tmp_path_factory.mktemp("early_failures")
    manifest = tc.write_cohort(root, n_subjects=6)
    no_age = root / "no_age.csv"
    pd.read_csv(manifest, dtype=str).assign(age="").to_csv(no_age, index=False)
    notes = root / "notes.txt"
    notes.write_text("remember to pretrain first\n")
    (root / "notes_run").mkdir()
    (root / "notes_run" / "model.pt").write_text("not a model\n")
    return {"root": root, "manifest": manifest, "no_age": no_age, "notes": notes}


def _cases(i: dict, out: Path) -> dict[str, list[str]]:
    """command -> argv of a realistic mistake that stops it before it works."""
    m, notes, o = str(i["manifest"]), str(i["notes"]), str(out)
    return {
        "synth": ["synth", o, "--voxel-mm", "40"],
        "manifest": ["manifest", "import", "csv", "--csv", m, "--columns", "subject_id=PTID,image=path", "--out", o],
        "split": ["split", m, "--out", o, "--stratify", "no_such_column"],
        "pretrain": ["pretrain", "--manifest", str(i["no_age"]), "--out", o, "--loss", "yaware", "--meta", "age",
                     "--missing-y", "skip", *NET],
        "finetune": ["finetune", "--manifest", m, "--out", o, "--encoder", notes, "--mode", "linear"],
        "evaluate": ["evaluate", "--run", str(i["root"] / "notes_run"), "--manifest", m, "--out", o],
        "embed": ["embed", "--encoder", notes, "--manifest", m, "--out", o],
        "cluster": ["cluster", "--embeddings", notes, "--manifest", m, "--out", o],
        "saliency": ["saliency", "--run", notes, "--manifest", m, "--out", o],
        "audit": ["audit", m, "--out", o, "--label", "no_such_column", "--spacing", "8", "--shape", "16,16,16"],
        "demo": ["demo", "--out", o, "--manifest", str(i["root"] / "missing.csv")],
        "report": ["report", "--out", o, str(i["root"] / "notes_run")],
    }


def _generic_case(command: str, i: dict, out: Path) -> list[str] | None:
    """A command not listed above: its required inputs given as a file that does not exist."""
    parser = build_parser(command)
    argv, has_input = [command], False
    for action in parser._actions:
        if action.dest in ("help", "config", "out") or not (action.required or not action.option_strings):
            continue
        if isinstance(action, argparse._SubParsersAction):
            return None
        value = str(i["root"] / "missing_input.csv") if action.type is Path else (
            str(action.choices[0]) if action.choices else "1")
        has_input |= action.type is Path
        argv += [value] if not action.option_strings else [action.option_strings[-1], value]
    return argv + ["--out", str(out)] if has_input else None


def _writes_out(command: str) -> bool:
    parser = build_parser(command)
    return any(a.dest == "out" for a in parser._actions) or command == "manifest"


def _run(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    return code, err.getvalue()


WRITERS = [c for c in COMMANDS if _writes_out(c)]


def test_the_writers_are_found():
    assert {"synth", "manifest", "pretrain", "finetune", "evaluate", "saliency", "demo"} <= set(WRITERS)
    assert "validate" not in WRITERS and "run" not in WRITERS  # no --out: the runner keeps its own state


@pytest.mark.parametrize("command", WRITERS)
@pytest.mark.parametrize("before", ["absent", "empty folder"])
def test_an_early_failure_leaves_out_as_it_was(inputs, tmp_path, command, before):
    out = tmp_path / ("out.csv" if command == "manifest" else "out")
    if before == "empty folder":
        out = tmp_path / "out"
        out.mkdir()
    argv = _cases(inputs, out).get(command) or _generic_case(command, inputs, out)
    assert argv is not None, f"add a realistic early failure of '{command}' to _cases"
    code, err = _run(argv)
    assert code != 0, err[-2000:]
    assert "Traceback" not in err, err[-3000:]
    if before == "absent":
        assert not out.exists(), f"{command} left {out} behind ({sorted(p.name for p in out.rglob('*'))})"
    else:
        assert out.is_dir() and not any(out.iterdir()), f"{command} left {sorted(p.name for p in out.iterdir())}"


def test_pretraining_that_fails_before_its_first_checkpoint_leaves_nothing(inputs, tmp_path, monkeypatch):
    """config.yaml and TensorBoard events are written before the first step: a failure in the first
    epoch must not leave a folder that the next attempt refuses without --resume, and neither does
    a run killed there (no Python cleanup runs). A failure after a checkpoint keeps the folder,
    and --resume continues it."""
    from neuro_ssl.errors import ImageError
    from neuro_ssl.training import pretrain

    run = tmp_path / "run"
    argv = ["pretrain", "--manifest", str(inputs["manifest"]), "--out", str(run), "--loss", "simclr",
            *NET, "--proj-dims", "16,8", "--epochs", "2", "--batch-size", "4", "--seed", "0"]
    real = pretrain.Pretrainer._train_epoch

    def first_epoch_fails(self, data):
        assert (self.run_dir / "config.yaml").exists()  # the run had started writing
        raise ImageError("scan went missing mid-epoch")

    def second_epoch_interrupted(self, data):
        if self.epoch == 1:
            raise KeyboardInterrupt
        return real(self, data)

    monkeypatch.setattr(pretrain.Pretrainer, "_train_epoch", first_epoch_fails)
    code, err = _run(argv)
    assert code == 1 and "scan went missing" in err
    assert not run.exists()
    run.mkdir()  # what a run killed (SIGKILL) in its first epoch leaves
    (run / "config.yaml").write_text("loss: simclr\n")
    (run / "events.out.tfevents.1.killed.0").write_bytes(b"\x00")
    monkeypatch.setattr(pretrain.Pretrainer, "_train_epoch", second_epoch_interrupted)
    code, err = _run(argv)  # the same command again: no --resume demanded
    assert code == 130, err[-2000:]
    assert not (run / "events.out.tfevents.1.killed.0").exists()
    assert (run / "checkpoint.pt").exists() and (run / "config.yaml").exists()
    monkeypatch.setattr(pretrain.Pretrainer, "_train_epoch", real)
    code, err = _run(argv + ["--resume"])
    assert code == 0, err[-2000:]
    assert (run / "encoder.pt").exists()
