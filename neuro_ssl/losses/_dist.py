"""Cross-rank helpers for the contrastive losses; every one falls back to a single process.

Gradient convention (the one the losses rely on):

* ``gather_rows(x)`` concatenates the rows of every rank. Its backward all-reduces (sums) the
  incoming gradient over ranks and returns this rank's slice, so a quantity *summed* over ranks
  gets exact gradients w.r.t. each rank's rows.
* ``sum_over_ranks(t)`` all-reduces a tensor in the forward pass and passes the gradient through
  unchanged in the backward pass.

Each loss sums its local anchors' terms divided by the GLOBAL number of anchors and passes that
through ``sum_over_ranks``: every rank then returns the exact global loss, and the gradient each
rank sees w.r.t. its own embeddings is exactly the slice of the full-batch gradient.
DistributedDataParallel then AVERAGES parameter gradients over ranks, which divides them by the
world size: multiply the loss by ``world_size()`` before ``backward()`` under DDP (or sum the
gradients instead of averaging them).
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True when a process group with more than one rank is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of ranks; 1 without torch.distributed."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank; 0 without torch.distributed."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _rows_per_rank(n_rows: int, device: torch.device) -> list[int]:
    sizes = [torch.zeros(1, dtype=torch.long, device=device) for _ in range(world_size())]
    dist.all_gather(sizes, torch.tensor([n_rows], dtype=torch.long, device=device))
    return [int(s.item()) for s in sizes]


class _GatherRows(torch.autograd.Function):
    """Forward: all_gather (ranks may hold different numbers of rows). Backward: all_reduce(sum), own slice."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        longest = max(sizes)
        padded = x.new_zeros((longest, *x.shape[1:]))
        padded[: x.shape[0]] = x
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded.contiguous())
        ctx.start = sum(sizes[: rank()])
        ctx.n_rows = x.shape[0]
        return torch.cat([part[:n] for part, n in zip(parts, sizes)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        total = grad.contiguous().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total[ctx.start : ctx.start + ctx.n_rows], None


class _SumOverRanks(torch.autograd.Function):
    """Forward: all_reduce(sum). Backward: identity (each rank back-propagates its own part)."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        total = t.detach().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad


def gather_rows(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Rows of all ranks concatenated in rank order, and the row where this rank's rows start.

    Keeps gradients (see the module docstring). One process: ``(x, 0)``.
    """
    if not is_distributed():
        return x, 0
    sizes = _rows_per_rank(x.shape[0], x.device)
    return _GatherRows.apply(x, sizes), sum(sizes[: rank()])


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """All-gather along dim 0 keeping gradients: backward sums over ranks, returns this rank's slice."""
    return gather_rows(x)[0]


def sum_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """Sum of ``t`` over ranks; the gradient goes to each rank's own ``t`` unchanged."""
    return _SumOverRanks.apply(t) if is_distributed() else t
