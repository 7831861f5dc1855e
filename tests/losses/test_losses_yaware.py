"""y-Aware InfoNCE: the published code's numbers (all 36 cases x 10 settings), the paper's formula,
the sigma -> 0 limit, kernel weights without gradient, queues with stored covariates."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import _loss_reference as ref
from neuro_ssl.losses import NTXent, SupCon, YAwareInfoNCE


def _fixture_settings(r):
    return list(enumerate(zip(r["param_sigma"].tolist(), r["param_temperature"].tolist())))


@pytest.mark.parametrize("dtype, key, rel", [(torch.float64, "loss_yaware_f64", 1e-6), (torch.float32, "loss_yaware_f32", 1e-5)])
def test_reference_compat_reproduces_published_code(yaware_reference, dtype, key, rel):
    r = yaware_reference
    for row in range(len(r["case_index"])):
        z1, z2, y = (torch.from_numpy(a) for a in ref.fixture_case(r, row))
        for col, (sigma, temperature) in _fixture_settings(r):
            loss = YAwareInfoNCE(sigma, temperature, reference_compat=True)
            got = loss(z1.to(dtype), z2.to(dtype), y.to(dtype)).item()
            assert got == pytest.approx(r[key][row, col], rel=rel), (row, sigma, temperature)


def test_default_is_papers_per_anchor_formula(yaware_reference):
    """diag_loss_yaware_rownorm_f64 is the per-anchor formula at the published (doubled) scale."""
    r = yaware_reference
    for row in range(len(r["case_index"])):
        z1, z2, y = (torch.from_numpy(a) for a in ref.fixture_case(r, row))
        for col, (sigma, temperature) in _fixture_settings(r):
            got = YAwareInfoNCE(sigma, temperature)(z1, z2, y).item()
            assert got == pytest.approx(r["diag_loss_yaware_rownorm_f64"][row, col] / 2, rel=1e-12), (row, sigma)


def test_documented_gap_between_paper_and_published_code(yaware_reference):
    """docs/losses.md quotes these gaps (max over the 36 cases): keep the text true."""
    r = yaware_reference
    gap = np.abs(r["loss_yaware_f64"] / r["diag_loss_yaware_rownorm_f64"] - 1).max(axis=0)
    by_setting = dict(zip(zip(r["param_sigma"].tolist(), r["param_temperature"].tolist()), gap))
    assert round(100 * by_setting[(5.0, 0.1)], 1) == 1.3
    assert round(100 * by_setting[(2.0, 0.1)], 1) == 1.5
    assert round(100 * by_setting[(10.0, 0.07)], 1) == 2.4
    assert by_setting[(1e-6, 0.1)] < 1e-14


@pytest.mark.parametrize("k", [1, 3])
def test_matches_naive_loop(rng, k):
    z1, z2 = rng.standard_normal((2, 6, 5))
    y = rng.uniform(50, 90, size=(6, k)) if k > 1 else rng.uniform(50, 90, size=6)
    got = YAwareInfoNCE(sigma=7.0, temperature=0.2)(*(torch.from_numpy(a) for a in (z1, z2, y))).item()
    assert got == pytest.approx(ref.yaware(z1, z2, y, 7.0, 0.2), rel=1e-12)


def test_reference_compat_matches_transcribed_quirk(rng):
    z1, z2 = rng.standard_normal((2, 5, 4))
    y = rng.uniform(60, 80, size=5)
    got = YAwareInfoNCE(3.0, 0.1, reference_compat=True)(*(torch.from_numpy(a) for a in (z1, z2, y))).item()
    assert got == pytest.approx(ref.yaware_published(z1, z2, y, 3.0, 0.1), rel=1e-12)


def test_small_sigma_is_ntxent_when_the_covariates_all_differ(rng):
    z1, z2 = (torch.from_numpy(a) for a in rng.standard_normal((2, 8, 6)))
    y = torch.from_numpy(rng.uniform(50, 90, size=8))
    ntxent = NTXent(0.1)(z1, z2).item()
    assert YAwareInfoNCE(1e-6, 0.1)(z1, z2, y).item() == pytest.approx(ntxent, rel=1e-12, abs=1e-12)
    for sigma in (1e-200, 5e-324):  # kernel (and sigma**2) underflow: still exactly NT-Xent
        assert YAwareInfoNCE(sigma, 0.1)(z1, z2, y).item() == pytest.approx(ntxent, rel=1e-12)
        assert YAwareInfoNCE(sigma, 0.1, reference_compat=True)(z1, z2, y).item() == pytest.approx(2 * ntxent, rel=1e-12)


@pytest.mark.parametrize("temperature", [0.1, 0.01])
def test_small_sigma_with_tied_covariates_is_supcon_not_ntxent(temperature):
    """Tied ages keep kernel weight 1 as sigma -> 0: the limit is SupCon with the age as the class,
    not NT-Xent. docs/losses.md quotes this batch: 4.44 vs NT-Xent 4.98 at T 0.1 (-11 %)."""
    gen = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(2, 8, 16, dtype=torch.float64, generator=gen)
    ages = torch.tensor([70.0, 70, 70, 75, 75, 80, 80, 80], dtype=torch.float64)
    got = YAwareInfoNCE(1e-6, temperature)(z1, z2, ages).item()
    assert got == pytest.approx(SupCon(temperature)(z1, z2, ages).item(), rel=1e-12)
    assert got == pytest.approx(ref.supcon(z1.numpy(), z2.numpy(), ages.numpy(), temperature), rel=1e-12)
    ntxent = NTXent(temperature)(z1, z2).item()
    assert got < 0.95 * ntxent
    if temperature == 0.1:
        assert (round(got, 2), round(ntxent, 2)) == (4.44, 4.98)


def test_equal_covariates_with_huge_sigma_weigh_every_candidate_alike(rng):
    z1, z2 = (torch.from_numpy(a) for a in rng.standard_normal((2, 4, 3)))
    y = torch.from_numpy(rng.uniform(50, 90, size=4))
    uniform = YAwareInfoNCE(1e12, 0.5)(z1, z2, y).item()
    assert uniform == pytest.approx(ref.weighted_infonce(z1.numpy(), z2.numpy(), 0.5, lambda a, c: 1.0), rel=1e-10)


def test_view_swap_symmetry(rng):
    z1, z2 = (torch.from_numpy(a) for a in rng.standard_normal((2, 6, 4)))
    y = torch.from_numpy(rng.uniform(50, 90, size=6))
    loss = YAwareInfoNCE(5.0, 0.1)
    assert loss(z1, z2, y).item() == pytest.approx(loss(z2, z1, y).item(), rel=1e-13)


def test_weights_carry_no_gradient(rng):
    z1 = torch.from_numpy(rng.standard_normal((4, 3))).requires_grad_()
    z2 = torch.from_numpy(rng.standard_normal((4, 3)))
    y = torch.tensor([60.0, 61.0, 70.0, 80.0], dtype=torch.float64, requires_grad=True)
    YAwareInfoNCE(5.0)(z1, z2, y).backward()
    assert y.grad is None and torch.isfinite(z1.grad).all()


def test_queue_with_stored_covariates(rng):
    z1, z2 = rng.standard_normal((2, 5, 4))
    zq = rng.standard_normal((7, 4))
    y, yq = rng.uniform(50, 90, size=5), rng.uniform(50, 90, size=(7, 1))
    t = [torch.from_numpy(a) for a in (z1, z2, y, zq, yq)]
    loss = YAwareInfoNCE(8.0, 0.2)
    got = loss(t[0], t[1], t[2], queue=(t[3], t[4])).item()
    assert got == pytest.approx(ref.yaware(z1, z2, y, 8.0, 0.2, queue_z=zq, queue_y=yq), rel=1e-12)
    empty = (torch.zeros(0, 4, dtype=torch.float64), torch.zeros(0, 1, dtype=torch.float64))
    assert loss(t[0], t[1], t[2], queue=empty).item() == loss(t[0], t[1], t[2]).item()


def test_clear_errors():
    z = torch.randn(4, 3)
    for bad in (0, -1.0, float("inf"), float("nan"), "5"):
        with pytest.raises(ValueError, match="sigma"):
            YAwareInfoNCE(sigma=bad)
    with pytest.raises(ValueError, match=r"y must be \(4,\) or \(4, k\).*got \(3,\)"):
        YAwareInfoNCE()(z, z, torch.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        YAwareInfoNCE()(z, z, torch.tensor([1.0, float("nan"), 2.0, 3.0]))
    with pytest.raises(ValueError, match="y_dim"):
        YAwareInfoNCE()(z, z, torch.zeros(4), queue=(torch.randn(2, 3), None))
    with pytest.raises(ValueError, match="queue y has 2 columns but y has 1"):
        YAwareInfoNCE()(z, z, torch.zeros(4), queue=(torch.randn(2, 3), torch.zeros(2, 2)))
    with pytest.raises(ValueError, match="no queue"):
        YAwareInfoNCE(reference_compat=True)(z, z, torch.zeros(4), queue=(torch.randn(2, 3), torch.zeros(2, 1)))


def test_docs_state_when_small_sigma_is_ntxent():
    """docs/losses.md gives the condition (all covariates different) and this file's tied-batch numbers."""
    from pathlib import Path

    text = " ".join((Path(__file__).resolve().parents[2] / "docs" / "losses.md").read_text().split())
    assert "when the covariates in a batch are all different" in text
    assert "4.44 against NT-Xent's 4.98" in text and "SupCon with the covariate as the class" in text
