"""Encoders: output shapes, every BatchNorm really swapped, input-shape refusals, stem stride."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from neuro_ssl.errors import ConfigError
from neuro_ssl.models import build_encoder
from neuro_ssl.models.encoders import ARCHS, NORMS, group_count


def _norm_types(module: nn.Module) -> set[type]:
    kinds = (nn.BatchNorm3d, nn.GroupNorm, nn.InstanceNorm3d, nn.BatchNorm1d)
    return {type(m) for m in module.modules() if isinstance(m, kinds)}


@pytest.mark.parametrize("arch,width,features", [("resnet10", 0.25, 128), ("resnet18", 0.25, 128),
                                                 ("resnet50", 0.125, 256), ("densenet121", 0.25, 256)])
def test_output_is_pooled_features(arch, width, features):
    torch.manual_seed(0)
    encoder = build_encoder(arch, in_channels=2, norm="group", width=width)
    out = encoder(torch.randn(2, 2, 32, 32, 32))
    assert out.shape == (2, features) == (2, encoder.out_features)
    assert (encoder.arch, encoder.in_channels, encoder.norm) == (arch, 2, "group")
    assert torch.isfinite(out).all()


def test_full_width_resnet18_has_published_feature_size():
    assert build_encoder("resnet18").out_features == 512
    assert build_encoder("resnet50", width=0.25).out_features == 512  # 128 * expansion 4


@pytest.mark.parametrize("norm,expected", [("batch", nn.BatchNorm3d), ("group", nn.GroupNorm),
                                           ("instance", nn.InstanceNorm3d)])
@pytest.mark.parametrize("arch", ["resnet18", "densenet121"])
def test_every_norm_layer_is_swapped(arch, norm, expected):
    encoder = build_encoder(arch, norm=norm, width=0.25)
    assert _norm_types(encoder) == {expected}
    n_norms = sum(isinstance(m, expected) for m in encoder.modules())
    # resnet18: stem + 2 per block x 8 blocks + 3 downsample shortcuts = 20 layers (MONAI's norm= reaches 1)
    assert n_norms == (20 if arch == "resnet18" else n_norms) and n_norms > 19


def test_group_norm_groups_divide_channels():
    encoder = build_encoder("resnet10", norm="group", width=0.25)
    for m in encoder.modules():
        if isinstance(m, nn.GroupNorm):
            assert m.num_channels % m.num_groups == 0 and m.num_channels // m.num_groups >= 2
    assert group_count(64) == 32 and group_count(16) == 8 and group_count(3) == 1 and group_count(2) == 1


def test_stem_stride_is_two():
    encoder = build_encoder("resnet18", width=0.25)
    assert tuple(encoder.net.conv1.stride) == (2, 2, 2)
    assert encoder.net.fc is None


def test_group_norm_output_does_not_depend_on_batch_mates():
    torch.manual_seed(0)
    encoder = build_encoder("resnet10", norm="group", width=0.25).train()
    x = torch.randn(3, 1, 16, 16, 16)
    together = encoder(x)
    alone = encoder(x[:1])
    torch.testing.assert_close(together[:1], alone, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("arch,shape", [("resnet18", (15, 32, 32)), ("densenet121", (32, 32, 24))])
def test_too_small_input_is_refused(arch, shape):
    encoder = build_encoder(arch, width=0.25)
    with pytest.raises(ConfigError, match=r"too small .* >= (16|32) voxels"):
        encoder(torch.zeros(2, 1, *shape))


def test_instance_norm_needs_more_than_one_deep_voxel():
    encoder = build_encoder("resnet10", norm="instance", width=0.25)
    with pytest.raises(ConfigError, match="instance norm"):
        encoder.check_input_shape((1, 32, 32, 32))  # 32 -> 16 -> 8 -> 4 -> 2 -> 1
    encoder.check_input_shape((1, 33, 32, 32))
    assert encoder(torch.randn(2, 1, 33, 32, 32)).shape == (2, 128)
    dense = build_encoder("densenet121", norm="instance", width=0.25)
    with pytest.raises(ConfigError, match="instance norm"):
        dense.check_input_shape((35, 32, 32))  # transitions floor: 35 -> 18 -> 9 -> 4 -> 2 -> 1
    assert dense(torch.randn(2, 1, 64, 32, 32)).shape[0] == 2


def test_wrong_channel_count_is_refused():
    with pytest.raises(ConfigError, match="expects 2 input channel"):
        build_encoder("resnet10", in_channels=2, width=0.25).check_input_shape((1, 32, 32, 32))


@pytest.mark.parametrize("kwargs,match", [({"arch": "resnet19"}, "unknown --arch"), ({"norm": "layer"}, "unknown --norm"),
                                          ({"in_channels": 0}, "in_channels")])
def test_bad_options_are_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        build_encoder(**kwargs)


def test_names_match_the_config_constants():
    from neuro_ssl.training import config

    assert tuple(config.ARCHS) == ARCHS and tuple(config.NORMS) == NORMS
