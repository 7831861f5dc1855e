"""Heads on top of an encoder: the SimCLR projection MLP and the supervised (fine-tuning) model."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from neuro_ssl.errors import ConfigError


class ProjectionHead(nn.Module):
    """SimCLR projection MLP, discarded after pretraining.

    "We use a MLP with one hidden layer to obtain z_i = g(h_i) = W2 relu(W1 h_i)" (Chen et al.,
    ICML 2020, arXiv:2002.05709), with BatchNorm after each hidden Linear as in SimCLR v2.
    ``dims`` lists the output width of every Linear: ``(512, 128)`` is one hidden layer of 512 and
    128-d projections; ``(2048, 1024, 512, 128)`` is the deeper head of the y-Aware paper.
    The last Linear has no normalisation and no activation (the loss L2-normalises z).
    """

    def __init__(self, in_features: int, dims: Sequence[int] = (512, 128)):
        super().__init__()
        dims = tuple(int(d) for d in dims)
        if not dims or any(d < 1 for d in dims):
            raise ConfigError(f"projection dims must be positive integers, got {dims}")
        layers: list[nn.Module] = []
        width = int(in_features)
        for hidden in dims[:-1]:
            layers += [nn.Linear(width, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)]
            width = hidden
        layers.append(nn.Linear(width, dims[-1]))
        self.mlp = nn.Sequential(*layers)
        self.in_features = int(in_features)
        self.dims = dims
        self.out_features = dims[-1]

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.mlp(h)


class ContrastiveModel(nn.Module):
    """Encoder plus projection head, one module so DDP wraps (and syncs) both at once.

    ``forward(x) -> (h, z)``: encoder features and projections. ``extras`` holds the trainable
    parts of a pretraining objective (a tabular encoder, a decoder, ...), so that the optimizer,
    DDP and checkpoints include them; empty, it adds nothing to the state dict.
    """

    def __init__(self, encoder: nn.Module, head: ProjectionHead):
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.extras = nn.ModuleDict()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return h, self.head(h)


class SupervisedModel(nn.Module):
    """Encoder plus one Linear: logits ``(B, n_classes)`` or ``(B, 1)`` for regression.

    ``.encoder`` and ``.head`` are public: fine-tuning freezes or re-initialises them separately
    and saliency takes ``.encoder.target_layer``. Dropout (if any) sits between them.
    """

    def __init__(self, encoder: nn.Module, n_outputs: int, dropout: float = 0.0):
        super().__init__()
        if int(n_outputs) < 1:
            raise ConfigError(f"n_outputs must be >= 1, got {n_outputs}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
        self.encoder = encoder
        self.dropout = nn.Dropout(float(dropout)) if dropout else nn.Identity()
        self.head = nn.Linear(encoder.out_features, int(n_outputs))
        self.n_outputs = int(n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.encoder(x)))
