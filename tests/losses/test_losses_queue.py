"""MemoryQueue ring buffer (order, wrap-around, persistence) and the momentum (EMA) update."""

from __future__ import annotations

import io

import pytest
import torch

from neuro_ssl.losses import MemoryQueue, momentum_update


def _keys(start: int, n: int, dim: int = 3) -> torch.Tensor:
    return torch.arange(start, start + n, dtype=torch.float32)[:, None].expand(n, dim).clone()


def test_empty_queue_returns_nothing():
    zq, yq = MemoryQueue(5, 3).get()
    assert zq.shape == (0, 3) and yq is None
    zq, yq = MemoryQueue(5, 3, y_dim=2).get()
    assert zq.shape == (0, 3) and yq.shape == (0, 2)


def test_ring_buffer_overwrites_the_oldest_and_stores_y():
    queue = MemoryQueue(5, 3, y_dim=1)
    queue.enqueue(_keys(0, 3), torch.arange(0, 3.0))
    assert len(queue) == 3
    queue.enqueue(_keys(3, 4), torch.arange(3, 7.0))  # 7 keys into 5 slots: 0 and 1 are gone
    zq, yq = queue.get()
    assert len(queue) == 5
    assert sorted(zq[:, 0].tolist()) == [2, 3, 4, 5, 6]
    assert torch.equal(zq[:, 0], yq[:, 0])  # each key keeps its own y
    queue.enqueue(_keys(10, 8), torch.arange(10, 18.0))  # more than size: the last 5 stay
    assert sorted(queue.get()[0][:, 0].tolist()) == [13, 14, 15, 16, 17]


def test_get_is_a_detached_copy_and_enqueue_detaches():
    queue = MemoryQueue(4, 3)
    z = _keys(0, 2).requires_grad_()
    queue.enqueue(z * 2)
    zq, _ = queue.get()
    assert not zq.requires_grad
    zq += 100
    assert queue.get()[0].max().item() == 2.0


def test_state_dict_round_trip_restores_the_queue():
    queue = MemoryQueue(4, 3, y_dim=1)
    queue.enqueue(_keys(0, 3), torch.arange(3.0))
    buffer = io.BytesIO()
    torch.save(queue.state_dict(), buffer)
    buffer.seek(0)
    restored = MemoryQueue(4, 3, y_dim=1)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    for a, b in zip(queue.get(), restored.get()):
        assert torch.equal(a, b)
    restored.enqueue(_keys(3, 2), torch.arange(3.0, 5.0))
    queue.enqueue(_keys(3, 2), torch.arange(3.0, 5.0))
    assert torch.equal(queue.z, restored.z) and int(restored.next_row) == 1


def test_queue_errors():
    with pytest.raises(ValueError, match="size must be an integer >= 1"):
        MemoryQueue(0, 3)
    with pytest.raises(ValueError, match="y_dim must be an integer >= 0"):
        MemoryQueue(4, 3, y_dim=-1)
    with pytest.raises(ValueError, match=r"keys must be \(n, 3\)"):
        MemoryQueue(4, 3).enqueue(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="stores no y"):
        MemoryQueue(4, 3).enqueue(torch.zeros(2, 3), torch.zeros(2))
    with pytest.raises(ValueError, match="pass y"):
        MemoryQueue(4, 3, y_dim=1).enqueue(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"must be \(2, 2\)"):
        MemoryQueue(4, 3, y_dim=2).enqueue(torch.zeros(2, 3), torch.zeros(2))


def _net() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))


def test_momentum_update_is_an_ema_of_parameters_and_copies_buffers():
    torch.manual_seed(0)
    online, target = _net(), _net()
    online[1].running_mean.fill_(3.0)
    before = [p.clone() for p in target.parameters()]
    momentum_update(online, target, 0.9)
    for t, b, o in zip(target.parameters(), before, online.parameters()):
        assert torch.allclose(t, 0.9 * b + 0.1 * o, rtol=0, atol=1e-7)
    assert torch.equal(target[1].running_mean, online[1].running_mean)
    momentum_update(online, target, 0.0)
    assert all(torch.equal(t, o) for t, o in zip(target.parameters(), online.parameters()))


def test_momentum_update_refuses_mismatched_modules():
    with pytest.raises(ValueError, match="momentum m"):
        momentum_update(_net(), _net(), 1.5)
    with pytest.raises(ValueError, match="differ in parameters"):
        momentum_update(_net(), torch.nn.Linear(3, 4), 0.9)
    with pytest.raises(ValueError, match=r"online \(4, 3\) vs target \(5, 3\)"):
        momentum_update(torch.nn.Linear(3, 4), torch.nn.Linear(3, 5), 0.9)
