"""NT-Xent against a naive float64 loop, the published code's numbers, analytic values and limits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import _loss_reference as ref
from neuro_ssl.losses import LOSSES, NTXent, SupCon, YAwareInfoNCE


@pytest.mark.parametrize("batch, dim, temperature", [(1, 3, 0.1), (4, 8, 0.1), (7, 5, 0.5), (16, 32, 0.07)])
def test_matches_naive_loop(rng, batch, dim, temperature):
    z1, z2 = rng.standard_normal((2, batch, dim)) * 3.0
    got = NTXent(temperature)(torch.from_numpy(z1), torch.from_numpy(z2)).item()
    assert got == pytest.approx(ref.ntxent(z1, z2, temperature), rel=1e-12, abs=1e-12)


def test_matches_published_code_at_standard_scale(yaware_reference):
    """The published NTXenLoss is twice the mean over 2B anchors: ours equals loss_ntxent_f64 / 2."""
    r = yaware_reference
    for row in range(len(r["case_index"])):
        z1, z2, _ = (torch.from_numpy(a) for a in ref.fixture_case(r, row))
        for col, temperature in enumerate(r["ntxent_temperature"]):
            got = NTXent(float(temperature))(z1, z2).item()
            assert got == pytest.approx(r["loss_ntxent_f64"][row, col] / 2, rel=1e-12), (row, temperature)


def test_view_swap_symmetry(rng):
    z1, z2 = (torch.from_numpy(a) for a in rng.standard_normal((2, 6, 4)))
    loss = NTXent(0.2)
    assert loss(z1, z2).item() == pytest.approx(loss(z2, z1).item(), rel=1e-14)


@pytest.mark.parametrize("batch", [2, 5, 16])
def test_collinear_embeddings_give_log_2b_minus_1(batch):
    """All similarities equal: the positive is one of 2B - 1 equally likely candidates."""
    z = torch.ones(batch, 8, dtype=torch.float64) * torch.arange(1, batch + 1, dtype=torch.float64)[:, None]
    assert NTXent(0.1)(z, 2 * z).item() == pytest.approx(math.log(2 * batch - 1), rel=1e-12)


def test_scale_and_norm_invariance(rng):
    z1, z2 = (torch.from_numpy(a) for a in rng.standard_normal((2, 5, 7)))
    loss = NTXent(0.3)
    assert loss(z1, z2).item() == pytest.approx(loss(10 * z1, 0.01 * z2).item(), rel=1e-12)


def test_queue_entries_are_negatives(rng):
    z1, z2, zq = rng.standard_normal((3, 6, 5))
    got = NTXent(0.2)(torch.from_numpy(z1), torch.from_numpy(z2), queue=(torch.from_numpy(zq), None)).item()
    assert got == pytest.approx(ref.ntxent(z1, z2, 0.2, queue_z=zq), rel=1e-12)
    more_negatives = NTXent(0.2)(torch.from_numpy(z1), torch.from_numpy(z2)).item()
    assert got > more_negatives - 1e-12  # extra candidates can only raise the loss


def test_empty_queue_equals_no_queue(rng):
    z1, z2 = (torch.from_numpy(a) for a in rng.standard_normal((2, 4, 3)))
    empty = (torch.zeros(0, 3, dtype=torch.float64), None)
    assert NTXent()(z1, z2, queue=empty).item() == NTXent()(z1, z2).item()


def test_temperature_and_shape_errors():
    for bad in (0, -0.1, 1e-5, math.nan, math.inf, "0.1", True):
        with pytest.raises(ValueError, match="temperature"):
            NTXent(bad)
    with pytest.raises(ValueError, match=r"z1 \(4, 8\) and z2 \(4, 7\)"):
        NTXent()(torch.zeros(4, 8), torch.zeros(4, 7))
    with pytest.raises(ValueError, match=r"z1 \(4,\) and z2 \(4,\)"):
        NTXent()(torch.zeros(4), torch.zeros(4))
    with pytest.raises(ValueError, match=r"queue embeddings must be \(n, 8\)"):
        NTXent()(torch.randn(4, 8), torch.randn(4, 8), queue=(torch.zeros(3, 5), None))


def test_registry_names_the_classes():
    assert LOSSES == {"simclr": NTXent, "yaware": YAwareInfoNCE, "supcon": SupCon}
    assert "temperature=0.1" in repr(NTXent())


def test_half_precision_inputs_give_float32_loss(rng):
    z1, z2 = (torch.from_numpy(a).to(torch.bfloat16) for a in rng.standard_normal((2, 6, 16)))
    value = NTXent(0.01)(z1, z2)
    assert value.dtype == torch.float32
    exact = ref.ntxent(z1.double().numpy(), z2.double().numpy(), 0.01)
    assert value.item() == pytest.approx(exact, rel=1e-5)
