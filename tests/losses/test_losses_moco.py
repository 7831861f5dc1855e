"""MoCo's InfoNCE against a naive float64 loop, an analytic value, T = 0.01, and what it must ignore.

The cross-rank case (2 gloo ranks equal 1 rank on the joined batch) is in test_losses_distributed.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import _loss_reference as ref
from neuro_ssl.losses import MoCoInfoNCE, NTXent


def _t(a) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a, dtype=np.float64))


@pytest.mark.parametrize("temperature", [0.2, 0.07, 0.01])
@pytest.mark.parametrize("batch, dim, n_queue", [(1, 3, 5), (4, 8, 16), (9, 5, 0), (16, 32, 64)])
def test_matches_naive_loop(rng, batch, dim, n_queue, temperature):
    q, k = rng.standard_normal((2, batch, dim)) * 3.0
    zq = rng.standard_normal((n_queue, dim)) if n_queue else None
    got = MoCoInfoNCE(temperature)(_t(q), _t(k), queue=None if zq is None else (_t(zq), None)).item()
    assert math.isfinite(got)
    assert got == pytest.approx(ref.moco(q, k, temperature, zq), rel=1e-11, abs=1e-11)


def test_symmetric_is_the_mean_of_both_directions(rng):
    q1, q2, k1, k2, zq = (_t(a) for a in rng.standard_normal((5, 6, 4)))
    loss = MoCoInfoNCE(0.1, symmetric=True)(q1, k2, queue=(zq, None), q2=q2, k1=k1).item()
    expected = 0.5 * (ref.moco(q1.numpy(), k2.numpy(), 0.1, zq.numpy()) + ref.moco(q2.numpy(), k1.numpy(), 0.1, zq.numpy()))
    assert loss == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="needs q2"):
        MoCoInfoNCE(0.1, symmetric=True)(q1, k2)
    with pytest.raises(ValueError, match="symmetric=True"):
        MoCoInfoNCE(0.1)(q1, k2, q2=q2, k1=k1)


def test_with_a_queue_only_the_own_key_and_the_queue_count(rng):
    """v2: the batch's other keys and queries are not candidates; changing them changes nothing."""
    q, k, zq = _t(rng.standard_normal((6, 5))), _t(rng.standard_normal((6, 5))), _t(rng.standard_normal((10, 5)))
    loss = MoCoInfoNCE(0.2)
    first = MoCoInfoNCE(0.2)(q[:1], k[:1], queue=zq)
    other_keys = k.clone()
    other_keys[1:] = _t(rng.standard_normal((5, 5)))
    per_query = [MoCoInfoNCE(0.2)(q[i:i + 1], other_keys[i:i + 1], queue=zq) for i in range(6)]
    assert torch.isclose(per_query[0], first, rtol=1e-14, atol=0)
    assert loss(q, other_keys, queue=zq).item() == pytest.approx(torch.stack(per_query).mean().item(), rel=1e-13)
    assert loss(q, k, queue=zq).item() != pytest.approx(NTXent(0.2)(q, k, queue=(zq, None)).item(), rel=1e-3)


def test_analytic_value_with_orthogonal_negatives():
    """q = k, and K queue entries orthogonal to q: l = log(1 + K exp(-1/T)) for every query."""
    q = torch.zeros(3, 8, dtype=torch.float64)
    q[:, 0] = 1.0
    queue = torch.eye(8, dtype=torch.float64)[1:]  # 7 unit vectors orthogonal to e0
    for temperature in (1.0, 0.2, 0.01):
        expected = math.log1p(7 * math.exp(-1 / temperature))
        assert MoCoInfoNCE(temperature)(q, 2 * q, queue=queue).item() == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_keys_and_queue_carry_no_gradient(rng):
    q = _t(rng.standard_normal((4, 6))).requires_grad_()
    k = _t(rng.standard_normal((4, 6))).requires_grad_()
    zq = _t(rng.standard_normal((8, 6))).requires_grad_()
    for queue in (zq, None):
        MoCoInfoNCE(0.1)(q, k, queue=queue).backward()
        assert k.grad is None and zq.grad is None
        assert q.grad is not None and torch.count_nonzero(q.grad) > 0
        q.grad = None


def test_float32_at_t_001_is_finite_and_close_to_float64(rng):
    q, k, zq = rng.standard_normal((3, 32, 16))
    exact = ref.moco(q, k, 0.01, zq)
    got = MoCoInfoNCE(0.01)(*(torch.from_numpy(a).float() for a in (q, k)), queue=torch.from_numpy(zq).float())
    assert torch.isfinite(got) and got.item() == pytest.approx(exact, rel=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        amp = MoCoInfoNCE(0.01)(*(torch.from_numpy(a).float() for a in (q, k)), queue=torch.from_numpy(zq).float())
    assert amp.dtype == torch.float32 and amp.item() == pytest.approx(exact, rel=1e-4)


def test_bad_inputs_say_what_is_wrong():
    with pytest.raises(ValueError, match="temperature"):
        MoCoInfoNCE(0.0)
    with pytest.raises(ValueError, match=r"z1 \(4, 3\) and z2 \(4, 5\)"):
        MoCoInfoNCE()(torch.zeros(4, 3), torch.zeros(4, 5))
    with pytest.raises(ValueError, match=r"queue embeddings must be \(K, 3\)"):
        MoCoInfoNCE()(torch.ones(4, 3), torch.ones(4, 3), queue=torch.ones(5, 4))
