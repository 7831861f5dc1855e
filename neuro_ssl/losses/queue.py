"""MoCo-style memory: a ring buffer of past key embeddings WITH their covariates, and the EMA update.

He et al., "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR 2020,
arXiv:1911.05722. Storing y next to each key lets y-Aware InfoNCE and SupCon weight queue
entries by covariate or label, which no public y-Aware or MoCo code does.

Use per step: ``zq, yq = queue.get()``; ``loss = loss_fn(z1, z2, y, queue=(zq, yq))``;
``loss.backward()``; then ``queue.enqueue(keys, y)``. Reading before enqueueing keeps a batch's
own keys out of its candidates (they are already there as positives/negatives).

The buffers are persistent (in ``state_dict``): a resumed run restores the queue and continues
exactly as an uninterrupted run would, at the cost of size x (dim + y_dim) floats per checkpoint.
Under torch.distributed, ``enqueue`` stores every rank's keys (gathered) so all ranks hold the
same queue, the same as one process with the global batch.
"""

from __future__ import annotations

import torch

from neuro_ssl.losses._dist import gather_rows, is_distributed


class MemoryQueue(torch.nn.Module):
    """Ring buffer of the last ``size`` keys (size, dim) and their covariates (size, y_dim).

    Args:
        size: number of stored keys (MoCo uses 65536 for ImageNet; a few thousand for MRI cohorts,
            and below the number of training scans, or a scan meets stale copies of itself).
        dim: embedding width, as the projection head outputs.
        y_dim: covariate columns stored with each key (1 for age or a label, 0 for none).
        gather_distributed: under torch.distributed, enqueue the keys of every rank.
    """

    def __init__(self, size: int, dim: int, y_dim: int = 0, gather_distributed: bool = True):
        super().__init__()
        for name, value, low in (("size", size, 1), ("dim", dim, 1), ("y_dim", y_dim, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"MemoryQueue {name} must be an integer >= {low}, got {value!r}")
        self.size, self.dim, self.y_dim = size, dim, y_dim
        self.gather_distributed = bool(gather_distributed)
        self.register_buffer("z", torch.zeros(size, dim))
        self.register_buffer("y", torch.zeros(size, y_dim))
        self.register_buffer("next_row", torch.zeros((), dtype=torch.long))
        self.register_buffer("n_filled", torch.zeros((), dtype=torch.long))

    def __len__(self) -> int:
        return int(self.n_filled)

    def get(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Detached copies of the filled part: (zq (n, dim), yq (n, y_dim) or None when y_dim == 0)."""
        n = len(self)
        return self.z[:n].clone(), (self.y[:n].clone() if self.y_dim else None)

    @torch.no_grad()
    def enqueue(self, z: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """Store keys z (n, dim) (detached) and their y ((n,) or (n, y_dim)), overwriting the oldest."""
        z, y = self._checked(z, y)
        if self.gather_distributed and is_distributed():
            z = gather_rows(z)[0]
            y = gather_rows(y)[0]
        z, y = z[-self.size :], y[-self.size :]
        rows = (int(self.next_row) + torch.arange(z.shape[0], device=self.z.device)) % self.size
        self.z[rows] = z.to(device=self.z.device, dtype=self.z.dtype)
        self.y[rows] = y.to(device=self.y.device, dtype=self.y.dtype)
        self.next_row.fill_((int(self.next_row) + z.shape[0]) % self.size)
        self.n_filled.fill_(min(self.size, len(self) + z.shape[0]))

    def _checked(self, z, y) -> tuple[torch.Tensor, torch.Tensor]:
        if z.ndim != 2 or z.shape[1] != self.dim:
            raise ValueError(f"queue keys must be (n, {self.dim}), got {tuple(z.shape)}")
        if self.y_dim == 0:
            if y is not None:
                raise ValueError("this MemoryQueue stores no y (y_dim=0): build it with y_dim=k to keep covariates")
            return z.detach(), z.new_zeros((z.shape[0], 0))
        if y is None:
            raise ValueError(f"this MemoryQueue stores y (y_dim={self.y_dim}): pass y with the keys")
        y = torch.as_tensor(y, device=z.device).detach()
        y = y[:, None] if y.ndim == 1 else y
        if y.ndim != 2 or y.shape != (z.shape[0], self.y_dim):
            raise ValueError(f"queue y must be ({z.shape[0]}, {self.y_dim}) for keys {tuple(z.shape)}, got {tuple(y.shape)}")
        return z.detach(), y.to(self.y.dtype)

    def extra_repr(self) -> str:
        return f"size={self.size}, dim={self.dim}, y_dim={self.y_dim}, filled={len(self)}"


@torch.no_grad()
def momentum_update(online: torch.nn.Module, target: torch.nn.Module, m: float) -> None:
    """MoCo's key-encoder update: target <- m * target + (1 - m) * online, parameter by parameter;
    buffers (BatchNorm statistics) are copied. Pass the bare modules, not DDP wrappers."""
    if isinstance(m, bool) or not isinstance(m, (int, float)) or not 0.0 <= m <= 1.0:
        raise ValueError(f"momentum m must be in [0, 1] (MoCo uses 0.999), got {m!r}")
    for kind, online_items, target_items in (
        ("parameter", online.named_parameters(), target.named_parameters()),
        ("buffer", online.named_buffers(), target.named_buffers()),
    ):
        online_items, target_items = dict(online_items), dict(target_items)
        if online_items.keys() != target_items.keys():
            differ = sorted(online_items.keys() ^ target_items.keys())[:3]
            raise ValueError(f"online and target modules differ in {kind}s, e.g. {differ}")
        for name, t in target_items.items():
            o = online_items[name].detach()
            if o.shape != t.shape:
                raise ValueError(f"{kind} {name}: online {tuple(o.shape)} vs target {tuple(t.shape)}")
            if kind == "parameter":
                t.mul_(m).add_(o, alpha=1.0 - m)
            else:
                t.copy_(o)
