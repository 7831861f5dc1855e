"""ClinicalEncoder: a missing value is replaced by its group's learned fill (never NaN), flagged to the MLP."""

from __future__ import annotations

import pytest
import torch

from neuro_ssl.models import ClinicalEncoder


def _encoder() -> ClinicalEncoder:
    torch.manual_seed(0)
    return ClinicalEncoder([1, 1, 3], out_features=4, hidden=(8,))  # two numbers and a 3-category column


def test_missing_slots_never_make_nan_and_their_content_is_ignored():
    encoder = _encoder()
    values = torch.tensor([[0.5, -1.0, 0.0, 1.0, 0.0], [float("nan"), 2.0, float("nan"), 7.0, 3.0]])
    missing = torch.tensor([[False, False, False], [True, False, True]])
    out = encoder(values, missing)
    assert out.shape == (2, 4) and torch.isfinite(out).all()
    other = values.clone()
    other[1, 0], other[1, 2:] = 123.0, torch.tensor([1.0, 0.0, 0.0])
    torch.testing.assert_close(encoder(other, missing)[1], out[1], rtol=0, atol=0)


def test_the_fill_is_learned_and_the_missing_bit_reaches_the_mlp():
    encoder = _encoder()
    values = torch.zeros(2, 5)
    missing = torch.tensor([[True, False, False], [False, False, False]])
    out = encoder(values, missing)
    assert not torch.allclose(out[0], out[1])  # same slot values (0), only the bit differs
    out[0].sum().backward()
    assert encoder.fill.grad[0] != 0 and not encoder.fill.grad[1:].any()  # only the missing slot's fill learns


def test_non_finite_present_values_and_wrong_shapes_are_refused():
    encoder = _encoder()
    with pytest.raises(ValueError, match="NaN or inf where they are not marked missing"):
        encoder(torch.tensor([[float("nan"), 0, 0, 1, 0]]), torch.zeros(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"expected values \(B, 5\) and missing \(B, 3\), got \(1, 4\)"):
        encoder(torch.zeros(1, 4), torch.zeros(1, 3, dtype=torch.bool))
