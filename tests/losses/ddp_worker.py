"""Run under ``torchrun --standalone --nproc_per_node=2 ddp_worker.py OUT_DIR`` (gloo, CPU).

Each rank takes its slice of one global batch (ranks hold UNEQUAL batch sizes, to exercise the
row offsets), computes each loss with cross-rank gathering, back-propagates, and saves the loss
value and its input gradients to OUT_DIR/rank<r>.pt. test_losses_distributed.py compares them
with one process on the whole batch. Also: a queue enqueued on both ranks, and a DDP-wrapped
head trained with ``loss * world_size()``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist

from neuro_ssl.losses import MemoryQueue, NTXent, SupCon, YAwareInfoNCE, gaussian_kl, masked_mse, world_size

ROWS_PER_RANK = (3, 5)
DIM = 6


def global_batch() -> dict[str, torch.Tensor]:
    """The whole batch every rank (and the single-process reference) builds identically."""
    gen = torch.Generator().manual_seed(7)
    n = sum(ROWS_PER_RANK)
    return {
        "z1": torch.randn(n, DIM, dtype=torch.float64, generator=gen),
        "z2": torch.randn(n, DIM, dtype=torch.float64, generator=gen),
        "age": 50 + 40 * torch.rand(n, dtype=torch.float64, generator=gen),
        "label": torch.randint(0, 3, (n,), generator=gen),
        "queue_z": torch.randn(4, DIM, dtype=torch.float64, generator=gen),
        "queue_age": 50 + 40 * torch.rand(4, 1, dtype=torch.float64, generator=gen),
        "x": torch.randn(2, n, 5, dtype=torch.float64, generator=gen),
    }


def loss_cases(batch: dict[str, torch.Tensor], rows: slice) -> dict[str, callable]:
    """name -> f(z1, z2) over the rows ``rows`` of the covariates."""
    age, label = batch["age"][rows], batch["label"][rows]
    queue = (batch["queue_z"], batch["queue_age"])
    return {
        "ntxent": lambda a, b: NTXent(0.1)(a, b),
        "yaware": lambda a, b: YAwareInfoNCE(5.0, 0.1)(a, b, age),
        "yaware_compat": lambda a, b: YAwareInfoNCE(5.0, 0.1, reference_compat=True)(a, b, age),
        "supcon": lambda a, b: SupCon(0.1)(a, b, label),
        "yaware_queue": lambda a, b: YAwareInfoNCE(5.0, 0.2)(a, b, age, queue=queue),
        # the autoencoders' per-volume terms: a mean over the volumes of every rank
        "masked_mse": lambda a, b: masked_mse(a.view(-1, 1, 3, 2, 1), b.view(-1, 1, 3, 2, 1) * (b.view(-1, 1, 3, 2, 1) > 0)),
        "gaussian_kl": lambda a, b: gaussian_kl(a, b),
    }


def value_and_grads(fn, z1: torch.Tensor, z2: torch.Tensor) -> dict[str, torch.Tensor]:
    z1, z2 = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    loss = fn(z1, z2)
    loss.backward()
    return {"loss": loss.detach(), "grad_z1": z1.grad, "grad_z2": z2.grad}


def make_head() -> torch.nn.Module:
    torch.manual_seed(3)
    return torch.nn.Linear(5, DIM).double()


def main(out_dir: Path) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    start = sum(ROWS_PER_RANK[:rank])
    rows = slice(start, start + ROWS_PER_RANK[rank])
    batch = global_batch()
    results = {name: value_and_grads(fn, batch["z1"][rows], batch["z2"][rows])
               for name, fn in loss_cases(batch, rows).items()}

    queue = MemoryQueue(6, DIM, y_dim=1).double()
    queue.enqueue(batch["queue_z"][rank : rank + 1], batch["queue_age"][rank : rank + 1])
    queue.enqueue(batch["z2"][rows], batch["age"][rows])  # both enqueues store every rank's keys
    results["queue"] = {"z": queue.z.clone(), "y": queue.y.clone()}

    head = torch.nn.parallel.DistributedDataParallel(make_head())
    x1, x2 = batch["x"][0][rows], batch["x"][1][rows]
    (NTXent(0.1)(head(x1), head(x2)) * world_size()).backward()  # DDP averages: scale by world size
    results["ddp"] = {name: p.grad for name, p in head.module.named_parameters()}

    torch.save(results, out_dir / f"rank{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
