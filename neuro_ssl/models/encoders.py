"""3D encoders: a MONAI ResNet (or DenseNet121) trunk that maps a volume to one feature vector.

``build_encoder`` is the only constructor the rest of the package uses, so the choices that
matter are made once here:

- ``conv1_t_stride=2``: MONAI's default stem stride of 1 makes a 3D ResNet 4-8x slower and
  heavier than torchvision's 2D design (measured; see DESIGN.md pitfalls).
- ``pretrained=False`` always: MONAI's pretrained path downloads weights at run time.
- Normalisation is swapped *after* construction: MONAI's ``norm=`` reaches only the stem and the
  residual blocks stay BatchNorm3d, so every ``BatchNorm3d`` is replaced here by GroupNorm or
  InstanceNorm when asked (needed for DDP on CPU, where SyncBatchNorm does not run, and for
  tiny per-device batches).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from neuro_ssl.errors import ConfigError

#: arch -> minimum side (voxels) of an input volume. Five stride-2 stages shrink a side by 32;
#: below these sizes the deepest feature map (or a pooling window) has nothing left.
MIN_SIDE = {"resnet10": 16, "resnet18": 16, "resnet34": 16, "resnet50": 16, "densenet121": 32}
ARCHS = tuple(MIN_SIDE)
NORMS = ("batch", "group", "instance")


def group_count(channels: int, max_groups: int = 32) -> int:
    """GroupNorm groups for ``channels``: the largest power of two <= 32 dividing it, >= 2 channels a group."""
    groups = math.gcd(channels, max_groups)
    while groups > 1 and channels // groups < 2:
        groups //= 2
    return max(groups, 1)


def swap_batchnorm(module: nn.Module, norm: str) -> nn.Module:
    """Replace every ``BatchNorm3d`` inside ``module`` (in place) by ``norm``; returns ``module``."""
    if norm == "batch":
        return module
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm3d):
            channels = child.num_features
            if norm == "group":
                new = nn.GroupNorm(group_count(channels), channels, eps=child.eps, affine=True)
            else:
                new = nn.InstanceNorm3d(channels, eps=child.eps, affine=True, track_running_stats=False)
            setattr(module, name, new)
        else:
            swap_batchnorm(child, norm)
    return module


def _deepest_side(side: int, arch: str) -> int:
    """Side of the deepest feature map. Strided convs and max-pools ('same' padding) map s -> ceil(s/2);
    DenseNet's three transition average-pools (kernel 2, no padding) map s -> floor(s/2)."""
    halvings = ["ceil"] * 5 if arch.startswith("resnet") else ["ceil"] * 2 + ["floor"] * 3
    for kind in halvings:
        side = -(-side // 2) if kind == "ceil" else side // 2
    return side


def check_input_shape(arch: str, norm: str, in_channels: int, shape: Sequence[int]) -> None:
    """Raise ConfigError when a (C, X, Y, Z) or (X, Y, Z) shape cannot go through ``arch`` (no network built)."""
    shape = tuple(int(s) for s in shape)
    spatial = shape[-3:]
    if len(shape) == 4 and shape[0] != in_channels:
        raise ConfigError(f"{arch} expects {in_channels} input channel(s), got {shape[0]}")
    min_side = MIN_SIDE[arch]
    if len(spatial) != 3 or min(spatial) < min_side:
        raise ConfigError(
            f"shape {'x'.join(map(str, spatial))} is too small for {arch}: every side must be "
            f">= {min_side} voxels (use a larger --shape or a finer --spacing)"
        )
    if norm == "instance" and math.prod(_deepest_side(s, arch) for s in spatial) < 2:
        raise ConfigError(
            f"shape {'x'.join(map(str, spatial))} leaves one voxel in the deepest feature map, where "
            f"instance norm is undefined: make one side > 32 voxels or use --norm group"
        )


class Encoder(nn.Module):
    """A 3D CNN trunk with global average pooling: ``(B, C, X, Y, Z) -> (B, out_features)``.

    Attributes: ``arch``, ``in_channels``, ``norm``, ``width`` (channel multiplier), ``out_features``,
    ``net`` (the MONAI network, classifier removed) and ``target_layer`` (the last convolutional
    stage, the usual Grad-CAM layer).
    """

    def __init__(self, net: nn.Module, arch: str, in_channels: int, norm: str, width: float, out_features: int):
        super().__init__()
        self.net = net
        self.arch = arch
        self.in_channels = in_channels
        self.norm = norm
        self.width = width
        self.out_features = out_features

    @property
    def target_layer(self) -> nn.Module:
        if self.arch.startswith("resnet"):
            return self.net.layer4
        return self.net.features.denseblock4

    def check_input_shape(self, shape: Sequence[int]) -> None:
        """Raise ConfigError when a (C, X, Y, Z) or (X, Y, Z) shape cannot go through this network."""
        check_input_shape(self.arch, self.norm, self.in_channels, shape)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.arch.startswith("resnet"):
            return self.net(x)
        fmap = torch.relu(self.net.features(x))
        return torch.flatten(nn.functional.adaptive_avg_pool3d(fmap, 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5:
            raise ConfigError(f"encoder input must be (B, C, X, Y, Z), got shape {tuple(x.shape)}")
        self.check_input_shape(tuple(x.shape[1:]))
        return self.features(x)


def encoder_out_features(arch: str, width: float = 1.0) -> int:
    """Size F of the pooled features of ``build_encoder(arch, width=width)``, without building it.

    ResNets: 512 * width channels (x4 for resnet50's bottlenecks). DenseNet121: init features
    plus growth per layer over blocks of (6, 12, 24, 16) layers, halved by each transition.
    """
    if arch not in ARCHS:
        raise ConfigError(f"unknown --arch '{arch}'; choose one of {', '.join(ARCHS)}")
    if arch.startswith("resnet"):
        return int(512 * width) * (4 if arch == "resnet50" else 1)
    features, growth = max(int(64 * width), 8), max(int(32 * width), 4)
    for block, layers in enumerate((6, 12, 24, 16)):
        features += layers * growth
        features = features // 2 if block < 3 else features
    return features


def _build_resnet(arch: str, in_channels: int, width: float) -> tuple[nn.Module, int]:
    from monai.networks.nets import resnet

    factory = getattr(resnet, arch)
    net = factory(
        pretrained=False, spatial_dims=3, n_input_channels=in_channels, conv1_t_stride=2,
        feed_forward=False, widen_factor=width,
    )
    return net, encoder_out_features(arch, width)


def _build_densenet(in_channels: int, width: float) -> tuple[nn.Module, int]:
    from monai.networks.nets import DenseNet121

    net = DenseNet121(
        spatial_dims=3, in_channels=in_channels, out_channels=1,
        init_features=max(int(64 * width), 8), growth_rate=max(int(32 * width), 4),
    )
    out_features = net.class_layers.out.in_features
    net.class_layers = nn.Identity()  # the encoder pools itself; the classifier is never used
    return net, out_features


def build_encoder(arch: str = "resnet18", in_channels: int = 1, norm: str = "batch", width: float = 1.0) -> Encoder:
    """A randomly initialised encoder (never downloads weights).

    Args:
        arch: ``resnet10|resnet18|resnet34|resnet50|densenet121``.
        in_channels: input channels (one per modality).
        norm: ``batch`` (MONAI default), ``group`` (GroupNorm, batch-size independent, DDP on CPU)
            or ``instance`` (InstanceNorm3d with affine).
        width: channel multiplier (1.0 = the published widths; 0.25 makes tiny test models).
    """
    if arch not in ARCHS:
        raise ConfigError(f"unknown --arch '{arch}'; choose one of {', '.join(ARCHS)}")
    if norm not in NORMS:
        raise ConfigError(f"unknown --norm '{norm}'; choose one of {', '.join(NORMS)}")
    if int(in_channels) < 1:
        raise ConfigError(f"in_channels must be >= 1, got {in_channels}")
    if not 0 < float(width) <= 4:
        raise ConfigError(f"width must be in (0, 4], got {width}")
    if arch == "densenet121":
        net, out_features = _build_densenet(int(in_channels), float(width))
    else:
        net, out_features = _build_resnet(arch, int(in_channels), float(width))
    swap_batchnorm(net, norm)
    return Encoder(net, arch, int(in_channels), norm, float(width), out_features)
