"""Shared training parts: schedule maths, data order, seeded items, RNG/checkpoint round trips, logs."""

from __future__ import annotations

import math
import random

import numpy as np
import pandas as pd
import pytest
import torch

from neuro_ssl.errors import CheckpointError, ConfigError, ManifestError
from neuro_ssl.training import loop


def test_warmup_cosine_matches_closed_form():
    total, warmup, lr = 20, 4, 0.5
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = loop.build_scheduler(opt, total, warmup)
    seen = []
    for _ in range(total):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [lr * (s + 1) / warmup if s < warmup else
                lr * 0.5 * (1 + math.cos(math.pi * (s - warmup) / (total - warmup))) for s in range(total)]
    np.testing.assert_allclose(seen, expected, rtol=1e-12)
    assert loop.WarmupCosine(10, 0)(10) == 0.0 and loop.WarmupCosine(10, 0, min_ratio=0.1)(99) == pytest.approx(0.1)


def test_scheduler_state_round_trips():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = loop.build_scheduler(opt, 10, 2)
    for _ in range(3):
        opt.step()
        sched.step()
    state = sched.state_dict()
    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched2 = loop.build_scheduler(opt2, 10, 2)
    sched2.load_state_dict(state)
    assert sched2.get_last_lr() == sched.get_last_lr() and sched2.last_epoch == 3


def test_no_weight_decay_on_biases_and_norms():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    opt = loop.build_optimizer(model, "adamw", 1e-3, 0.1)
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decayed == {id(model[0].weight)}
    assert isinstance(loop.build_optimizer(model, "adam", 1e-3, 0.0), torch.optim.Adam)
    with pytest.raises(ConfigError):
        loop.build_optimizer(model, "sgd", 1e-3, 0.0)


def _flatten(sampler):
    return [key for batch in sampler for key in batch]


def test_sampler_order_depends_only_on_seed_and_epoch():
    a = loop.EpochBatchSampler(23, 4, seed=7)
    b = loop.EpochBatchSampler(23, 4, seed=7)
    a.set_epoch(3)
    b.set_epoch(3)
    assert list(a) == list(b) and len(a) == 5  # 23 // 4, the last 3 dropped
    first = [i for _, i in _flatten(a)]
    a.set_epoch(4)
    assert [i for _, i in _flatten(a)] != first
    assert all(e == 4 for e, _ in _flatten(a))
    assert len(set(first)) == 20


def test_sampler_shards_ranks_disjointly_and_equally():
    ranks = [loop.EpochBatchSampler(21, 3, seed=1, rank=r, world_size=2) for r in range(2)]
    for s in ranks:
        s.set_epoch(2)
    per_rank = [_flatten(s) for s in ranks]
    assert len(ranks[0]) == len(ranks[1]) == 3  # 21 // (3 * 2)
    assert not set(per_rank[0]) & set(per_rank[1])
    single = loop.EpochBatchSampler(21, 6, seed=1)
    single.set_epoch(2)
    assert sorted(per_rank[0] + per_rank[1]) == sorted(_flatten(single))


def test_sampler_resumes_mid_epoch():
    s = loop.EpochBatchSampler(30, 4, seed=0)
    s.set_epoch(1)
    full = list(s)
    s.set_epoch(1, start_batch=3)
    assert list(s) == full[3:] and len(s) == len(full) - 3


class _RandomItems(torch.utils.data.Dataset):
    """Items drawn from the global RNGs: what an augmentation that uses them looks like."""

    def __len__(self):
        return 10

    def __getitem__(self, i):
        return (random.random(), float(np.random.rand()), float(torch.rand(1)))


def test_seeded_items_are_a_function_of_the_key_and_leave_rngs_alone():
    items = loop.SeededItems(_RandomItems(), seed=3)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    first = items[(2, 5)]
    assert torch.equal(torch.get_rng_state(), before)
    _ = items[(2, 6)], items[(1, 5)]
    assert items[(2, 5)] == first
    assert items[(2, 6)] != first and items[(1, 5)] != first
    assert loop.SeededItems(_RandomItems(), seed=4)[(2, 5)] != first


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.randn()  # leaves a cached Gaussian in numpy's state
    state = loop.rng_state()
    expected = (random.random(), np.random.randn(), torch.rand(3))
    loop.save_checkpoint(tmp_path / "checkpoint.pt", {"rng": state, "step": 5})
    loaded = loop.load_checkpoint(tmp_path / "checkpoint.pt")
    loop.set_rng_state(loaded["rng"])
    got = (random.random(), np.random.randn(), torch.rand(3))
    assert got[0] == expected[0] and got[1] == expected[1] and torch.equal(got[2], expected[2])
    assert loaded["step"] == 5


def test_training_checkpoint_format_is_checked(tmp_path):
    torch.save({"format": "something-else"}, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="c.pt"):
        loop.load_checkpoint(tmp_path / "c.pt")


def test_metrics_logger_truncates_on_resume(tmp_path):
    logger = loop.MetricsLogger(tmp_path, tensorboard=False)
    for step in (5, 10, 15):
        logger.log({"epoch": step // 5, "step": step, "loss": 1.0 / step})
    resumed = loop.MetricsLogger(tmp_path, resume_step=10, tensorboard=False)
    resumed.log({"epoch": 3, "step": 15, "loss": 0.5})
    table = pd.read_csv(tmp_path / "metrics.csv")
    assert table["step"].tolist() == [5, 10, 15] and table["loss"].iloc[-1] == 0.5
    silent = loop.MetricsLogger(tmp_path / "other", enabled=False)
    silent.log({"epoch": 1, "step": 1})
    assert not (tmp_path / "other").exists()


def test_tensorboard_events_are_written(tmp_path):
    logger = loop.MetricsLogger(tmp_path)
    logger.log({"epoch": 1, "step": 3, "loss": 0.25})
    logger.close()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path))
    events.Reload()
    (scalar,) = events.Scalars("epoch/loss")
    assert scalar.step == 3 and scalar.value == pytest.approx(0.25)


def test_amp_modes():
    cpu = torch.device("cpu")
    with loop.autocast("bf16", cpu):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with loop.autocast("none", cpu):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    assert loop.make_grad_scaler("bf16", cpu) is None
    with pytest.raises(ConfigError, match="fp16 needs a CUDA"):
        loop.check_amp("fp16", cpu)
    with pytest.raises(ConfigError):
        loop.resolve_device("tpu")


def test_too_few_scans_for_one_batch():
    assert loop.count_batches_or_fail(9, 4, 2, "m.csv") == 1
    with pytest.raises(ManifestError, match="m.csv has 7 usable scan.*one batch of 4 x 2 ranks"):
        loop.count_batches_or_fail(7, 4, 2, "m.csv")
