"""Deterministic preprocessing: a file on disk -> a model-ready (C, X, Y, Z) tensor on the model grid.

One MONAI dict-transform chain on key ``"image"``:

    LoadImaged (readers.VolumeReader: data.io.read_volume, the reader and checks validate uses)
    -> EnsureChannelFirstd -> the native grid recorded (for mapping maps back)
    -> Orientationd(RAS) -> Spacingd(spacing_mm, axis-aligned RAS grid) -> ResizeWithPadOrCropd(shape)
    -> brain mask on the model grid (the scan's own mask file, resampled nearest-neighbour onto
       that grid, or an automatic filled and dilated foreground mask)
    -> intensity normalization per modality, statistics from inside the mask
    -> every voxel outside the mask set to exactly 0

The three spatial steps run lazily (``Compose(lazy=True)``) and so cost one resample, not three;
the world affine of the output voxels is tracked exactly by MONAI (tests check it against
points placed at known world coordinates). Further modalities of one session are resampled onto
the grid of the first (``ResampleToMatchd``) so channels line up voxel for voxel, and share its mask.

Why the background is zeroed (``mask_background``, on by default): z-scoring with foreground
statistics maps each scan's background to its own constant, ``-mean/std``, which follows the
tissue mix of the brain; on the synthetic cohort that constant alone separates AD from CN, and a
network reads it at the edge of the field of view, where its zero padding meets it. Setting the
outside of the brain to 0, the padding value, leaves nothing there to read (``neuro-ssl audit``
measures it). The mask is the non-zero voxels of the output: inside the mask a value that
normalizes to exactly 0 is nudged to the smallest normal float32, so that
``any(image != 0, axis=0)`` is the mask, exactly (``cache.Preprocessed.mask``).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Sequence

import numpy as np

from neuro_ssl._utils.options import reject_unknown_keys
from neuro_ssl.data.io import FRAMES, VOLUME_SUFFIXES
from neuro_ssl.errors import ConfigError, ImageError, NeuroSSLError

#: bump when the chain changes in a way that changes its output: old cache entries stop matching.
PIPELINE_VERSION = 2
NORMALIZATIONS = ("auto", "zscore", "percentile", "suvr", "none")
#: modality names (upper case) treated as PET by ``normalization="auto"``; any name containing PET also.
PET_MODALITIES = frozenset({
    "FDG", "AV45", "AV1451", "PIB", "FBB", "FBP", "FTP", "FMM", "NAV", "NAV4694", "MK6240", "PI2620",
    "AMYLOID", "TAU", "FLORBETAPIR", "FLORBETABEN", "FLUTEMETAMOL", "FLORTAUCIPIR",
})
PERCENTILES = (1.0, 99.0)
#: file types the chain reads: those of ``data.io`` (the chain reads through it).
SUPPORTED_SUFFIXES = VOLUME_SUFFIXES
#: the automatic brain mask is grown by this distance after filling (rounded to whole voxels of the
#: model grid: 1 voxel at 2 mm, none at 4 mm and coarser), so that at fine grids the dark sulcal
#: CSF at the surface stays in; at coarse grids the partial-volume voxels already pass Otsu's cut,
#: and a rim of background inside the mask would only carry the background's z-value back in.
AUTO_MASK_DILATION_MM = 2.0
#: a value inside the mask that normalizes to exactly 0 becomes this, keeping ``image != 0`` == mask.
INSIDE_ZERO = float(np.finfo(np.float32).tiny)


@dataclass(frozen=True)
class PreprocessConfig:
    """What turns a file into a model input; stored with every encoder so later steps match.

    normalization: ``auto`` (T1w and other MRI -> z-score, PET -> SUVR against the whole-brain
    mean), or one of ``zscore``, ``percentile`` (1-99 % to 0-1), ``suvr``, ``none`` for every
    channel. ``modalities``: one channel per entry, in order. ``mask_background`` (default on):
    statistics from inside the brain mask and every voxel outside it exactly 0; off, the
    behaviour before neuro-ssl 0.2 (statistics from the Otsu foreground, applied to the whole
    volume, background left at ``-mean/std``), kept so that ``neuro-ssl audit`` can compare.
    ``frames``: ``single`` refuses a file with several volumes, ``mean`` averages them (dynamic
    PET); written by ``to_dict`` only when not ``single``, so earlier configs and keys stay valid.
    """

    spacing_mm: tuple[float, float, float] = (2.0, 2.0, 2.0)
    shape: tuple[int, int, int] = (96, 112, 96)
    normalization: str = "auto"
    modalities: tuple[str, ...] = ("T1w",)
    mask_background: bool = True
    frames: str = "single"

    def __post_init__(self):
        spacing = _triple(self.spacing_mm, float, "spacing_mm")
        shape = _triple(self.shape, int, "shape")
        if not all(math.isfinite(s) and s > 0 for s in spacing):
            raise ConfigError(f"spacing_mm must be positive numbers, got {self.spacing_mm}")
        if not all(s > 0 for s in shape):
            raise ConfigError(f"shape must be positive integers, got {self.shape}")
        if self.normalization not in NORMALIZATIONS:
            raise ConfigError(f"normalization {self.normalization!r} is not one of {', '.join(NORMALIZATIONS)}")
        modalities = (self.modalities,) if isinstance(self.modalities, str) else tuple(self.modalities)
        modalities = tuple(str(m).strip() for m in modalities)
        if not modalities or any(not m for m in modalities):
            raise ConfigError(f"modalities must name at least one modality, got {self.modalities!r}")
        if len({m.lower() for m in modalities}) != len(modalities):
            raise ConfigError(f"modalities must not repeat, got {', '.join(modalities)}")
        if not isinstance(self.mask_background, (bool, np.bool_)):
            raise ConfigError(f"mask_background must be true or false, got {self.mask_background!r}")
        object.__setattr__(self, "mask_background", bool(self.mask_background))
        if self.frames not in FRAMES:
            raise ConfigError(f"frames {self.frames!r} is not one of {', '.join(FRAMES)}")
        object.__setattr__(self, "spacing_mm", spacing)
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "modalities", modalities)

    def to_dict(self) -> dict:
        """Plain YAML/JSON data (lists, not tuples)."""
        out = {"spacing_mm": list(self.spacing_mm), "shape": list(self.shape),
               "normalization": self.normalization, "modalities": list(self.modalities),
               "mask_background": self.mask_background}
        if self.frames != "single":
            out["frames"] = self.frames
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessConfig":
        """Inverse of ``to_dict``; a single number for spacing or shape means all three axes."""
        if not isinstance(d, dict):
            raise ConfigError(f"preprocessing config must be a mapping, got {type(d).__name__}")
        reject_unknown_keys(d, (f.name for f in dataclasses.fields(cls)), "preprocessing")
        return cls(**d)

    def key(self) -> str:
        """Stable hash of everything that changes the output (config, chain version, MONAI version)."""
        payload = dict(self.to_dict(), pipeline=PIPELINE_VERSION, monai=_monai_version())
        text = json.dumps(payload, sort_keys=True)
        return hashlib.blake2b(text.encode(), digest_size=10).hexdigest()

    def normalization_for(self, modality: str) -> str:
        """The method ``auto`` resolves to for one modality name."""
        if self.normalization != "auto":
            return self.normalization
        return "suvr" if is_pet(modality) else "zscore"


def is_pet(modality: str) -> bool:
    name = str(modality).strip().upper()
    return name in PET_MODALITIES or "PET" in name


def _triple(value, kind, name) -> tuple:
    """1 or 3 numbers -> a 3-tuple of ``kind``; integers must be whole numbers."""
    try:
        values = (value,) if isinstance(value, (int, float, str)) else tuple(value)
        numbers = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be 1 or 3 numbers, got {value!r}") from None
    if len(numbers) not in (1, 3):
        raise ConfigError(f"{name} must be 1 or 3 numbers, got {value!r}")
    if kind is int and not all(n.is_integer() for n in numbers):
        raise ConfigError(f"{name} must be whole numbers, got {value!r}")
    return tuple(kind(n) for n in numbers) * (3 // len(numbers))


@functools.lru_cache(maxsize=None)
def _monai_version() -> str:  # part of every cache key: read the package metadata once, not per lookup
    try:
        return metadata.version("monai")
    except metadata.PackageNotFoundError:  # pragma: no cover - monai is a hard dependency
        return "unknown"


# ----- intensity maths (plain numpy/torch, tested against independent references) -----

def otsu_threshold(values, bins: int = 256) -> float:
    """Otsu's threshold: the cut maximizing between-class variance of a ``bins``-bin histogram.

    The histogram spans [min, 99.9th percentile] so a few very bright voxels cannot squeeze
    the tissue into one bin. Returns the centre of the last bin of the lower class.
    """
    import torch

    x = torch.as_tensor(values).reshape(-1).float()
    lo = float(x.min())
    hi = float(np.quantile(x.numpy(), 0.999))
    if not hi > lo:
        hi = float(x.max())
    if not hi > lo:
        raise ValueError("constant values have no Otsu threshold")
    counts = torch.histc(x.clamp(max=hi), bins=bins, min=lo, max=hi).double().numpy()
    centers = lo + (np.arange(bins) + 0.5) * (hi - lo) / bins
    w0 = np.cumsum(counts)
    m0 = np.cumsum(counts * centers)
    w1 = w0[-1] - w0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = w0 * w1 * (m0 / w0 - (m0[-1] - m0) / w1) ** 2
    between = np.nan_to_num(between[:-1], nan=-1.0)
    return float(centers[int(np.argmax(between))])


def foreground_mask(x):
    """Voxels brighter than Otsu's threshold: the head/brain, not the air around it."""
    return x > otsu_threshold(x)


def auto_brain_mask(x, spacing_mm: float = 2.0) -> np.ndarray:
    """The brain (or head) of one volume on its grid when the scan comes without a mask file.

    Otsu foreground -> largest connected piece (26-neighbourhood; specks of noise dropped) ->
    closing -> holes filled (ventricles and dark sulci inside the outline belong to the brain)
    -> grown by ``AUTO_MASK_DILATION_MM`` (whole voxels of ``spacing_mm``). ``x``: (X, Y, Z)
    numpy array or torch tensor; returns a bool numpy array of the same shape.
    """
    from scipy import ndimage

    values = x.numpy() if hasattr(x, "numpy") else np.asarray(x)
    fg = values > otsu_threshold(values)
    labels, n = ndimage.label(fg, structure=np.ones((3, 3, 3), dtype=bool))
    if n > 1:
        sizes = np.bincount(labels.ravel())[1:]
        fg = labels == (int(np.argmax(sizes)) + 1)
    pad = 2  # closing and filling must not be cut short by the volume's border
    padded = np.pad(fg, pad)
    padded = ndimage.binary_closing(padded, structure=np.ones((3, 3, 3), dtype=bool), iterations=1)
    padded = ndimage.binary_fill_holes(padded)
    grow = int(round(AUTO_MASK_DILATION_MM / float(spacing_mm)))
    if grow > 0:
        padded = ndimage.binary_dilation(padded, structure=ndimage.generate_binary_structure(3, 1), iterations=grow)
    return np.ascontiguousarray(padded[pad:-pad, pad:-pad, pad:-pad])


def normalize_intensity(x, method: str, mask=None):
    """Normalize one channel (a torch tensor); returns a float32 tensor.

    Without ``mask`` (neuro-ssl 0.1 behaviour): statistics from the Otsu foreground, applied to
    the whole volume. With ``mask`` (bool, same shape): statistics from the voxels inside it,
    and every voxel outside it exactly 0.

    zscore: (x - mean) / std.  percentile: (x - p1) / (p99 - p1).
    suvr: x / mean (PET standardized uptake value ratio, whole-brain reference).  none: x.
    """
    import torch

    inside = foreground_mask(x) if mask is None else torch.as_tensor(mask, dtype=torch.bool)
    if method == "none":
        out = x.float()
    else:
        out = _normalized(x, method, x[inside].double())
    if mask is None:
        return out
    out = torch.where(inside, out, torch.zeros((), dtype=out.dtype))
    return torch.where(inside & (out == 0), torch.full((), INSIDE_ZERO, dtype=out.dtype), out)


def _normalized(x, method: str, fg):
    if fg.numel() < 2:
        raise ValueError("no foreground left on the model grid (check spacing and shape)")
    x = x.float()
    if method == "zscore":
        mean, std = float(fg.mean()), float(fg.std())
        if not std > 0:
            raise ValueError("the foreground is constant: cannot z-score")
        return (x - mean) / std
    if method == "percentile":
        lo, hi = (float(v) for v in np.percentile(fg.numpy(), PERCENTILES))
        if not hi > lo:
            raise ValueError("the foreground's 1st and 99th percentiles are equal")
        return (x - lo) / (hi - lo)
    if method == "suvr":
        mean = float(fg.mean())
        if not mean > 0:
            raise ValueError("mean uptake in the foreground is not positive: cannot compute SUVR")
        return x / mean
    raise ValueError(f"unknown normalization {method!r}")


# ----- MONAI pieces -----

class RecordNativeGridd:
    """Remember the native grid (affine, shape) of the file for the way back (saliency maps).

    The file was read and checked by ``readers.VolumeReader`` (``data.io.read_volume``, what
    ``validate`` runs). A plain callable on the data dict (MONAI's ``Compose`` runs it after
    applying any pending lazy operations); module-level so a chain pickles for spawned workers.
    """

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        img = d["image"]
        d["native_affine"] = np.asarray(img.affine, dtype=np.float64).copy()
        d["native_shape"] = tuple(int(s) for s in img.shape[1:])
        return d


class BrainMaskd:
    """``data["brain"]``: bool (X, Y, Z) brain mask on the model grid of ``data["image"]``.

    From ``data["mask"]`` (the scan's own mask file, already resampled onto that grid with
    nearest neighbour) when present, else :func:`auto_brain_mask` of the first channel.
    """

    def __init__(self, spacing_mm: float = 2.0):
        self.spacing_mm = float(spacing_mm)

    def __call__(self, data: dict) -> dict:
        import torch

        d = dict(data)
        if d.get("mask") is not None and not isinstance(d["mask"], str):
            mask = torch.as_tensor(np.asarray(d.pop("mask").as_tensor()[0]) > 0.5)
            if not bool(mask.any()):
                raise ImageError(f"{_name(d['image'])}: its brain mask has no voxel inside the model grid")
        else:
            d.pop("mask", None)
            mask = torch.from_numpy(auto_brain_mask(d["image"].as_tensor()[0], self.spacing_mm))
        d["brain"] = mask
        return d


class NormalizeIntensityd:
    """Per-channel intensity normalization of ``data["image"]`` (see ``normalize_intensity``);
    inside ``data["brain"]`` with the background zeroed when that key is present; meta kept."""

    def __init__(self, method: str):
        self.method = method

    def __call__(self, data: dict) -> dict:
        import torch

        d = dict(data)
        img = d["image"]
        brain = d.get("brain")
        out = torch.stack([normalize_intensity(c, self.method, brain) for c in img.as_tensor()], 0)
        d["image"] = img.set_array(out)
        return d


class CheckMaskd:
    """Refuse a mask file that cannot be one 3D mask; every message names the mask file."""

    def __call__(self, data: dict) -> dict:
        mask = data["mask"]
        name = str(mask.meta.get("filename_or_obj", "mask"))
        if mask.ndim != 4 or mask.shape[0] != 1 or min(mask.shape[1:]) < 2:
            raise ImageError(f"mask {name}: not a 3D volume (shape {tuple(mask.shape[1:])})")
        values = mask.as_tensor()
        import torch

        if not bool(torch.isfinite(values).all()):
            raise ImageError(f"mask {name}: holds NaN or infinite values")
        if not bool((values > 0.5).any()):
            raise ImageError(f"mask {name}: empty (no voxel above 0.5)")
        return data


def _name(img) -> str:
    return str(getattr(img, "meta", {}).get("filename_or_obj", "image"))


def _loader(key: str = "image", frames: str = "single"):
    """LoadImaged through ``readers.VolumeReader``: the reader (and checks) of ``data.io``, nothing else.

    Registered last, a reader is tried first; it claims every file name, so MONAI's own readers
    are never reached and every file is accepted or refused as ``validate`` does. A brain mask
    (``key="mask"``) gets the same file checks without the intensity-image ones (``CheckMaskd``
    checks it as a mask).
    """
    from monai.transforms import LoadImaged

    from neuro_ssl.data.readers import VolumeReader

    load = LoadImaged(keys=key, image_only=True, dtype=np.float32)
    load.register(VolumeReader(frames) if key == "image" else VolumeReader(check_values=False, role=key))
    return load


def build_preprocess(config: PreprocessConfig, modality: str | None = None, with_mask: bool = False):
    """The chain for one file of ``modality`` (default: the first of ``config.modalities``).

    Input ``{"image": path}`` (plus ``"mask": path`` with ``with_mask``); output ``{"image":
    MetaTensor (1, X, Y, Z) float32 with .affine, "native_affine": 4x4, "native_shape": (i, j, k)}``
    and, when ``config.mask_background``, ``"brain"``: the bool (X, Y, Z) mask on the model grid.
    """
    from monai.transforms import (
        Compose, EnsureChannelFirstd, Orientationd, ResampleToMatchd, ResizeWithPadOrCropd, Spacingd,
    )

    modality = config.modalities[0] if modality is None else modality
    steps = [Compose([
        _loader(frames=config.frames),
        EnsureChannelFirstd(keys="image"),
        RecordNativeGridd(),
        Orientationd(keys="image", axcodes="RAS", labels=None),
        Spacingd(keys="image", pixdim=config.spacing_mm, diagonal=True, mode="bilinear",
                 padding_mode="zeros", dtype=np.float32),
        ResizeWithPadOrCropd(keys="image", spatial_size=config.shape, mode="constant", value=0.0),
    ], lazy=True)]
    if config.mask_background:
        if with_mask:  # the mask file goes through its own affine onto the image's final grid
            steps += [_loader("mask"), EnsureChannelFirstd(keys="mask"), CheckMaskd(),
                      ResampleToMatchd(keys="mask", key_dst="image", mode="nearest", padding_mode="zeros",
                                       dtype=np.float32)]
        steps.append(BrainMaskd(min(config.spacing_mm)))
    steps.append(NormalizeIntensityd(config.normalization_for(modality)))
    return Compose(steps)


def build_match_preprocess(config: PreprocessConfig, modality: str):
    """The chain for a further channel: resampled onto the grid given under key ``"grid"``,
    normalized inside the first channel's mask given under ``"brain"`` (when masking)."""
    from monai.transforms import Compose, EnsureChannelFirstd, ResampleToMatchd

    return Compose([
        _loader(frames=config.frames),
        EnsureChannelFirstd(keys="image"),
        RecordNativeGridd(),
        ResampleToMatchd(keys="image", key_dst="grid", mode="bilinear", padding_mode="zeros", dtype=np.float32),
        NormalizeIntensityd(config.normalization_for(modality)),
    ], lazy=True)


class Preprocessor:
    """Runs the chains for the files of one session and returns arrays with their geometry.

    Chains are built on first use and not pickled, so a copy sent to a DataLoader worker is light.
    """

    def __init__(self, config: PreprocessConfig):
        self.config = config
        self._chains: dict[tuple[str, int, int], Any] = {}

    def __getstate__(self):
        return {"config": self.config, "_chains": {}}

    def _chain(self, modality: str, first: bool, with_mask: bool = False):
        key = (modality, int(first), int(with_mask))
        if key not in self._chains:
            if first:
                self._chains[key] = build_preprocess(self.config, modality, with_mask=with_mask)
            else:
                self._chains[key] = build_match_preprocess(self.config, modality)
        return self._chains[key]

    def __call__(self, paths: Sequence[str], modalities: Sequence[str] | None = None,
                 mask: str | None = None) -> dict:
        """``{"image": float32 (C, X, Y, Z), "affine", "native_affine", "native_shape"}`` (first file's grid).

        ``mask``: the session's brain mask file (any grid; used when ``config.mask_background``).
        """
        modalities = tuple(modalities or self.config.modalities)
        if len(paths) != len(modalities):
            raise ConfigError(f"{len(paths)} files for {len(modalities)} modalities ({', '.join(modalities)})")
        with_mask = bool(mask) and self.config.mask_background
        data = {"image": str(paths[0]), **({"mask": str(mask)} if with_mask else {})}
        first = _run(self._chain(modalities[0], True, with_mask), data, paths[0])
        grid = first["image"]
        brain = first.get("brain")
        channels = [grid.as_tensor()]
        for path, modality in zip(paths[1:], modalities[1:]):
            extra = {"brain": brain} if brain is not None else {}
            out = _run(self._chain(modality, False), {"image": str(path), "grid": grid, **extra}, path)
            channels.append(out["image"].as_tensor())
        image = np.stack([c[0].numpy() for c in channels], 0).astype(np.float32, copy=False)
        return {
            "image": np.ascontiguousarray(image),
            "affine": np.asarray(grid.affine, dtype=np.float64),
            "native_affine": first["native_affine"],
            "native_shape": first["native_shape"],
        }


def _run(chain, data: dict, path) -> dict:
    """Apply a chain; any failure becomes one ImageError line naming the file."""
    try:
        return chain(data)
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - every reader/transform failure is reported the same way
        causes = _causes(exc)
        own = next((c for c in causes if isinstance(c, NeuroSSLError)), None)
        if own is not None:
            raise own.with_traceback(None) from None
        root = causes[-1]
        reason = " ".join(str(root).split())[:300] or type(root).__name__
        if isinstance(root, FileNotFoundError):
            reason = "file not found"
        raise ImageError(f"{path}: cannot be preprocessed ({reason})") from None


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what caused it (MONAI wraps each failure in "applying transform ..."), outermost first."""
    chain: list[BaseException] = []
    while exc is not None and all(exc is not seen for seen in chain):
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    return chain


__all__ = [
    "PreprocessConfig", "build_preprocess", "build_match_preprocess", "Preprocessor",
    "normalize_intensity", "otsu_threshold", "foreground_mask", "auto_brain_mask", "is_pet", "PIPELINE_VERSION",
]
