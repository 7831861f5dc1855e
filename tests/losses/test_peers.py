"""neuro-ssl's losses against the peers a user would pick instead, where the definitions coincide.

The peers (lightly 1.6.0 NTXentLoss, MONAI ContrastiveLoss, pytorch-metric-learning SupConLoss,
and the published y-Aware code's sklearn-kernel pattern) are built by benchmarks/peers.py, the
same adapters benchmarks/loss_peers.py times; `make setup` installs the libraries (the 'bench'
extra). Values and input gradients are compared in float64.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from neuro_ssl.losses import NTXent, SupCon, YAwareInfoNCE

PEERS_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "peers.py"


def _load_peers():
    spec = importlib.util.spec_from_file_location("neuro_ssl_bench_peers", PEERS_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


peers = _load_peers()


def _views(batch: int, seed: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 16, generator=g, dtype=dtype).requires_grad_() for _ in range(2)]


def _value_and_grads(loss_fn, z1, z2, *extra):
    z1.grad = z2.grad = None
    loss = loss_fn(z1, z2, *extra)
    loss.backward()
    return loss.detach(), z1.grad.clone(), z2.grad.clone()


def assert_same(ours, theirs, rel: float):
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(b, a, rtol=rel, atol=rel * float(a.abs().max()))


@pytest.mark.parametrize("batch", [2, 7, 32])
@pytest.mark.parametrize("temperature", [0.07, 0.1, 0.5])
def test_ntxent_equals_lightly_ntxentloss(batch, temperature):
    z1, z2 = _views(batch, seed=batch)
    ours = _value_and_grads(NTXent(temperature), z1, z2)
    theirs = _value_and_grads(peers.make_lightly_ntxent(temperature), z1, z2)
    assert_same(ours, theirs, rel=1e-10)


def test_lightly_loss_is_lightlys_own_code():
    cls = peers.lightly_ntxent_class()
    assert cls.__module__ == "lightly.loss.ntx_ent_loss"
    assert Path(__import__("sys").modules[cls.__module__].__file__).parts[-3:] == ("lightly", "loss", "ntx_ent_loss.py")


@pytest.mark.parametrize("batch", [2, 9, 32])
@pytest.mark.parametrize("temperature", [0.25, 0.5])  # exact in float32: MONAI keeps T as a float32 tensor
def test_ntxent_equals_monai_contrastiveloss(batch, temperature):
    z1, z2 = _views(batch, seed=10 + batch)
    ours = _value_and_grads(NTXent(temperature), z1, z2)
    theirs = _value_and_grads(peers.make_monai_contrastive(temperature), z1, z2)
    assert_same(ours, theirs, rel=1e-10)


def test_monai_overflows_at_small_temperature_where_ntxent_stays_finite():
    """MONAI exponentiates before the log: at T = 0.005 in float32 exp(1/T) = exp(200) is inf."""
    z1, z2 = _views(8, seed=3, dtype=torch.float32)
    assert not torch.isfinite(peers.make_monai_contrastive(0.005)(z1, z2))
    assert torch.isfinite(NTXent(0.005)(z1, z2))


@pytest.mark.parametrize("batch, n_classes", [(4, 2), (16, 3), (33, 5)])
def test_supcon_equals_pytorch_metric_learning_supconloss(batch, n_classes):
    z1, z2 = _views(batch, seed=20 + batch)
    labels = torch.arange(batch) % n_classes
    ours = _value_and_grads(SupCon(0.1), z1, z2, labels)
    theirs = _value_and_grads(peers.make_pml_supcon(0.1), z1, z2, labels)
    assert_same(ours, theirs, rel=1e-10)


def test_supconloss_of_a_single_class_batch_is_zero_but_supcon_is_not():
    """The documented exception: no negatives -> pytorch-metric-learning returns 0."""
    z1, z2 = _views(6, seed=5)
    labels = torch.zeros(6)
    assert float(peers.make_pml_supcon(0.1)(z1, z2, labels).detach()) == 0.0
    assert float(SupCon(0.1)(z1, z2, labels).detach()) > 0.1


@pytest.mark.parametrize("batch", [3, 16, 40])
@pytest.mark.parametrize("sigma, temperature", [(5.0, 0.1), (2.0, 0.07), (10.0, 0.5)])
def test_reference_compat_equals_the_published_sklearn_kernel_pattern(batch, sigma, temperature):
    z1, z2 = _views(batch, seed=30 + batch)
    age = 50 + 40 * torch.rand(batch, generator=torch.Generator().manual_seed(batch), dtype=torch.float64)
    ours = _value_and_grads(YAwareInfoNCE(sigma, temperature, reference_compat=True), z1, z2, age)
    theirs = _value_and_grads(peers.make_published_yaware(sigma, temperature), z1, z2, age)
    assert_same(ours, theirs, rel=1e-10)


def test_published_pattern_with_float32_ages_matches_to_float32_precision():
    """A data loader's float32 ages make sklearn compute its distances in float32."""
    z1, z2 = _views(24, seed=7)
    age = (50 + 40 * torch.rand(24, generator=torch.Generator().manual_seed(7))).to(torch.float32)
    ours = _value_and_grads(YAwareInfoNCE(5.0, 0.1, reference_compat=True), z1, z2, age)
    theirs = _value_and_grads(peers.make_published_yaware(5.0, 0.1), z1, z2, age)
    assert_same(ours, theirs, rel=1e-5)


def test_all_peers_agree_in_the_simclr_limit():
    """sigma -> 0: the published pattern is twice NT-Xent (its 1/B scale), which lightly and MONAI equal."""
    z1, z2 = _views(12, seed=8)
    age = torch.arange(12, dtype=torch.float64) * 3.0  # distinct ages, 3 years apart
    ntxent = NTXent(0.5)(z1, z2)
    values = [peers.make_lightly_ntxent(0.5)(z1, z2), peers.make_monai_contrastive(0.5)(z1, z2),
              peers.make_published_yaware(1e-3, 0.5)(z1, z2, age) / 2, YAwareInfoNCE(1e-3, 0.5)(z1, z2, age),
              peers.make_pml_supcon(0.5)(z1, z2, torch.arange(12))]
    for value in values:
        torch.testing.assert_close(value.detach(), ntxent.detach(), rtol=1e-10, atol=0)
