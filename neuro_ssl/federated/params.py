"""Which tensors of the contrastive model travel between the sites and the server.

Only floating-point tensors of ``ContrastiveModel.state_dict()`` (encoder + projection head:
weights, biases, normalization statistics) travel; integer counters (``num_batches_tracked``)
stay where they are. With FedBN (Li et al., "FedBN: Federated Learning on Non-IID Features via
Local Batch Normalization", ICLR 2021) the normalization layers' parameters and statistics stay
at each site as well.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
import torch
from torch import nn

NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm, nn.LayerNorm)


def norm_keys(model: nn.Module) -> set[str]:
    """State-dict names of every normalization layer's parameters and buffers (BatchNorm, GroupNorm, ...)."""
    keys = set()
    for prefix, module in model.named_modules():
        if isinstance(module, NORM_TYPES):
            names = [n for n, _ in module.named_parameters(recurse=False)]
            names += [n for n, _ in module.named_buffers(recurse=False)]
            keys.update(f"{prefix}.{n}" if prefix else n for n in names)
    return keys


def travelling_keys(model: nn.Module, keep_local_norm: bool) -> list[str]:
    """Sorted names the server sends and averages: floating tensors, minus norm layers under FedBN."""
    state = model.state_dict()
    local = norm_keys(model) if keep_local_norm else set()
    return sorted(k for k, v in state.items() if torch.is_floating_point(v) and k not in local)


def to_numpy(state: Mapping[str, torch.Tensor], keys: Iterable[str]) -> dict[str, np.ndarray]:
    """``{name: float array}`` copies of the named tensors (CPU)."""
    return {k: state[k].detach().cpu().numpy().copy() for k in keys}


def to_tensors(arrays: Mapping[str, np.ndarray], like: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Arrays back to tensors with the dtype of the model's own tensors of the same name."""
    return {k: torch.from_numpy(np.asarray(v)).to(like[k].dtype) for k, v in arrays.items()}
