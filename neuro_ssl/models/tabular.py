"""The clinical (tabular) encoder of CLIP-style pretraining: an MLP with a learned fill for every missing value."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from neuro_ssl.errors import ConfigError


class ClinicalEncoder(nn.Module):
    """MLP over featurized clinical data (``data.clinical.ClinicalFeaturizer``): ``(B, P), (B, G) -> (B, D)``.

    The P feature slots form G groups (one per clinical column: 1 slot for a number, one per
    category, one per text term), ``group_widths`` wide. In a row where group g is missing its
    slots are replaced by the group's learned fill (a parameter of that width, initialised at 0,
    i.e. the training mean of a standardized number), and the G missing bits are appended to the
    input, so the network knows what was filled. Then Linear-LayerNorm-ReLU per hidden width and
    a plain Linear to ``out_features`` (LayerNorm: no batch statistics, the same on any batch size
    or rank count). A non-finite value in a present slot raises ValueError: the output is never NaN.
    """

    def __init__(self, group_widths: Sequence[int], out_features: int = 128, hidden: Sequence[int] = (256, 256)):
        super().__init__()
        self.group_widths = [int(w) for w in group_widths]
        if not self.group_widths or min(self.group_widths) < 1:
            raise ConfigError(f"clinical groups must each be at least 1 wide, got {self.group_widths}")
        self.fill = nn.Parameter(torch.zeros(sum(self.group_widths)))
        self.register_buffer("slot_group", torch.repeat_interleave(
            torch.arange(len(self.group_widths)), torch.tensor(self.group_widths)), persistent=False)
        layers: list[nn.Module] = []
        width = sum(self.group_widths) + len(self.group_widths)
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.LayerNorm(int(h)), nn.ReLU(inplace=True)]
            width = int(h)
        layers.append(nn.Linear(width, int(out_features)))
        self.mlp = nn.Sequential(*layers)
        self.out_features = int(out_features)

    def forward(self, values: torch.Tensor, missing: torch.Tensor) -> torch.Tensor:
        n_slots, n_groups = len(self.fill), len(self.group_widths)
        if values.ndim != 2 or values.shape[1] != n_slots or missing.shape != (values.shape[0], n_groups):
            raise ValueError(f"expected values (B, {n_slots}) and missing (B, {n_groups}), got "
                             f"{tuple(values.shape)} and {tuple(missing.shape)}")
        missing = missing.to(torch.bool)
        slot_missing = missing[:, self.slot_group]
        if not torch.isfinite(values[~slot_missing]).all():
            raise ValueError("clinical values hold NaN or inf where they are not marked missing")
        filled = torch.where(slot_missing, self.fill.to(values.dtype), values.nan_to_num(0.0))
        return self.mlp(torch.cat([filled, missing.to(values.dtype)], dim=1))
