"""CLIP loss: a float64 loop reference (symmetric, temperature, masking), analytic values, T = 0.01,
the learnable temperature's gradient and clamp, and shape errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from neuro_ssl.losses import CLIPLoss
from neuro_ssl.losses.clip import clip_loss


def reference_clip(u, v, temperature, groups=None) -> float:
    """Plain loops in float64 numpy, written from the paper: mean over both directions of
    -log softmax of the true pair, candidates of a query = every row not of its group (but itself)."""
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    u = u / np.linalg.norm(u, axis=1, keepdims=True)
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    n = len(u)
    groups = list(range(n)) if groups is None else list(groups)
    total = 0.0
    for queries, keys in ((u, v), (v, u)):
        for i in range(n):
            candidates = [j for j in range(n) if j == i or groups[j] != groups[i]]
            logits = {j: float(queries[i] @ keys[j]) / temperature for j in candidates}
            top = max(logits.values())
            log_den = top + math.log(sum(math.exp(s - top) for s in logits.values()))
            total += -(logits[i] - log_den)
    return total / (2 * n)


def _pair(seed: int, n: int = 6, dim: int = 5, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, dtype=dtype, generator=gen), torch.randn(n, dim, dtype=dtype, generator=gen)


@pytest.mark.parametrize("temperature", [1.0, 0.3, 0.07, 0.01])
@pytest.mark.parametrize("groups", [None, [0, 1, 0, 2, 1, 3], [4, 4, 4, 4, 4, 4]])
def test_matches_float64_loop_reference(temperature, groups):
    u, v = _pair(0)
    loss_fn = CLIPLoss(temperature, learnable=False)
    stored = 1.0 / loss_fn.logit_scale.item()  # t is a float32 buffer: T as stored, 1e-7 from the argument
    assert stored == pytest.approx(temperature, rel=1e-6)
    loss = loss_fn(u, v, groups=None if groups is None else torch.tensor(groups))
    assert loss.item() == pytest.approx(reference_clip(u, v, stored, groups), rel=1e-12)


def test_symmetric_in_the_two_modalities_and_masking_is_not_a_no_op():
    u, v = _pair(1)
    groups = torch.tensor([0, 0, 1, 1, 2, 2])
    loss = CLIPLoss(0.1, learnable=False)
    assert loss(u, v, groups=groups).item() == pytest.approx(loss(v, u, groups=groups).item(), rel=1e-14)
    assert loss(u, v, groups=torch.arange(6)).item() == pytest.approx(loss(u, v).item(), rel=1e-14)
    assert abs(loss(u, v, groups=groups).item() - loss(u, v).item()) > 1e-3


def test_analytic_values():
    """Identical embeddings: every logit equal, loss log(B); one group for all: only the match, loss 0."""
    same = torch.ones(5, 3, dtype=torch.float64)
    assert CLIPLoss(0.07, learnable=False)(same, same).item() == pytest.approx(math.log(5), rel=1e-14)
    u, v = _pair(2, n=5)
    assert CLIPLoss(0.07, learnable=False)(u, v, groups=torch.zeros(5)).item() == pytest.approx(0.0, abs=1e-14)
    eye = torch.eye(4, dtype=torch.float64)  # orthogonal pairs at T: -log(e^{1/T} / (e^{1/T} + 3))
    loss_fn = CLIPLoss(0.5, learnable=False)
    scale = loss_fn.logit_scale.item()
    expected = -math.log(math.exp(scale) / (math.exp(scale) + 3))
    assert loss_fn(eye, eye).item() == pytest.approx(expected, rel=1e-14)


def test_temperature_001_is_finite_in_float32_and_close_to_float64():
    u, v = _pair(3, n=8, dim=16, dtype=torch.float32)
    u.requires_grad_(True)
    v.requires_grad_(True)
    loss_fn = CLIPLoss(0.01)
    loss = loss_fn(u * 50, v * 50)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(u.grad).all() and torch.isfinite(loss_fn.log_scale.grad)
    assert loss.item() == pytest.approx(reference_clip(u.detach(), v.detach(), 1 / loss_fn.logit_scale.item()), rel=1e-4)


def test_bf16_autocast_gives_a_float32_loss():
    u, v = _pair(4, dtype=torch.float32)
    head = torch.nn.Linear(5, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = CLIPLoss()(head(u), head(v))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_learnable_temperature_gradient_matches_finite_difference():
    u, v = _pair(5)
    loss_fn = CLIPLoss(0.2).double()
    loss_fn(u, v).backward()
    t, eps = loss_fn.log_scale.item(), 1e-6
    numeric = (reference_clip(u, v, math.exp(-(t + eps))) - reference_clip(u, v, math.exp(-(t - eps)))) / (2 * eps)
    assert loss_fn.log_scale.grad.item() == pytest.approx(numeric, rel=1e-6)
    assert torch.autograd.gradcheck(lambda a, b: clip_loss(a, b, 7.0, torch.tensor([0, 1, 0, 2, 1, 3])),
                                    (u.requires_grad_(), v.requires_grad_()))


def test_logit_scale_starts_at_1_over_007_and_is_clamped_at_100():
    loss_fn = CLIPLoss()
    assert loss_fn.logit_scale.item() == pytest.approx(1 / 0.07, rel=1e-6)
    assert isinstance(loss_fn.log_scale, torch.nn.Parameter) and "log_scale" in loss_fn.state_dict()
    with torch.no_grad():
        loss_fn.log_scale.fill_(9.0)
    assert loss_fn.logit_scale.item() == pytest.approx(100.0, rel=1e-6)
    loss_fn.clamp_()
    assert loss_fn.log_scale.item() == pytest.approx(math.log(100.0), rel=1e-6)
    with torch.no_grad():
        loss_fn.log_scale.fill_(-1.0)
    loss_fn.clamp_()
    assert loss_fn.logit_scale.item() == pytest.approx(1.0)  # T never above 1
    fixed = CLIPLoss(0.1, learnable=False)
    assert not list(fixed.parameters()) and fixed.logit_scale.item() == pytest.approx(10.0)


def test_bad_inputs_name_the_shapes():
    u, v = _pair(6)
    with pytest.raises(ValueError, match=r"u \(6, 5\) and v \(5, 5\)"):
        CLIPLoss()(u, v[:5])
    with pytest.raises(ValueError, match=r"groups must be \(6,\)"):
        CLIPLoss()(u, v, groups=torch.zeros(4))
    with pytest.raises(ValueError, match="temperature"):
        CLIPLoss(0.001)
