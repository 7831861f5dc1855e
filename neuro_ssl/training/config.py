"""``PretrainConfig``: every pretraining option in one plain dataclass, saved as RUN/config.yaml.

The config is plain data (str, int, float, bool, tuples/lists, dicts) so it round-trips through
YAML (``to_dict`` / ``from_dict``) and into ``torch.load(weights_only=True)`` checkpoints.
``validate()`` checks every value and cross-option rule and raises a one-line ConfigError.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from neuro_ssl._utils.options import dataclass_to_dict
from neuro_ssl.errors import ConfigError

LOSSES = ("simclr", "yaware", "supcon", "moco", "clip", "yaware+clip", "simclr+clip", "ae-contrastive",
          "vae-contrastive")
#: losses that align each scan with its clinical data (--clinical / --text)
CLIP_LOSSES = ("clip", "yaware+clip", "simclr+clip")
#: what makes a positive pair: two views of one scan, or of two visits of one subject
POSITIVES = ("views", "visits")
#: the same names as ``models.encoders.ARCHS`` / ``NORMS`` (kept here so ``--help`` imports no torch)
ARCHS = ("resnet10", "resnet18", "resnet34", "resnet50", "densenet121")
NORMS = ("batch", "group", "instance")
OPTIMIZERS = ("adamw", "adam")
AMP_MODES = ("none", "bf16", "fp16")
MISSING_Y = ("fail", "skip")
#: the same names as ``data.io.FRAMES`` (kept here so ``--help`` imports nothing heavy)
FRAMES = ("single", "mean")
#: keys config.yaml may also hold (where the data came from); not options of the computation
RUN_KEYS = frozenset({"manifest", "val_manifest", "out", "resume", "config"})


@dataclass
class PretrainConfig:
    """All pretraining options (the CLI flags map onto these fields one to one).

    ``sigma`` is in the covariate's own units (years for age) and applies to every ``meta``
    column: y-Aware compares raw covariate values, it does not standardize them.
    """

    # objective
    loss: str = "simclr"
    meta: tuple[str, ...] = ()          # covariate column(s) (yaware) or the label column (supcon)
    sigma: float = 5.0                  # RBF kernel width, in the units of the meta column(s)
    temperature: float = 0.1
    queue: int = 0                      # momentum queue of extra candidates (0 = none): not MoCo's loss
    momentum: float = 0.99              # target-network EMA coefficient (with --queue)
    clinical: tuple[str, ...] = ()      # clip losses: clinical columns aligned with each scan
    text: str | None = None             # clip losses: a free-text column (TF-IDF)
    clip_weight: float = 1.0            # yaware+clip, simclr+clip: weight of the CLIP term
    positives: str = "views"            # views: two views of one scan; visits: of two visits of a subject
    recon_weight: float = 1.0           # ae/vae-contrastive: weight of the in-brain reconstruction MSE
    kl_weight: float = 1e-3             # vae-contrastive: weight of the KL term
    # network
    arch: str = "resnet18"
    norm: str = "batch"
    width: float = 1.0                  # channel multiplier of the encoder
    proj_dims: tuple[int, ...] = (512, 128)
    # preprocessing (read back by every later command)
    spacing_mm: tuple[float, float, float] = (2.0, 2.0, 2.0)
    shape: tuple[int, int, int] = (96, 112, 96)
    normalization: str = "auto"
    modalities: tuple[str, ...] = ("T1w",)
    mask_background: bool = True        # every voxel outside the brain mask 0 (data.transforms)
    views: tuple[str, ...] = ()         # cross-modal positives: e.g. ("T1w", "FDG")
    augment: dict = field(default_factory=dict)  # AugmentConfig overrides
    # optimisation
    epochs: int = 100
    batch_size: int = 8
    lr: float = 3e-4
    weight_decay: float = 5e-5
    optimizer: str = "adamw"
    warmup_epochs: float = 1.0
    accumulate: int = 1
    amp: str = "none"
    channels_last: bool = False
    compile: bool = False
    # running
    workers: int = 2
    seed: int = 0
    device: str = "auto"
    cache_dir: str | None = None
    checkpoint_every: int = 0           # optimizer steps between mid-epoch checkpoints (0 = per epoch only)
    probe_every: int = 1                # epochs between online probes (needs a val manifest)
    skip_bad: bool = False
    missing_y: str = "fail"
    log_every: int = 10                 # optimizer steps between TensorBoard scalars
    frames: str = "single"              # preprocessing: "mean" averages the frames of a 4D file (dynamic PET)

    # ---- conversion -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain YAML-safe dict (tuples become lists)."""
        return dataclass_to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PretrainConfig":
        """Build from a dict (e.g. config.yaml); unknown keys are refused with a suggestion."""
        names = {f.name: f for f in dataclasses.fields(cls)}
        kwargs = {}
        for key, value in dict(data).items():
            name = str(key).replace("-", "_")
            if name in RUN_KEYS:
                continue
            if name not in names:
                close = difflib.get_close_matches(name, names, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise ConfigError(f"unknown pretraining option '{key}'{hint}")
            kwargs[name] = _coerce(names[name], value)
        return cls(**kwargs)

    def preprocess_dict(self) -> dict[str, Any]:
        """The PreprocessConfig fields (later commands rebuild the same preprocessing from these)."""
        out = {"spacing_mm": list(self.spacing_mm), "shape": list(self.shape),
               "normalization": self.normalization, "modalities": list(self.input_modalities),
               "mask_background": bool(self.mask_background)}
        if self.frames != "single":  # as PreprocessConfig.to_dict: earlier encoders' meta stays as it was
            out["frames"] = self.frames
        return out

    @property
    def pair_loss(self) -> str:
        """The view-to-view part of the loss: ``yaware`` for ``yaware+clip``; ``clip`` has none."""
        return self.loss.split("+")[0]

    @property
    def input_modalities(self) -> tuple[str, ...]:
        """Modalities loaded per session: the two views' modalities with --views, else ``modalities``."""
        return tuple(self.views) if self.views else tuple(self.modalities)

    @property
    def in_channels(self) -> int:
        """Encoder input channels: one per modality, or 1 with cross-modal views (shared encoder)."""
        return 1 if self.views else len(self.modalities)

    # ---- checks -----------------------------------------------------------------------------
    def validate(self) -> "PretrainConfig":
        """Raise ConfigError on the first invalid option; returns self."""
        _choice("loss", self.loss, LOSSES)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("amp", self.amp, AMP_MODES)
        _choice("missing_y", self.missing_y, MISSING_Y)
        _choice("arch", self.arch, ARCHS)
        _choice("norm", self.norm, NORMS)
        _choice("frames", self.frames, FRAMES)
        _choice("positives", self.positives, POSITIVES)
        if self.pair_loss in ("yaware", "supcon") and not self.meta:
            column = "age" if self.pair_loss == "yaware" else "diagnosis"
            raise ConfigError(f"--loss {self.loss} needs --meta COLUMN (e.g. --meta {column})")
        if self.loss == "moco" and int(self.queue) < 1:
            raise ConfigError("--loss moco needs --queue N, the number of past keys kept as negatives "
                              "(MoCo used 65536 on ImageNet; keep it below the number of training scans)")
        self._validate_clip()
        if self.loss == "supcon" and len(self.meta) != 1:
            raise ConfigError(f"--loss supcon takes one label column in --meta, got {','.join(self.meta)}")
        _positive("sigma", self.sigma)
        _positive("temperature", self.temperature)
        _positive("lr", self.lr)
        _positive("width", self.width)
        _positive("recon_weight", self.recon_weight)
        if not (isinstance(self.kl_weight, (int, float)) and math.isfinite(self.kl_weight) and self.kl_weight >= 0):
            raise ConfigError(f"--kl-weight must be a number >= 0, got {self.kl_weight}")
        if self.loss.endswith("-contrastive") and int(self.queue) > 0:
            raise ConfigError(f"--loss {self.loss} has no queue mode; drop --queue")
        for name in ("epochs", "accumulate", "probe_every", "log_every"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if int(self.batch_size) < 2:
            raise ConfigError(f"--batch-size must be >= 2 for a contrastive loss (negatives come from the batch), got {self.batch_size}")
        for name in ("queue", "workers", "checkpoint_every"):
            if int(getattr(self, name)) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= float(self.momentum) < 1.0:
            raise ConfigError(f"--momentum must be in [0, 1), got {self.momentum}")
        if float(self.weight_decay) < 0 or float(self.warmup_epochs) < 0:
            raise ConfigError("--weight-decay and --warmup must be >= 0")
        if len(self.shape) != 3 or len(self.spacing_mm) != 3:
            raise ConfigError(f"--shape and --spacing take 3 values, got {self.shape} and {self.spacing_mm}")
        if self.views and len(self.views) != 2:
            raise ConfigError(f"--views takes exactly two modalities (one per view), got {','.join(self.views)}")
        if len(self.proj_dims) < 1 or min(self.proj_dims) < 1:
            raise ConfigError(f"--proj-dims must be positive widths, got {self.proj_dims}")
        return self


    def _validate_clip(self) -> None:
        if self.loss in CLIP_LOSSES:
            if not self.clinical and not self.text:
                raise ConfigError(f"--loss {self.loss} needs --clinical COL[,COL] (e.g. MMSE,CDRSB,ADAS13,APOE4,PTEDUCAT) "
                                  "and/or --text COL")
            if int(self.queue) > 0:
                raise ConfigError(f"--loss {self.loss} takes no --queue (CLIP's negatives are the batch's other rows)")
            _positive("clip_weight", self.clip_weight)
        elif self.clinical or self.text:
            raise ConfigError(f"--clinical and --text are used by --loss {', '.join(CLIP_LOSSES)}; "
                              f"--loss {self.loss} would ignore them")
        if self.text and self.text in self.clinical:
            raise ConfigError(f"--text {self.text} is also in --clinical: give a column one role")


def _coerce(f: dataclasses.Field, value: Any) -> Any:
    """Lists from YAML back to tuples where the field is a tuple; comma strings split."""
    default = f.default if f.default is not dataclasses.MISSING else None
    if isinstance(default, tuple) or f.name in ("meta", "views", "modalities", "clinical"):
        if value is None:
            return ()
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        items = tuple(value)
        if f.name in ("spacing_mm",):
            items = tuple(float(v) for v in items) * (3 if len(items) == 1 else 1)
        elif f.name in ("shape",):
            items = tuple(int(v) for v in items) * (3 if len(items) == 1 else 1)
        elif f.name == "proj_dims":
            items = tuple(int(v) for v in items)
        else:
            items = tuple(str(v) for v in items)
        return items
    return value


def _choice(name: str, value: str, options: tuple[str, ...]) -> None:
    if value not in options:
        close = difflib.get_close_matches(str(value), options, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"--{name.replace('_', '-')} must be one of {', '.join(options)}, got '{value}'{hint}")


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ConfigError(f"--{name.replace('_', '-')} must be a positive number, got {value}")
