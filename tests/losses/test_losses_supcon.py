"""SupCon (L_out) against a naive float64 loop; distinct labels reduce it to NT-Xent; queue positives."""

from __future__ import annotations

import pytest
import torch

import _loss_reference as ref
from neuro_ssl.losses import NTXent, SupCon


def test_matches_naive_loop_with_repeated_labels(rng):
    z1, z2 = rng.standard_normal((2, 9, 5))
    labels = [0, 1, 1, 2, 0, 0, 2, 1, 3]
    got = SupCon(0.2)(torch.from_numpy(z1), torch.from_numpy(z2), torch.tensor(labels)).item()
    assert got == pytest.approx(ref.supcon(z1, z2, labels, 0.2), rel=1e-12)


def test_distinct_labels_give_ntxent(rng):
    z1, z2 = (torch.from_numpy(a) for a in rng.standard_normal((2, 7, 4)))
    labels = torch.tensor([5, 3, 9, 0, 1, 2, 8])
    assert SupCon(0.1)(z1, z2, labels).item() == pytest.approx(NTXent(0.1)(z1, z2).item(), rel=1e-14)


def test_float_labels_and_column_vector_are_accepted(rng):
    z1, z2 = (torch.from_numpy(a) for a in rng.standard_normal((2, 4, 3)))
    as_int = SupCon()(z1, z2, torch.tensor([1, 0, 1, 2]))
    assert SupCon()(z1, z2, torch.tensor([[1.0], [0.0], [1.0], [2.0]])).item() == as_int.item()


def test_view_swap_symmetry(rng):
    z1, z2 = (torch.from_numpy(a) for a in rng.standard_normal((2, 6, 4)))
    labels = torch.tensor([0, 1, 0, 1, 1, 2])
    assert SupCon()(z1, z2, labels).item() == pytest.approx(SupCon()(z2, z1, labels).item(), rel=1e-13)


def test_queue_entries_with_the_same_label_are_positives(rng):
    z1, z2 = rng.standard_normal((2, 5, 4))
    zq = rng.standard_normal((6, 4))
    labels, queue_labels = [0, 1, 1, 2, 0], [[1.0], [3.0], [0.0], [0.0], [2.0], [1.0]]
    t = dict(z1=torch.from_numpy(z1), z2=torch.from_numpy(z2), labels=torch.tensor(labels))
    got = SupCon(0.3)(**t, queue=(torch.from_numpy(zq), torch.tensor(queue_labels))).item()
    assert got == pytest.approx(ref.supcon(z1, z2, labels, 0.3, queue_z=zq, queue_labels=queue_labels), rel=1e-12)
    empty = (torch.zeros(0, 4, dtype=torch.float64), torch.zeros(0, 1))
    assert SupCon(0.3)(**t, queue=empty).item() == SupCon(0.3)(**t).item()


def test_clear_errors():
    z = torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"labels must be \(4,\).*got \(4, 2\)"):
        SupCon()(z, z, torch.zeros(4, 2))
    with pytest.raises(ValueError, match="NaN"):
        SupCon()(z, z, torch.tensor([0.0, 1.0, float("nan"), 1.0]))
    with pytest.raises(ValueError, match="y_dim=1"):
        SupCon()(z, z, torch.zeros(4), queue=(torch.randn(2, 3), None))
    with pytest.raises(ValueError, match="temperature"):
        SupCon(temperature=0.0)
