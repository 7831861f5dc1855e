"""Pretraining end to end on real NIfTI files: outputs, determinism, exact resume, AMP, MoCo, cross-modal views."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
import yaml

from neuro_ssl.data.manifest import read_manifest
from neuro_ssl.models import load_encoder
from neuro_ssl.training.config import PretrainConfig
from neuro_ssl.training.pretrain import Pretrainer, pretrain

#: tiny but real: 8 mm voxels, 24^3 grid, resnet10 at a quarter of its width
TINY = dict(arch="resnet10", width=0.25, spacing_mm=(8.0, 8.0, 8.0), shape=(24, 24, 24), proj_dims=(32, 16),
            batch_size=4, epochs=1, lr=1e-3, warmup_epochs=0.5, workers=0, seed=0)


@pytest.fixture(scope="module")
def manifest(tiny_cohort):
    return read_manifest(tiny_cohort)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("pretrain-cache"))


def _config(cache_dir, **overrides) -> PretrainConfig:
    return PretrainConfig(**{**TINY, "cache_dir": cache_dir, **overrides})


def _weights(path):
    return torch.load(path, weights_only=True)


def _assert_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_outputs_of_a_run(manifest, cache_dir, tmp_path):
    config = _config(cache_dir, loss="yaware", meta=("age",), sigma=5.0)
    summary = pretrain(config, manifest, tmp_path / "run", val_manifest_df=manifest,
                       sources={"manifest": "train.csv"})
    run = tmp_path / "run"
    assert {"encoder.pt", "encoder.yaml", "checkpoint.pt", "config.yaml", "metrics.csv"} <= {p.name for p in run.iterdir()}
    assert any(p.name.startswith("events.out.tfevents") for p in run.iterdir())
    encoder, meta = load_encoder(run / "encoder.pt")
    t1w = manifest[manifest["modality"] == "T1w"]
    assert meta["subjects"] == sorted(t1w["subject_id"].unique()) and meta["loss"] == "yaware"
    assert meta["preprocess"] == {"spacing_mm": [8.0] * 3, "shape": [24] * 3, "normalization": "auto", "modalities": ["T1w"],
                                  "mask_background": True}
    assert (meta["arch"], meta["norm"], meta["in_channels"]) == ("resnet10", "batch", 1)
    metrics = pd.read_csv(run / "metrics.csv")
    assert list(metrics.columns[:5]) == ["epoch", "step", "loss", "lr", "volumes_per_s"]
    assert metrics["step"].tolist() == [len(t1w) // 4] and summary["steps"] == len(t1w) // 4
    assert 0 < metrics["probe_age_mae"].iloc[0] < 30 and metrics["probe_n"].iloc[0] == len(t1w)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["manifest"] == "train.csv"
    assert PretrainConfig.from_dict(saved) == config
    assert summary["n_scans"] == len(t1w) and summary["skipped"] == {}


def test_same_seed_gives_bit_identical_weights(manifest, cache_dir, tmp_path):
    runs = []
    for name in ("a", "b"):
        pretrain(_config(cache_dir, loss="simclr", seed=3, workers=0 if name == "a" else 1), manifest, tmp_path / name)
        runs.append(_weights(tmp_path / name / "checkpoint.pt"))
    _assert_identical(runs[0]["model"], runs[1]["model"])  # also across worker layouts
    _assert_identical(runs[0]["optimizer"]["state"][0], runs[1]["optimizer"]["state"][0])
    from neuro_ssl._utils.seeding import seed_everything
    from neuro_ssl.models import build_encoder

    seed_everything(3)
    init = build_encoder("resnet10", 1, "batch", 0.25).state_dict()
    trained = {k[len("encoder."):]: v for k, v in runs[0]["model"].items() if k.startswith("encoder.")}
    assert any(not torch.equal(init[k], trained[k]) for k in init if init[k].is_floating_point())


class _Killed(Exception):
    pass


def test_resume_mid_epoch_ends_bit_identical(manifest, cache_dir, tmp_path, monkeypatch):
    """y-Aware + MoCo queue (the most state: target network, queue, scheduler, epoch sums)."""
    config = _config(cache_dir, loss="yaware", meta=("age",), queue=8, momentum=0.9, epochs=2,
                     checkpoint_every=2, accumulate=1)
    pretrain(config, manifest, tmp_path / "straight")
    per_epoch = int(pd.read_csv(tmp_path / "straight" / "metrics.csv")["step"].iloc[0])
    assert per_epoch >= 4  # the cohort gives a second epoch with mid-epoch checkpoints in it
    # the last checkpoint before the kill: mid-epoch 2, on a step that checkpoint_every=2 saves
    saved = next(s for s in range(per_epoch + 3, per_epoch, -1) if s % 2 == 0)
    real_step = Pretrainer._optimizer_step

    def dies_mid_second_epoch(self, group, data):
        if self.global_step == per_epoch + 3:
            raise _Killed()
        return real_step(self, group, data)

    monkeypatch.setattr(Pretrainer, "_optimizer_step", dies_mid_second_epoch)
    with pytest.raises(_Killed):
        pretrain(config, manifest, tmp_path / "resumed")
    stopped_at = _weights(tmp_path / "resumed" / "checkpoint.pt")
    assert (stopped_at["epoch"], stopped_at["step_in_epoch"], stopped_at["global_step"]) == \
        (1, saved - per_epoch, saved)
    monkeypatch.setattr(Pretrainer, "_optimizer_step", real_step)
    pretrain(config, manifest, tmp_path / "resumed", resume=True)

    straight = _weights(tmp_path / "straight" / "checkpoint.pt")
    resumed = _weights(tmp_path / "resumed" / "checkpoint.pt")
    for part in ("model", "target", "queue"):
        _assert_identical(straight[part], resumed[part])
    _assert_identical(_weights(tmp_path / "straight" / "encoder.pt")["state_dict"],
                      _weights(tmp_path / "resumed" / "encoder.pt")["state_dict"])
    a = pd.read_csv(tmp_path / "straight" / "metrics.csv")
    b = pd.read_csv(tmp_path / "resumed" / "metrics.csv")
    pd.testing.assert_frame_equal(a.drop(columns="volumes_per_s"), b.drop(columns="volumes_per_s"))


def test_resume_refuses_changed_options(manifest, cache_dir, tmp_path):
    pretrain(_config(cache_dir, loss="simclr"), manifest, tmp_path / "run")
    from neuro_ssl.errors import ConfigError

    with pytest.raises(ConfigError, match=r"other options \(temperature\).*--resume"):
        pretrain(_config(cache_dir, loss="simclr", temperature=0.2), manifest, tmp_path / "run", resume=True)
    # more epochs is allowed: training continues from epoch 1
    summary = pretrain(_config(cache_dir, loss="simclr", epochs=2), manifest, tmp_path / "run", resume=True)
    assert summary["epochs"] == 2


def test_bf16_autocast_on_cpu_gives_finite_loss(manifest, cache_dir, tmp_path):
    summary = pretrain(_config(cache_dir, loss="simclr", amp="bf16", accumulate=2), manifest, tmp_path / "run")
    assert torch.isfinite(torch.tensor(summary["final_loss"]))
    micro_batches = (manifest["modality"] == "T1w").sum() // 4
    assert summary["steps"] == -(-micro_batches // 2)  # the last optimizer step takes the odd micro-batch


def test_supcon_on_diagnosis_and_cross_modal_views(manifest, cache_dir, tmp_path):
    supcon = pretrain(_config(cache_dir, loss="supcon", meta=("diagnosis",), norm="group"), manifest, tmp_path / "s")
    assert supcon["steps"] >= 1
    cross = pretrain(_config(cache_dir, loss="simclr", views=("T1w", "FDG")), manifest, tmp_path / "x")
    _, meta = load_encoder(tmp_path / "x" / "encoder.pt")
    assert meta["in_channels"] == 1 and meta["preprocess"]["modalities"] == ["T1w", "FDG"]
    assert cross["n_scans"] == len(manifest.groupby(["subject_id", "session_id"]).filter(
        lambda g: set(g["modality"]) >= {"T1w", "FDG"}).groupby(["subject_id", "session_id"]))


def test_accumulated_micro_batches_all_reach_the_queue(manifest, cache_dir, tmp_path):
    """With --accumulate 2 each optimizer step enqueues the keys of all its micro-batches, so after
    an epoch the queue holds every micro-batch's keys (only the last one's went in before)."""
    config = _config(cache_dir, loss="yaware", meta=("age",), queue=64, momentum=0.9, accumulate=2)
    pretrain(config, manifest, tmp_path / "run")
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    n_scans = int((manifest["modality"] == "T1w").sum())
    micro_batches = n_scans // 4  # groups of 2 (the last may be 1): fewer optimizer steps than micro-batches
    assert state["global_step"] < micro_batches
    assert int(state["queue"]["n_filled"]) == min(64, micro_batches * 4)


def test_every_loss_name_has_an_objective():
    """``--help`` lists config.LOSSES without importing torch; the objectives registry builds them."""
    from neuro_ssl.training.config import LOSSES
    from neuro_ssl.training.objectives import OBJECTIVES

    assert set(LOSSES) == set(OBJECTIVES)
