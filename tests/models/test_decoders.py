"""The autoencoders' decoder: shapes, norms, weights-only files, and the feature size it is built for."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from neuro_ssl.errors import CheckpointError, ConfigError
from neuro_ssl.models import ProjectionHead, build_encoder, load_decoder, save_decoder
from neuro_ssl.models.decoders import Decoder, LatentDecoder
from neuro_ssl.models.encoders import ARCHS, encoder_out_features


@pytest.mark.parametrize("shape", [(32, 32, 32), (16, 16, 16), (33, 20, 17), (96, 112, 96)])
def test_decoder_gives_the_model_grid(shape):
    decoder = Decoder(8, 2, shape, width=0.1, norm="group")
    out = decoder(torch.randn(2, 8))
    assert out.shape == (2, 2, *shape)


@pytest.mark.parametrize("norm, layer", [("batch", nn.BatchNorm3d), ("group", nn.GroupNorm), ("instance", nn.InstanceNorm3d)])
def test_decoder_norm_follows_the_encoder_option(norm, layer):
    decoder = Decoder(4, 1, (16, 16, 16), width=0.1, norm=norm)
    norms = [m for m in decoder.modules() if isinstance(m, (nn.BatchNorm3d, nn.GroupNorm, nn.InstanceNorm3d))]
    assert len(norms) == 4 and all(isinstance(m, layer) for m in norms)


@pytest.mark.parametrize("arch", ARCHS)
def test_encoder_out_features_without_building(arch):
    for width in (0.1, 0.25):
        assert encoder_out_features(arch, width) == build_encoder(arch, 1, "batch", width).out_features


def test_decoder_file_round_trip_and_refusals(tmp_path):
    torch.manual_seed(0)
    module = LatentDecoder(ProjectionHead(16, (12, 6)), Decoder(6, 1, (16, 16, 16), 0.1, "group"), nn.Linear(16, 6))
    path = save_decoder(tmp_path / "decoder.pt", module, {"preprocess": {"shape": [16, 16, 16]}, "global_step": 3})
    loaded, meta = load_decoder(path)
    assert meta["variational"] is True and meta["global_step"] == 3 and meta["decoder"]["shape"] == [16, 16, 16]
    h = torch.randn(3, 16)
    module.eval()
    assert torch.equal(loaded(h), module(h))
    mu, log_var = loaded.encode(h)
    assert mu.shape == log_var.shape == (3, 6)
    samples = loaded.sample(2, torch.Generator().manual_seed(1))
    assert samples.shape == (2, 1, 16, 16, 16)
    assert torch.equal(samples, loaded.sample(2, torch.Generator().manual_seed(1)))
    plain = LatentDecoder(ProjectionHead(16, (6,)), Decoder(6, 1, (16, 16, 16), 0.1, "group"))
    with pytest.raises(ConfigError, match="variational"):
        plain.sample(1)
    with pytest.raises(ConfigError, match="6-d codes, the decoder takes 5"):
        LatentDecoder(ProjectionHead(16, (6,)), Decoder(5, 1, (16, 16, 16), 0.1, "group"))
    from neuro_ssl.models import save_encoder

    save_encoder(tmp_path / "encoder.pt", build_encoder("resnet10", 1, "batch", 0.1))
    with pytest.raises(CheckpointError, match="expected neuro-ssl-decoder/1"):
        load_decoder(tmp_path / "encoder.pt")
