"""Pretraining objectives: what each ``--loss`` computes from one micro-batch.

The loop (:class:`~neuro_ssl.training.pretrain.Pretrainer`) owns everything the methods share:
data, the encoder and projection head, optimizer, schedule, AMP, accumulation, checkpoints,
exact resume, online probes and DDP. An objective adds only what is its own (as a method over
solo-learn's shared base does):

- its trainable modules, as submodules of the objective (a tabular encoder, a decoder, a
  learnable temperature). The loop places the objective under ``model.extras["objective"]``, so
  the optimizer, DDP gradient sync, checkpoints and resume include them; an objective without
  parameters or buffers adds no key to the checkpoint;
- ``needs_target(config)``: whether it uses a momentum encoder (``step.target``) and a
  :class:`~neuro_ssl.losses.MemoryQueue` of its keys (``step.queue``);
- ``setup(data)``: anything computed once from the training rows (``data.frame``, indexed by
  manifest row; a batch's rows are ``batch["index"]``);
- ``forward(step) -> StepOutput``: the scalar loss of one micro-batch, the keys to enqueue after
  the optimizer step, and extra scalars to log (their epoch means join RUN/metrics.csv);
- ``export(run_dir, model, meta)``: files of its own beside ``encoder.pt`` (a decoder), written by
  rank 0 at every checkpoint.

A new objective subclasses :class:`Objective` and registers itself with ``@register("name")``;
``training.config.LOSSES`` lists the names for ``--help`` without importing torch (a test keeps
the two equal).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from neuro_ssl.errors import ConfigError

OBJECTIVES: dict[str, type["Objective"]] = {}


def register(name: str) -> Callable[[type["Objective"]], type["Objective"]]:
    """Class decorator: ``@register("simclr")`` makes ``--loss simclr`` build that objective."""
    def add(cls: type["Objective"]) -> type["Objective"]:
        OBJECTIVES[name] = cls
        return cls
    return add


@dataclass
class Step:
    """What an objective sees of one micro-batch.

    ``batch``: the collated items (``view1``, ``view2``: (B, C, X, Y, Z) on the CPU, ``index``:
    manifest rows, covariate columns). ``views``: both views on the device, ``view1`` rows
    first, (2B, C, X, Y, Z). ``y``: (B, k) float64 covariates or label codes of the loss, or None.
    ``net``: the model as trained (DDP / compile wrappers included), ``net(x) -> (h, z)``;
    ``target``: the momentum encoder or None; ``queue``: its MemoryQueue or None.
    """

    batch: dict
    views: torch.Tensor
    y: torch.Tensor | None
    net: nn.Module
    target: nn.Module | None
    queue: Any
    amp: str
    device: torch.device

    def encode(self, x: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(h, z)`` of ``x`` (default: both views) under the run's autocast; z in float32."""
        from neuro_ssl.training.loop import autocast

        with autocast(self.amp, self.device):
            h, z = self.net(self.views if x is None else x)
        return h, z.float()

    def encode_target(self, x: torch.Tensor | None = None) -> torch.Tensor:
        """Projections of the momentum encoder (no gradient), float32."""
        from neuro_ssl.training.loop import autocast

        if self.target is None:
            raise RuntimeError("this objective has no momentum encoder")
        with torch.no_grad(), autocast(self.amp, self.device):
            _, k = self.target(self.views if x is None else x)
        return k.float()


@dataclass
class StepOutput:
    """One micro-batch's loss, the (B, D) keys (and their y) to enqueue, extra scalars to log."""

    loss: torch.Tensor
    keys: torch.Tensor | None = None
    keys_y: torch.Tensor | None = None
    logs: dict[str, float] = field(default_factory=dict)


class Objective(nn.Module):
    """Base class of the pretraining objectives (see the module docstring)."""

    #: True: the batch also holds ``target1`` / ``target2``, the un-augmented scans of the two views
    reconstructs = False

    def __init__(self, config, data):
        super().__init__()
        self.config = config

    @classmethod
    def needs_target(cls, config) -> bool:
        """True when the objective uses a momentum encoder and a queue of its keys."""
        return False

    def setup(self, data) -> None:
        """Called once with the training data before the first step (default: nothing)."""

    def forward(self, step: Step) -> StepOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def export(self, run_dir, model: nn.Module, meta: dict) -> None:
        """Write the objective's own files into ``run_dir`` (rank 0, every checkpoint); default: none.

        ``model``: the unwrapped ContrastiveModel; ``meta``: what ``encoder.pt``'s meta holds.
        """


def build_objective(config, data) -> Objective:
    """The objective of ``config.loss``, set up on ``data``; ConfigError for an unknown name."""
    cls = OBJECTIVES.get(config.loss)
    if cls is None:
        raise ConfigError(f"--loss {config.loss}: no such objective (known: {', '.join(sorted(OBJECTIVES))})")
    objective = cls(config, data)
    objective.setup(data)
    return objective


class PairLoss(Objective):
    """SimCLR NT-Xent, y-Aware InfoNCE or SupCon between the two views of each scan.

    With ``--queue N`` the keys of a momentum encoder are kept in a memory of N entries and
    added as extra candidates (negatives, and kernel-weighted positives for y-Aware and SupCon),
    with the keys of the other view as in-batch partners, symmetrised over the two views. This
    is the queue mode of MoCo grafted onto these losses, not MoCo's own loss (``--loss moco``).
    """

    @classmethod
    def needs_target(cls, config) -> bool:
        return int(config.queue) > 0

    def __init__(self, config, data):
        super().__init__(config, data)
        self.loss_fn = self.build_loss(config)

    @staticmethod
    def build_loss(config) -> nn.Module:
        raise NotImplementedError

    def pair(self, z1: torch.Tensor, z2: torch.Tensor, y: torch.Tensor | None, queue) -> torch.Tensor:
        return self.loss_fn(z1, z2, y, queue=queue)

    def forward(self, step: Step) -> StepOutput:
        _, z = step.encode()
        z1, z2 = z.chunk(2)
        if step.target is None:
            return StepOutput(self.pair(z1, z2, step.y, None))
        k1, k2 = step.encode_target().chunk(2)
        memory = step.queue.get() if len(step.queue) else None
        loss = 0.5 * (self.pair(z1, k2, step.y, memory) + self.pair(z2, k1, step.y, memory))
        return StepOutput(loss, keys=k1, keys_y=step.y)


@register("simclr")
class SimCLR(PairLoss):
    """NT-Xent (Chen et al., ICML 2020, arXiv:2002.05709): the other view is the only positive."""

    @staticmethod
    def build_loss(config) -> nn.Module:
        from neuro_ssl.losses import NTXent

        return NTXent(temperature=config.temperature)

    def pair(self, z1, z2, y, queue):
        return self.loss_fn(z1, z2, queue=queue)


@register("yaware")
class YAware(PairLoss):
    """y-Aware InfoNCE (Dufumier et al., MICCAI 2021, arXiv:2106.08808) on ``--meta`` covariates."""

    @staticmethod
    def build_loss(config) -> nn.Module:
        from neuro_ssl.losses import YAwareInfoNCE

        return YAwareInfoNCE(sigma=config.sigma, temperature=config.temperature)


@register("supcon")
class SupervisedContrastive(PairLoss):
    """SupCon (Khosla et al., NeurIPS 2020, arXiv:2004.11362) on the ``--meta`` label column."""

    @staticmethod
    def build_loss(config) -> nn.Module:
        from neuro_ssl.losses import SupCon

        return SupCon(temperature=config.temperature)


@register("moco")
class MoCo(Objective):
    """MoCo v2's InfoNCE (He et al., CVPR 2020, arXiv:1911.05722; Chen et al., arXiv:2003.04297).

    Each view's query (online encoder + head) against the other view's key from the momentum
    encoder and the ``--queue`` negatives only, keys without gradient; symmetrised over the two
    views as MoCo v3 does (arXiv:2104.02057): (L(q1, k2) + L(q2, k1)) / 2. Until the queue holds
    keys (the first step) the negatives are the batch's other keys, MoCo v3's form. The keys of
    view 1 join the queue after each optimizer step. ``neuro_ssl.losses.MoCoInfoNCE``.
    """

    @classmethod
    def needs_target(cls, config) -> bool:
        return True

    def __init__(self, config, data):
        super().__init__(config, data)
        from neuro_ssl.losses import MoCoInfoNCE

        self.loss_fn = MoCoInfoNCE(temperature=config.temperature, symmetric=True)

    def forward(self, step: Step) -> StepOutput:
        _, z = step.encode()
        q1, q2 = z.chunk(2)
        k1, k2 = step.encode_target().chunk(2)
        memory = step.queue.get() if len(step.queue) else None
        return StepOutput(self.loss_fn(q1, k2, queue=memory, q2=q2, k1=k1), keys=k1, keys_y=step.y)


__all__ = ["OBJECTIVES", "Objective", "Step", "StepOutput", "build_objective", "register"]

# objectives defined in their own modules register on import (after the base classes)
from neuro_ssl.training import autoencoder as _autoencoder  # noqa: E402,F401
from neuro_ssl.training import clip as _clip  # noqa: E402,F401
