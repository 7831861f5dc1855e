"""Run under ``torchrun --standalone --nproc_per_node=2 ddp_worker.py OUT_DIR`` (gloo, CPU).

Each rank takes its slice of one global batch (ranks hold UNEQUAL batch sizes, to exercise the
row offsets), computes each loss with cross-rank gathering, back-propagates, and saves the loss
value and its input gradients to OUT_DIR/rank<r>.pt. test_losses_distributed.py compares them
with one process on the whole batch. Also: a queue enqueued on both ranks, a DDP-wrapped
head trained with ``loss * world_size()``, and CLIP's learnable temperature gradient.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist

from neuro_ssl.losses import (CLIPLoss, MemoryQueue, MoCoInfoNCE, NTXent, SupCon, YAwareInfoNCE, gaussian_kl, masked_mse,
                                 world_size)

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
        "subject": torch.tensor([0, 1, 2, 0, 3, 1, 4, 2]),  # rows of one subject sit on both ranks
    }


def loss_cases(batch: dict[str, torch.Tensor], rows: slice) -> dict[str, callable]:
    """name -> f(z1, z2) over the rows ``rows`` of the covariates."""
    age, label, subject = batch["age"][rows], batch["label"][rows], batch["subject"][rows]
    queue = (batch["queue_z"], batch["queue_age"])
    return {
        "ntxent": lambda a, b: NTXent(0.1)(a, b),
        "yaware": lambda a, b: YAwareInfoNCE(5.0, 0.1)(a, b, age),
        "yaware_compat": lambda a, b: YAwareInfoNCE(5.0, 0.1, reference_compat=True)(a, b, age),
        "supcon": lambda a, b: SupCon(0.1)(a, b, label),
        "yaware_queue": lambda a, b: YAwareInfoNCE(5.0, 0.2)(a, b, age, queue=queue),
        # MoCo: a = queries, b = keys (no gradient); T = 0.01 as in the numerics tests
        "moco_queue": lambda a, b: MoCoInfoNCE(0.01)(a, b, queue=queue),
        "moco_batch_keys": lambda a, b: MoCoInfoNCE(0.01)(a, b),  # no queue: every rank's keys are negatives
        "moco_symmetric": lambda a, b: MoCoInfoNCE(0.1, symmetric=True)(a, b, q2=b, k1=a),
        "clip": lambda a, b: CLIPLoss(0.07, learnable=False)(a, b),
        "clip_groups": lambda a, b: CLIPLoss(0.2, learnable=False)(a, b, groups=subject),
        # the autoencoders' per-volume terms: a mean over the volumes of every rank
        "masked_mse": lambda a, b: masked_mse(a.view(-1, 1, 3, 2, 1), b.view(-1, 1, 3, 2, 1) * (b.view(-1, 1, 3, 2, 1) > 0)),
        "gaussian_kl": lambda a, b: gaussian_kl(a, b),
    }


def clip_temperature_grad(batch: dict[str, torch.Tensor], rows: slice) -> torch.Tensor:
    """d loss / d t of a learnable CLIP temperature on these rows (each rank: its own part)."""
    loss_fn = CLIPLoss(0.1).double()
    loss_fn(batch["z1"][rows], batch["z2"][rows], groups=batch["subject"][rows]).backward()
    return loss_fn.log_scale.grad


def value_and_grads(fn, z1: torch.Tensor, z2: torch.Tensor) -> dict[str, torch.Tensor]:
    z1, z2 = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    loss = fn(z1, z2)
    loss.backward()
    zero = torch.zeros_like  # MoCo's keys get no gradient at all
    return {"loss": loss.detach(), "grad_z1": z1.grad if z1.grad is not None else zero(z1),
            "grad_z2": z2.grad if z2.grad is not None else zero(z2)}


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

    results["clip_temperature_grad"] = clip_temperature_grad(batch, rows)
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
