"""kill -9 in the middle of pretraining, then --resume: same weights as a run that never stopped.

Real processes: the CLI runs as ``python -m neuro_ssl pretrain`` and is SIGKILLed once a
mid-epoch checkpoint exists (possibly while it writes the next one); every file left under a
final name must load, and the resumed run must end bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import torch

from neuro_ssl.models import load_encoder
from neuro_ssl.training.loop import load_checkpoint

ARGS = ["--loss", "yaware", "--meta", "age", "--queue", "8", "--arch", "resnet10", "--width", "0.25",
        "--proj-dims", "16", "--spacing", "8", "--shape", "24,24,24", "--epochs", "3", "--batch-size", "4",
        "--workers", "0", "--warmup", "1", "--checkpoint-every", "1", "--device", "cpu", "--seed", "2"]


def _command(manifest, out, *extra):
    return [sys.executable, "-m", "neuro_ssl", "pretrain", "--manifest", str(manifest), "--out", str(out), *ARGS, *extra]


def _env(tmp_path):
    return {**os.environ, "OMP_NUM_THREADS": "1", "NEURO_SSL_QUIET": "1", "NEURO_SSL_CACHE": str(tmp_path / "cache")}


def _step_of(checkpoint) -> int:
    try:
        return int(load_checkpoint(checkpoint)["global_step"])
    except Exception:  # noqa: BLE001 - not there yet
        return -1


def test_kill_during_pretraining_then_resume(tiny_cohort, tmp_path):
    env = _env(tmp_path)
    straight = tmp_path / "straight"
    done = subprocess.run(_command(tiny_cohort, straight), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_command(tiny_cohort, killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while _step_of(killed / "checkpoint.pt") < 7 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"

    # whatever was left under a final name is whole
    stopped = load_checkpoint(killed / "checkpoint.pt")
    assert 7 <= stopped["global_step"] < 15
    load_encoder(killed / "encoder.pt")
    pd.read_csv(killed / "metrics.csv")

    resumed = subprocess.run(_command(tiny_cohort, killed, "--resume"), env=env, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming at epoch" in resumed.stderr
    a = torch.load(straight / "checkpoint.pt", weights_only=True)
    b = torch.load(killed / "checkpoint.pt", weights_only=True)
    for part in ("model", "target", "queue"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part}.{key}"
    metrics_a, metrics_b = pd.read_csv(straight / "metrics.csv"), pd.read_csv(killed / "metrics.csv")
    assert metrics_b["epoch"].tolist() == [1, 2, 3]
    pd.testing.assert_series_equal(metrics_a["loss"], metrics_b["loss"])
