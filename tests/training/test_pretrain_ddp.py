"""Distributed pretraining: a real ``torchrun`` with 2 gloo processes on CPU.

Two ranks with per-rank batch B must train exactly what one process trains with batch 2B (the
losses gather embeddings across ranks, DDP averages gradients, the loop rescales): with
GroupNorm and a BatchNorm-free head nothing depends on how the batch is split, so the weights
agree to float rounding.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import torch

from neuro_ssl._utils.seeding import seed_everything
from neuro_ssl.cli.main import main
from neuro_ssl.models import ContrastiveModel, ProjectionHead, build_encoder

COMMON = ["--loss", "simclr", "--arch", "resnet10", "--width", "0.25", "--norm", "group", "--proj-dims", "16",
          "--spacing", "8", "--shape", "24,24,24", "--epochs", "1", "--lr", "1e-3", "--warmup", "0",
          "--workers", "0", "--device", "cpu", "--seed", "5"]


def test_torchrun_two_ranks_equal_one_process_with_double_batch(tiny_cohort, tmp_path, monkeypatch):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NEURO_SSL_QUIET": "1",
           "NEURO_SSL_CACHE": str(tmp_path / "cache")}
    ddp_run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "neuro_ssl", "pretrain", "--manifest", str(tiny_cohort), "--out", str(ddp_run),
           "--batch-size", "3", *COMMON]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (ddp_run / "encoder.pt").is_file() and "encoder:" in done.stdout
    n_scans = int((pd.read_csv(tiny_cohort)["modality"] == "T1w").sum())
    metrics = pd.read_csv(ddp_run / "metrics.csv")
    assert metrics["step"].tolist() == [n_scans // 6]  # global batch 2 ranks x 3

    monkeypatch.setenv("NEURO_SSL_CACHE", str(tmp_path / "cache"))
    single = tmp_path / "single"
    assert main(["pretrain", "--manifest", str(tiny_cohort), "--out", str(single), "--batch-size", "6", *COMMON]) == 0
    a = torch.load(ddp_run / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(single / "checkpoint.pt", weights_only=True)["model"]
    assert a.keys() == b.keys()
    # the loss is the same number (to float rounding); Adam divides each gradient by its own running
    # scale, so rounding on near-zero gradients moves weights by a few 1e-5 (a step is lr = 1e-3)
    single_loss = pd.read_csv(single / "metrics.csv")["loss"].iloc[0]
    assert abs(metrics["loss"].iloc[0] - single_loss) < 1e-6 * single_loss
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=2e-4, msg=key)
    # and training did move the weights (the comparison is not between two untouched inits)
    seed_everything(5)
    encoder = build_encoder("resnet10", 1, "group", 0.25)
    init = ContrastiveModel(encoder, ProjectionHead(encoder.out_features, (16,))).state_dict()
    assert max(float((a[k] - init[k]).abs().max()) for k in a) > 1e-3
