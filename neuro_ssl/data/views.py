"""Two-view augmentation for contrastive pretraining, applied to cached preprocessed volumes.

Why one chain called twice, each time reseeded: a random dict transform over
``keys=["view1", "view2"]`` draws ONE set of parameters and applies it to both keys, so the
views come out identical (DESIGN pitfall). Here each view is one call of a MONAI array chain
whose generators are reseeded from ``(seed, epoch, index, view)``: the two views differ, and a
resumed run or any DataLoader worker layout sees the same views for the same epoch.

The chain (each step with its own probability; defaults suit T1w at 2 mm):
random resized crop (each side 80-100 %, resized back) -> left-right flip (axis 0 in RAS) ->
small affine (rotation, scale) -> bias field -> contrast (gamma, statistics kept) -> Gaussian
noise -> Gaussian blur -> cutout (``RandCoarseDropout``, the y-Aware paper's best single
augmentation). Crop, resize, flip and affine are fused into one resample (``lazy=True``).

On volumes whose background preprocessing set to exactly 0 (``mask_background``), a view never
writes into the background what preprocessing would not: the brain mask (the non-zero voxels)
rides through the spatial steps as an extra channel, and after the intensity steps (bias field,
contrast, noise, blur, cutout) every voxel outside the moved mask is set back to 0. Without it,
noise and the bias field would paint the background and the cutout box would differ from it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from neuro_ssl._utils.options import reject_unknown_keys
from neuro_ssl.errors import ConfigError

_PROBABILITIES = ("flip_lr", "affine", "noise", "blur", "bias_field", "contrast", "cutout")


@dataclass(frozen=True)
class AugmentConfig:
    """Random view parameters. A bare name (``blur``) is that step's probability.

    crop_scale: fraction of each side kept by the random crop, drawn per axis in [lo, hi]
    (always applied; ``(1, 1)`` turns it off).
    affine_deg: max rotation about each axis (degrees); affine_scale: max relative zoom.
    noise_std: max std of additive noise (in units of the normalized image).
    blur_sigma_vox: Gaussian sigma range in voxels. bias_field_coeff: max polynomial coefficient.
    contrast_gamma: gamma range. cutout_size: side of the cut box as a fraction of each side.
    """

    crop_scale: tuple[float, float] = (0.8, 1.0)
    flip_lr: float = 0.5
    affine: float = 0.5
    affine_deg: float = 5.0
    affine_scale: float = 0.05
    noise: float = 0.5
    noise_std: float = 0.05
    blur: float = 0.2
    blur_sigma_vox: tuple[float, float] = (0.5, 1.0)
    bias_field: float = 0.3
    bias_field_coeff: float = 0.05
    contrast: float = 0.3
    contrast_gamma: tuple[float, float] = (0.7, 1.5)
    cutout: float = 0.5
    cutout_size: tuple[float, float] = (0.1, 0.25)
    cutout_holes: int = 1

    def __post_init__(self):
        for name in _PROBABILITIES:
            value = float(getattr(self, name))
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"augmentation probability {name} must be in [0, 1], got {value}")
            object.__setattr__(self, name, value)
        for name in ("crop_scale", "blur_sigma_vox", "contrast_gamma", "cutout_size"):
            object.__setattr__(self, name, _range(getattr(self, name), name))
        if not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ConfigError(f"crop_scale must satisfy 0 < lo <= hi <= 1, got {self.crop_scale}")
        if not 0 < self.cutout_size[0] <= self.cutout_size[1] < 1:
            raise ConfigError(f"cutout_size must satisfy 0 < lo <= hi < 1, got {self.cutout_size}")
        if not self.contrast_gamma[0] > 0:
            raise ConfigError(f"contrast_gamma must be positive, got {self.contrast_gamma}")
        for name in ("affine_deg", "affine_scale", "noise_std", "bias_field_coeff"):
            if not float(getattr(self, name)) >= 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if int(self.cutout_holes) < 1:
            raise ConfigError(f"cutout_holes must be >= 1, got {self.cutout_holes}")

    @classmethod
    def identity(cls) -> "AugmentConfig":
        """Every step off: views equal the preprocessed volume."""
        return cls(crop_scale=(1.0, 1.0), **{name: 0.0 for name in _PROBABILITIES})

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "AugmentConfig":
        reject_unknown_keys(d, (f.name for f in dataclasses.fields(cls)), "augmentation")
        return cls(**d)


def _range(value, name) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be two numbers (lo, hi), got {value!r}") from None
    if lo > hi:
        raise ConfigError(f"{name} must have lo <= hi, got {value!r}")
    return lo, hi


def _build_chain(cfg: AugmentConfig, shape: Sequence[int]):
    """The MONAI array chains for volumes of spatial ``shape``: ``(spatial, intensity)``.

    Spatial: crop, resize, flip, affine (one lazy resample); intensity: bias field, contrast,
    noise, blur, cutout (cutout and resize need the shape).
    """
    from monai.transforms import (
        Compose, RandAdjustContrast, RandAffine, RandCoarseDropout, RandFlip,
        RandGaussianNoise, RandGaussianSmooth, RandScaleCrop, Resize,
    )

    shape = tuple(int(s) for s in shape)
    cut_lo = [max(1, int(round(s * cfg.cutout_size[0]))) for s in shape]
    cut_hi = [max(lo, int(round(s * cfg.cutout_size[1]))) for s, lo in zip(shape, cut_lo)]
    spatial = []
    if cfg.crop_scale[0] < 1:
        spatial += [RandScaleCrop(cfg.crop_scale[0], cfg.crop_scale[1], random_center=True, random_size=True),
                    Resize(shape, mode="trilinear")]
    rad = math.radians(cfg.affine_deg)
    spatial += [
        RandFlip(prob=cfg.flip_lr, spatial_axis=0),
        RandAffine(prob=cfg.affine, rotate_range=[rad] * 3, scale_range=[cfg.affine_scale] * 3,
                   mode="bilinear", padding_mode="border"),
    ]
    intensity = [
        _shifted_bias_field(prob=cfg.bias_field, coeff_range=(0.0, cfg.bias_field_coeff)),
        RandAdjustContrast(prob=cfg.contrast, gamma=cfg.contrast_gamma, retain_stats=True),
        RandGaussianNoise(prob=cfg.noise, std=cfg.noise_std),
        RandGaussianSmooth(prob=cfg.blur, sigma_x=cfg.blur_sigma_vox, sigma_y=cfg.blur_sigma_vox,
                           sigma_z=cfg.blur_sigma_vox),
        RandCoarseDropout(holes=int(cfg.cutout_holes), spatial_size=cut_lo, max_spatial_size=cut_hi,
                          fill_value=0.0, prob=cfg.cutout),
    ]
    return Compose(spatial, lazy=True), Compose(intensity)


def _shifted_bias_field(prob: float, coeff_range: tuple[float, float]):
    """``RandBiasField`` applied to ``x - min(x)``: a scanner's field multiplies raw intensities
    (>= 0), not z-scores, whose negative background it would otherwise blow up."""
    from monai.transforms import RandBiasField

    class ShiftedBiasField(RandBiasField):
        def __call__(self, img, randomize: bool = True):
            if randomize:
                self.randomize(img_size=img.shape[1:])
            if not self._do_transform:
                return img
            low = img.min()
            return super().__call__(img - low, randomize=False) + low

    return ShiftedBiasField(prob=prob, coeff_range=coeff_range)


class ViewTransform:
    """One random view of a (C, X, Y, Z) tensor per call; its own ``numpy.random.RandomState``.

    Each call draws a fresh seed from ``self.R`` for the chain, so calling twice gives two
    independent views; ``set_random_state(seed)`` makes the sequence reproducible. ``remask``:
    the input's background is exactly 0 (masked preprocessing) and the view keeps it so.
    """

    def __init__(self, config: AugmentConfig, seed: int | None = None, remask: bool = False):
        self.config = config
        self.remask = bool(remask)
        self.R = np.random.RandomState(seed)
        self._chains: dict[tuple[int, ...], tuple] = {}

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        self.R = state if state is not None else np.random.RandomState(seed)
        return self

    def __getstate__(self):
        return {"config": self.config, "remask": self.remask, "R": self.R, "_chains": {}}

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        from monai.data import MetaTensor

        if image.ndim != 4:
            raise ValueError(f"expected a (C, X, Y, Z) tensor, got shape {tuple(image.shape)}")
        shape = tuple(image.shape[1:])
        if shape not in self._chains:
            self._chains[shape] = _build_chain(self.config, shape)
        spatial, intensity = self._chains[shape]
        seed = int(self.R.randint(2**31))
        spatial.set_random_state(seed=seed)
        intensity.set_random_state(seed=int(np.random.RandomState(seed).randint(2**31)))
        # a copy: cutout and noise write in place, and both views start from the same tensor
        x = torch.as_tensor(image).detach().to(torch.float32, copy=True)
        channels = x.shape[0]
        if self.remask:
            x = torch.cat([x, (x != 0).any(dim=0, keepdim=True).to(torch.float32)])
        x = _plain(spatial(MetaTensor(x)))
        mask = x[channels:] > 0.5 if self.remask else None
        out = _plain(intensity(MetaTensor(x[:channels].contiguous())))
        if mask is not None:
            out = out * mask
        return out.to(torch.float32).contiguous()


def _plain(x) -> torch.Tensor:
    from monai.data import MetaTensor

    return x.as_tensor() if isinstance(x, MetaTensor) else torch.as_tensor(x)


def build_view_transform(config: AugmentConfig, seed: int | None = None,
                         remask: bool = False) -> Callable[[torch.Tensor], torch.Tensor]:
    """A new random view chain (MONAI array transforms) over (C, X, Y, Z) tensors; ``remask``:
    keep a zero background zero (see the module docstring)."""
    return ViewTransform(config, seed, remask)


def view_seeds(seed: int, epoch: int, index: int) -> tuple[int, int]:
    """Two independent 31-bit seeds for the views of one item in one epoch (order-free, worker-free)."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch), int(index)]).generate_state(2)
    return int(state[0] >> 1), int(state[1] >> 1)


def visit_partners(frame) -> list[tuple[int, ...]]:
    """For each item (row of ``frame``, in item order), the items of the same subject at another visit.

    Temporal positives (``pretrain --positives visits``): two visits of one person are a positive
    pair. Items pair only within one ``subject_id`` and only across different ``session_id``; an
    item whose subject id is missing, or whose subject has one visit, gets no partner (its two
    views then come from the same scan).
    """
    import pandas as pd

    subjects = frame["subject_id"] if "subject_id" in frame.columns else pd.Series([None] * len(frame))
    sessions = frame["session_id"] if "session_id" in frame.columns else pd.Series([None] * len(frame))
    by_subject: dict[str, list[int]] = {}
    for item, subject in enumerate(subjects):
        if not pd.isna(subject):
            by_subject.setdefault(str(subject), []).append(item)
    session_of = [None if pd.isna(s) else str(s) for s in sessions]
    partners = []
    for item, subject in enumerate(subjects):
        same = by_subject.get(str(subject), []) if not pd.isna(subject) else []
        partners.append(tuple(j for j in same if j != item and session_of[j] != session_of[item]))
    return partners


def partner_choice(seed: int, epoch: int, index: int, n: int) -> int:
    """Which of ``n`` partners item ``index`` pairs with in ``epoch``: a function of (seed, epoch, index)."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch), int(index), 1]).generate_state(1)
    return int(state[0] % n)


class TwoViewDataset(torch.utils.data.Dataset):
    """Two independently augmented views of each item of a ``ManifestDataset``.

    Item: ``{"view1", "view2": FloatTensor (C, X, Y, Z), "index", "index2", <columns>}``. The views
    of item ``i`` in epoch ``e`` depend only on ``(seed, e, i)``: call ``set_epoch(e)`` before each
    epoch (DataLoader workers copy the dataset when an epoch's iterator starts, so non-persistent
    workers see it). ``cross_modal=("T1w", "FDG")``: view1 is the first modality's channel and
    view2 the second's, each augmented on its own (CLIP-style pairs). ``partners`` (from
    :func:`visit_partners`): view2 comes from one of item ``i``'s partners (another visit of the
    same subject, chosen per (seed, epoch, i)) when it has any, else from the same scan;
    ``index2`` is the manifest row view2 came from (``index`` otherwise). The item's columns
    (covariates) are those of view1's scan. ``targets=True`` adds ``target1`` / ``target2``: the
    un-augmented volumes each view was drawn from (what an autoencoder reconstructs).
    """

    def __init__(self, base, aug: AugmentConfig, seed: int = 0, cross_modal: Sequence[str] | None = None,
                 partners: Sequence[Sequence[int]] | None = None, targets: bool = False):
        self.base, self.aug, self.seed, self.epoch = base, aug, int(seed), 0
        self.transform = build_view_transform(aug, remask=bool(getattr(base.config, "mask_background", False)))
        self.channels = None
        if cross_modal is not None:
            self.channels = _cross_modal_channels(base.config.modalities, cross_modal)
        if partners is not None and len(partners) != len(base):
            raise ValueError(f"partners for {len(partners)} items, the dataset has {len(base)}")
        self.partners = [tuple(int(j) for j in p) for p in partners] if partners is not None else None
        self.targets = bool(targets)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict:
        item = dict(self.base[i])
        image = item.pop("image")
        other, item["index2"] = image, item["index"]
        if self.partners is not None and self.partners[i]:
            partner = self.base[self.partners[i][partner_choice(self.seed, self.epoch, i, len(self.partners[i]))]]
            other, item["index2"] = partner["image"], partner["index"]
        first, second = (image, other) if self.channels is None else (
            image[self.channels[0]:self.channels[0] + 1], other[self.channels[1]:self.channels[1] + 1])
        seed1, seed2 = view_seeds(self.seed, self.epoch, i)
        if self.targets:
            item["target1"], item["target2"] = first.to(torch.float32), second.to(torch.float32)
        item["view1"] = self.transform.set_random_state(seed1)(first)
        item["view2"] = self.transform.set_random_state(seed2)(second)
        return item


def _cross_modal_channels(modalities: Sequence[str], pair: Sequence[str]) -> tuple[int, int]:
    lower = [m.lower() for m in modalities]
    if len(pair) != 2 or pair[0].lower() == pair[1].lower():
        raise ConfigError(f"cross-modal views need two different modalities, got {', '.join(pair)}")
    missing = [m for m in pair if m.lower() not in lower]
    if missing:
        raise ConfigError(f"cross-modal view modality {', '.join(missing)} is not among the preprocessed "
                          f"channels ({', '.join(modalities)}); add it to the preprocessing modalities")
    return lower.index(pair[0].lower()), lower.index(pair[1].lower())
