"""What the reliability tests share: tiny run options, running the CLI, and checking a run folder."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

#: preprocessing and network small enough for CPU tests (8 mm voxels, 16^3 grid, resnet10 at 1/8 width)
NET = ["--arch", "resnet10", "--width", "0.125", "--spacing", "8", "--shape", "16,16,16"]
#: y-Aware + MoCo queue: the most training state a checkpoint must carry (target network, queue)
PRETRAIN = ["--loss", "yaware", "--meta", "age", "--sigma", "5", "--queue", "8", "--momentum", "0.9",
            *NET, "--proj-dims", "16,8", "--epochs", "2", "--batch-size", "4", "--lr", "1e-3",
            "--warmup", "0.5", "--workers", "0", "--device", "cpu", "--seed", "0",
            "--checkpoint-every", "1", "--log-every", "1"]
FINETUNE_SCRATCH = ["--mode", "scratch", *NET, "--label", "diagnosis", "--classes", "CN,AD",
                    "--epochs", "1", "--batch-size", "8", "--device", "cpu", "--seed", "0"]


@dataclass
class Result:
    code: int
    out: str
    err: str

    def error_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


def run_cli(argv: list[str]) -> Result:
    """``neuro-ssl ARGV`` in this process (imports paid once), stdout and stderr captured."""
    from neuro_ssl.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return Result(code, out.getvalue(), err.getvalue())


def subprocess_env() -> dict[str, str]:
    """The environment of a child ``python -m neuro_ssl``: quiet, and the thread count of this
    process, so that its floating-point results match an in-process run bit for bit."""
    import torch

    threads = str(torch.get_num_threads())
    return {**os.environ, "NEURO_SSL_QUIET": "1", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": threads,
            "MKL_NUM_THREADS": threads}


def start_cli(argv: list[str], **kwargs) -> subprocess.Popen:
    """``python -m neuro_ssl ARGV`` in a real child process."""
    return subprocess.Popen([sys.executable, "-m", "neuro_ssl", *map(str, argv)], env=subprocess_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, **kwargs)


def assert_one_line_error(result: Result, command: str, *needles: str) -> str:
    """A user error: non-zero exit, exactly one stderr line ``neuro-ssl CMD: error: ...``, no traceback,
    holding every needle (case-insensitive); returns the line."""
    lines = result.error_lines()
    assert result.code != 0, f"neuro-ssl {command} exited 0; stdout: {result.out[-800:]!r}"
    assert "Traceback" not in result.err, result.err[-3000:]
    assert len(lines) == 1 and lines[0].startswith(f"neuro-ssl {command}: error: "), lines[-5:]
    for needle in needles:
        assert needle.lower() in lines[0].lower(), f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def load_state(path: Path) -> dict:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_tensors(a: dict, b: dict, what: str = "") -> None:
    import torch

    assert a.keys() == b.keys(), what
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"{what}: {len(differ)} tensor(s) differ, e.g. {differ[:3]}"


def check_run_folder(run_dir: Path) -> list[Path]:
    """Every file under a final name parses; returns the ``.tmp-*`` strays (which readers ignore).

    .pt must load with ``weights_only=True``, .csv with pandas, .yaml with ``yaml.safe_load``,
    .json with ``json``. TensorBoard event logs are append-only records (a torn tail is dropped by
    TensorBoard) and are not final-name files in this sense.
    """
    import pandas as pd
    import yaml

    strays = []
    for path in sorted(p for p in Path(run_dir).rglob("*") if p.is_file()):
        if path.name.startswith(".tmp-"):
            strays.append(path)
            continue
        try:
            if path.suffix == ".pt":
                load_state(path)
            elif path.suffix == ".csv":
                pd.read_csv(path)
            elif path.suffix == ".yaml":
                yaml.safe_load(path.read_text())
            elif path.suffix == ".json":
                json.loads(path.read_text())
        except Exception as exc:  # noqa: BLE001 - any failure means a half-written final file
            raise AssertionError(f"{path} is half-written or corrupt: {type(exc).__name__}: {exc}") from None
    return strays
