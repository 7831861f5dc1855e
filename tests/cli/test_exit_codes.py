"""Every command driven into each class of error: usage -> exit 2, data -> exit 1 (docs/cli.md).

Issue 11, point 4: ``finetune --classes CN,AD`` on data without AD exited 2, although the
options were fine and the data lacked the class. The rule (docs/cli.md): 2 when the command line or a
config/pipeline file is wrong by itself, 1 when the inputs do not allow what was asked. Each
case also ends with one error line (``neuro-ssl CMD: error: ...``, the last on stderr; argparse
prints the usage synopsis above its own), no traceback, and no output folder. ``validate``
reports data problems as its report on stdout. ``synth`` reads no input: it has no data class.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from neuro_ssl.cli.main import COMMANDS, main

DOCS = Path(__file__).resolve().parents[2] / "docs" / "cli.md"

#: (command, class) -> (argv, a fragment of the error line); run with the test folder as cwd
CASES = {
    ("synth", "usage"): (["synth", "out", "--subjects", "0"], "positive integer"),
    ("manifest", "usage"): (["manifest", "import", "csv", "--csv", "ok.csv", "--columns", "subjet_id=ID",
                             "--out", "out/m.csv"], "did you mean 'subject_id'"),
    ("manifest", "data"): (["manifest", "import", "csv", "--csv", "missing.csv", "--columns", "subject_id=ID",
                            "--out", "out/m.csv"], "file not found"),
    ("validate", "usage"): (["validate", "ok.csv", "--workers", "0"], "positive integer"),
    ("validate", "data"): (["validate", "missing_image.csv"], "file not found"),
    ("split", "usage"): (["split", "ok.csv", "--out", "out", "--test-size", "1.5"], "[0, 1)"),
    ("split", "data"): (["split", "ok.csv", "--out", "out", "--test-size", "0.4", "--val-size", "0.4"], "too few"),
    ("pretrain", "usage"): (["pretrain", "--manifest", "ok.csv", "--out", "out", "--loss", "yaware"], "needs --meta"),
    ("pretrain", "data"): (["pretrain", "--manifest", "ok.csv", "--out", "out", "--loss", "yaware", "--meta", "mmse",
                            "--device", "cpu"], "no column 'mmse'"),
    ("finetune", "usage"): (["finetune", "--manifest", "ok.csv", "--out", "out", "--mode", "linear"], "needs --encoder"),
    ("finetune", "data"): (["finetune", "--manifest", "cn_only.csv", "--out", "out", "--mode", "scratch",
                            "--classes", "CN,AD", "--device", "cpu"], "class AD has no rows"),
    ("evaluate", "usage"): (["evaluate", "--run", "run", "--manifest", "ok.csv", "--out", "out", "--alpha", "2"], "--alpha"),
    ("evaluate", "data"): (["evaluate", "--run", "run", "--manifest", "ok.csv", "--out", "out"], "checkpoint not found"),
    ("embed", "usage"): (["embed", "--manifest", "ok.csv", "--out", "out/e.csv"], "--encoder --run is required"),
    ("embed", "data"): (["embed", "--encoder", "missing.pt", "--manifest", "ok.csv", "--out", "out/e.csv"],
                        "checkpoint not found"),
    ("cluster", "usage"): (["cluster", "--embeddings", "e.csv", "--manifest", "ok.csv", "--out", "out", "--k", "0"],
                           "positive integer"),
    ("cluster", "data"): (["cluster", "--embeddings", "missing.csv", "--manifest", "ok.csv", "--out", "out"],
                          "not found"),
    ("saliency", "usage"): (["saliency", "--run", "run", "--manifest", "ok.csv", "--out", "out", "--method", "x"],
                            "invalid choice"),
    ("saliency", "data"): (["saliency", "--run", "run", "--manifest", "ok.csv", "--out", "out"], "checkpoint not found"),
    ("audit", "usage"): (["audit", "ok.csv", "--out", "out", "--label", "diagnosis", "--folds", "0"], "positive integer"),
    ("audit", "data"): (["audit", "ok.csv", "--out", "out", "--label", "diagnosis", "--run", "run"],
                        "no model.pt or encoder.pt"),
    ("demo", "usage"): (["demo", "--size", "huge", "--out", "out"], "invalid choice"),
    ("demo", "data"): (["demo", "--manifest", "missing.csv", "--out", "out"], "file not found"),
    ("study", "usage"): (["study", "--manifest", "ok.csv", "--out", "out", "--methods", "scratch,simclrr"],
                         "did you mean 'simclr'"),
    ("study", "data"): (["study", "--manifest", "missing.csv", "--out", "out"], "not found"),
    ("report", "usage"): (["report", "--out", "out/report.txt", "run"], ".html"),
    ("report", "data"): (["report", "--out", "out/report.html", "nowhere"], "not found"),
    ("federate", "usage"): (["federate", "--manifest", "ok.csv", "--out", "out", "--loss", "yaware"], "needs --meta"),
    ("federate", "data"): (["federate", "--manifest", "ok.csv", "--out", "out", "--loss", "simclr",
                            "--site-column", "scanner"], "scanner"),
    ("evaluate-retrieval", "usage"): (["evaluate-retrieval", "--run", "run", "--manifest", "ok.csv", "--out", "out",
                                       "--batch-size", "0"], "positive integer"),
    ("evaluate-retrieval", "data"): (["evaluate-retrieval", "--run", "run", "--manifest", "ok.csv", "--out", "out"],
                                     "no checkpoint.pt"),
    ("reconstruct", "usage"): (["reconstruct", "--encoder", "missing.pt", "--manifest", "ok.csv", "--out", "out",
                                "--samples", "-1"], "--samples"),
    ("reconstruct", "data"): (["reconstruct", "--encoder", "missing.pt", "--manifest", "ok.csv", "--out", "out"],
                              "not found"),
    ("run", "usage"): (["run", "missing.yaml"], "pipeline file not found"),
    ("run", "data"): (["run", "validate_bad.yaml"], "failed"),
}
EXIT = {"usage": 2, "data": 1}


def _volume(path: Path, seed: int) -> str:
    data = np.random.default_rng(seed).random((8, 8, 8)).astype(np.float32) + 1
    nib.save(nib.Nifti1Image(data, np.diag([4.0, 4.0, 4.0, 1.0])), str(path))
    return path.name


@pytest.fixture
def inputs(tmp_path, monkeypatch) -> Path:
    """Small real inputs in the working directory: a 4-subject manifest, a CN-only one, a bad pipeline."""
    rows = [f"S{i},bl,{_volume(tmp_path / f's{i}.nii.gz', i)},{70 + i},{'CN' if i % 2 else 'AD'}" for i in range(4)]
    header = "subject_id,session_id,image,age,diagnosis\n"
    (tmp_path / "ok.csv").write_text(header + "\n".join(rows) + "\n")
    (tmp_path / "cn_only.csv").write_text(header + "\n".join(r for r in rows if r.endswith("CN")) + "\n")
    (tmp_path / "missing_image.csv").write_text(header + "S9,bl,nowhere.nii.gz,70,CN\n")
    (tmp_path / "e.csv").write_text("subject_id,session_id,f0\nS0,bl,0.5\n")
    (tmp_path / "validate_bad.yaml").write_text(
        "steps:\n  - name: check\n    command: validate\n    args: [missing_image.csv]\n    stdout: check.txt\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("command, kind", list(CASES))
def test_each_command_exits_2_for_usage_and_1_for_data(inputs, command, kind):
    argv, fragment = CASES[command, kind]
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main(argv)
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    assert code == EXIT[kind], (code, lines, out.getvalue()[-500:])
    assert "Traceback" not in err.getvalue()
    if (command, kind) == ("validate", "data"):  # the report: one line per problem, then the verdict
        report = out.getvalue().strip().splitlines()
        assert fragment in report[0] and "row 2" in report[0] and ": FAILED: " in report[-1], report
    else:
        assert lines and lines[-1].startswith(f"neuro-ssl {command}: error: "), lines
        assert all(line.startswith(("usage:", " ")) for line in lines[:-1]), lines  # argparse's synopsis
        assert fragment in lines[-1], lines[-1]
    assert not (inputs / "out").exists()


def test_every_command_is_covered_and_documented():
    covered = {command for command, _ in CASES}
    assert covered == set(COMMANDS)
    assert {c for c, kind in CASES if kind == "data"} == set(COMMANDS) - {"synth"}  # synth reads no input
    table = DOCS.read_text()
    codes = dict(re.findall(r"^\| `(\d+)` \| ([^|]+) \|", table, flags=re.M))
    assert set(codes) == {"0", "1", "2", "130"}, codes
    assert "usage" in codes["2"].lower() and "data" in codes["1"].lower()
