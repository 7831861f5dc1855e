"""Autoencoder terms against independent references: float64 numpy for the masked MSE, torch.distributions for the KL."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuro_ssl.losses import brain_mask, gaussian_kl, masked_mse


def _reference_mse(xhat: np.ndarray, x: np.ndarray) -> float:
    """Loop over volumes in float64: squared error over brain voxels and channels, per volume, then the mean."""
    values = []
    for n in range(x.shape[0]):
        inside = np.any(x[n] != 0, axis=0)
        diff = (xhat[n].astype(np.float64) - x[n].astype(np.float64))[:, inside]
        values.append(float((diff ** 2).sum() / diff.size) if diff.size else 0.0)
    return float(np.mean(values))


def test_masked_mse_matches_a_float64_reference():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 2, 6, 5, 4)).astype(np.float32)
    x[:, :, :2] = 0.0                      # background: every channel 0
    x[1, 0, 3] = 0.0                       # one channel 0 inside the brain still counts (the other is not)
    x[2] = 0.0                             # an empty mask counts 0
    xhat = rng.normal(size=x.shape).astype(np.float32)
    got = masked_mse(torch.from_numpy(xhat), torch.from_numpy(x))
    assert got.dtype == torch.float32
    assert float(got) == pytest.approx(_reference_mse(xhat, x), rel=1e-6)
    assert int(brain_mask(torch.from_numpy(x))[0].sum()) == 4 * 5 * 4


def test_masked_mse_ignores_the_background_and_is_zero_for_a_perfect_reconstruction():
    x = torch.zeros(2, 1, 4, 4, 4)
    x[:, :, 1:3, 1:3, 1:3] = torch.randn(2, 1, 2, 2, 2)
    noisy_background = x + 10.0 * (x == 0)
    assert float(masked_mse(noisy_background, x)) == 0.0
    assert float(masked_mse(x, x)) == 0.0
    assert float(masked_mse(x.to(torch.bfloat16), x)) < 1e-3  # computed in float32 under autocast dtypes


def test_masked_mse_gradient_reaches_only_brain_voxels():
    x = torch.zeros(1, 1, 3, 3, 3)
    x[0, 0, 1, 1, 1] = 2.0
    xhat = torch.zeros_like(x, requires_grad=True)
    masked_mse(xhat, x).backward()
    assert float(xhat.grad[0, 0, 1, 1, 1]) == pytest.approx(-4.0)  # d/dxhat (xhat - 2)^2 at 0
    assert int((xhat.grad != 0).sum()) == 1


def test_gaussian_kl_equals_torch_distributions():
    torch.manual_seed(0)
    mu, log_var = torch.randn(5, 7, dtype=torch.float64), torch.randn(5, 7, dtype=torch.float64)
    q = torch.distributions.Normal(mu, (0.5 * log_var).exp())
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    expected = torch.distributions.kl_divergence(q, p).sum(1).mean()
    assert float(gaussian_kl(mu, log_var)) == pytest.approx(float(expected), rel=1e-12)
    assert float(gaussian_kl(torch.zeros(3, 4), torch.zeros(3, 4))) == 0.0  # posterior = prior


def test_shape_errors_quote_both_shapes():
    with pytest.raises(ValueError, match=r"xhat \(1, 1, 2, 2, 2\) and x \(1, 1, 2, 2, 3\)"):
        masked_mse(torch.zeros(1, 1, 2, 2, 2), torch.zeros(1, 1, 2, 2, 3))
    with pytest.raises(ValueError, match=r"mu \(2, 3\) and log_var \(2, 4\)"):
        gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 4))
