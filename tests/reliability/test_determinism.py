"""The same seed gives bit-identical pretraining and fine-tuning on CPU, through the CLI.

The second run of each pair uses ``--workers 2`` (pretrain's default) where the first used 0:
the trainers promise that data order and augmentation are functions of (seed, epoch, index)
only, so DataLoader worker processes must not change a single bit. (Runs in a separate
process, killed and resumed, are compared in ``test_kill_resume.py``.)
"""

from __future__ import annotations

import pandas as pd

from .corpus import write_manifest
from .helpers import PRETRAIN, assert_same_tensors, load_state, run_cli


def _with(argv: list, flag: str, value: str) -> list:
    argv = list(argv)
    argv[argv.index(flag) + 1] = value
    return argv


def test_pretraining_twice_with_one_seed_is_bit_identical(cohort, cache_dir, reference_run, tmp_path):
    run = tmp_path / "again"
    result = run_cli(["pretrain", "--manifest", cohort, "--out", run, "--cache-dir", cache_dir,
                      *_with(PRETRAIN, "--workers", "2")])
    assert result.code == 0, result.err[-3000:]
    first, second = load_state(reference_run / "checkpoint.pt"), load_state(run / "checkpoint.pt")
    for part in ("model", "target", "queue"):
        assert_same_tensors(first[part], second[part], f"{part} (workers 0 vs 2)")
    assert_same_tensors(first["optimizer"]["state"][0], second["optimizer"]["state"][0], "optimizer moments")
    assert_same_tensors(load_state(reference_run / "encoder.pt")["state_dict"],
                        load_state(run / "encoder.pt")["state_dict"], "encoder.pt")
    a, b = pd.read_csv(reference_run / "metrics.csv"), pd.read_csv(run / "metrics.csv")
    pd.testing.assert_frame_equal(a.drop(columns="volumes_per_s"), b.drop(columns="volumes_per_s"))


def test_fine_tuning_twice_with_one_seed_is_bit_identical(good_rows, cache_dir, reference_run, tmp_path):
    """Full fine-tuning (encoder and head train, BatchNorm statistics move) on the pretrained encoder."""
    manifest = write_manifest(tmp_path / "train.csv", good_rows[good_rows["diagnosis"].isin(["CN", "AD"])])
    argv = ["finetune", "--manifest", manifest, "--encoder", reference_run / "encoder.pt", "--mode", "full",
            "--classes", "CN,AD", "--epochs", "2", "--batch-size", "4", "--lr", "1e-3", "--seed", "3",
            "--device", "cpu", "--cache-dir", cache_dir, "--workers", "0"]
    runs = []
    for name, workers in (("a", "0"), ("b", "2")):
        result = run_cli(_with(argv, "--workers", workers) + ["--out", tmp_path / name])
        assert result.code == 0, result.err[-3000:]
        runs.append(tmp_path / name)
    a, b = (load_state(run / "model.pt") for run in runs)
    assert_same_tensors(a["state_dict"], b["state_dict"], "model.pt (workers 0 vs 2)")
    assert_same_tensors(load_state(runs[0] / "checkpoint.pt")["model"], load_state(runs[1] / "checkpoint.pt")["model"],
                        "last checkpoint")
    pretrained = load_state(reference_run / "encoder.pt")["state_dict"]
    tuned = {k[len("encoder."):]: v for k, v in a["state_dict"].items() if k.startswith("encoder.")}
    assert any(not (tuned[k] == pretrained[k]).all() for k in pretrained)  # full mode did move the encoder
    ma, mb = (pd.read_csv(run / "metrics.csv").drop(columns="elapsed_s") for run in runs)
    pd.testing.assert_frame_equal(ma, mb)
