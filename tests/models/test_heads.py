"""Projection head and supervised model: layer layout and forward maths against a hand computation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from neuro_ssl.errors import ConfigError
from neuro_ssl.models import ContrastiveModel, ProjectionHead, SupervisedModel, build_encoder


def test_projection_head_layout():
    head = ProjectionHead(64, (32, 16, 8))
    kinds = [type(m) for m in head.mlp]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert head.out_features == 8 and head.in_features == 64
    assert [m.out_features for m in head.mlp if isinstance(m, nn.Linear)] == [32, 16, 8]


def test_projection_head_matches_hand_computation():
    torch.manual_seed(0)
    head = ProjectionHead(6, (5, 3)).train()
    h = torch.randn(7, 6, dtype=torch.float64)
    head = head.double()
    lin1, bn, _, lin2 = head.mlp
    a = h @ lin1.weight.T
    a = (a - a.mean(0)) / torch.sqrt(a.var(0, unbiased=False) + bn.eps) * bn.weight + bn.bias
    expected = torch.clamp(a, min=0) @ lin2.weight.T + lin2.bias
    torch.testing.assert_close(head(h), expected)


def test_single_linear_head_has_no_activation():
    head = ProjectionHead(4, (2,))
    assert [type(m) for m in head.mlp] == [nn.Linear]


@pytest.mark.parametrize("dims", [(), (0, 3), (4, -1)])
def test_bad_dims_are_refused(dims):
    with pytest.raises(ConfigError, match="projection dims"):
        ProjectionHead(4, dims)


def test_supervised_model_is_encoder_then_linear():
    torch.manual_seed(0)
    encoder = build_encoder("resnet10", width=0.25).eval()
    model = SupervisedModel(encoder, 2, dropout=0.5).eval()
    x = torch.randn(2, 1, 16, 16, 16)
    expected = encoder(x) @ model.head.weight.T + model.head.bias
    torch.testing.assert_close(model(x), expected)
    assert model.head.in_features == encoder.out_features and model.encoder is encoder
    assert SupervisedModel(encoder, 1)(x).shape == (2, 1)
    with pytest.raises(ConfigError):
        SupervisedModel(encoder, 0)


def test_contrastive_model_returns_features_and_projections():
    encoder = build_encoder("resnet10", width=0.25)
    model = ContrastiveModel(encoder, ProjectionHead(encoder.out_features, (32, 8)))
    h, z = model(torch.randn(3, 1, 16, 16, 16))
    assert h.shape == (3, 128) and z.shape == (3, 8)
