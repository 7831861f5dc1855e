"""The GPU pretraining benchmark runs end to end: its --quick mode on the CPU, in a subprocess.

No GPU is needed (and no timing is asserted): the script must build the product's Pretrainer for
each variant, feed it from the real data path, count FLOPs, and print its table and ratio lines.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_pretrain.py"


def test_gpu_pretrain_quick_runs_on_cpu(tiny_cohort, tmp_path):
    out = tmp_path / "gpu_pretrain.csv"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NEURO_SSL_QUIET": "1"}
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--device", "cpu", "--manifest", str(tiny_cohort),
                           "--work", str(tmp_path / "work"), "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    table = pd.read_csv(out)
    assert list(table["variant"]) == ["fp32", "bf16+cl"]
    assert (table["scans_per_s"] > 0).all() and (table["model_alone_scans_per_s"] > 0).all()
    assert table["data_wait_fraction"].between(0, 1).all()
    assert (table["tflop_per_step"] > 0).all()  # FlopCounterMode saw the convolutions
    ratio_lines = [line for line in done.stdout.splitlines() if line.startswith("ratio ")]
    assert ratio_lines[0].startswith("ratio resnet10 bf16+cl / fp32 ")
    assert ratio_lines[-1].startswith("ratio resnet10 pipeline / model alone ")
