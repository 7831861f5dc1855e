"""Two real gloo processes (torchrun) with gathering equal one process on the whole batch:
loss values, input gradients (exact slices), the shared queue, and DDP parameter gradients.
MoCo (queue, batch keys as negatives, symmetric) at T = 0.01 included."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import ddp_worker
from neuro_ssl.losses import MemoryQueue, NTXent, world_size
from neuro_ssl.losses._dist import gather_with_grad, rank


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("ddp")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(Path(ddp_worker.__file__)), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"torchrun failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]


def _rows(r: int) -> slice:
    start = sum(ddp_worker.ROWS_PER_RANK[:r])
    return slice(start, start + ddp_worker.ROWS_PER_RANK[r])


@pytest.mark.parametrize("name", ["ntxent", "yaware", "yaware_compat", "supcon", "yaware_queue",
                                  "moco_queue", "moco_batch_keys", "moco_symmetric", "clip", "clip_groups",
                                  "masked_mse", "gaussian_kl"])
def test_two_ranks_equal_one_process(rank_results, name):
    batch = ddp_worker.global_batch()
    everything = slice(0, sum(ddp_worker.ROWS_PER_RANK))
    single = ddp_worker.value_and_grads(ddp_worker.loss_cases(batch, everything)[name], batch["z1"], batch["z2"])
    for r, results in enumerate(rank_results):
        got = results[name]
        torch.testing.assert_close(got["loss"], single["loss"], rtol=1e-12, atol=0)
        torch.testing.assert_close(got["grad_z1"], single["grad_z1"][_rows(r)], rtol=1e-10, atol=1e-14)
        torch.testing.assert_close(got["grad_z2"], single["grad_z2"][_rows(r)], rtol=1e-10, atol=1e-14)


def test_clip_temperature_gradients_of_the_ranks_sum_to_the_full_batch_gradient(rank_results):
    batch = ddp_worker.global_batch()
    single = ddp_worker.clip_temperature_grad(batch, slice(0, sum(ddp_worker.ROWS_PER_RANK)))
    summed = sum(results["clip_temperature_grad"] for results in rank_results)
    torch.testing.assert_close(summed, single, rtol=1e-10, atol=1e-14)


def test_queue_holds_every_ranks_keys(rank_results):
    batch = ddp_worker.global_batch()
    queue = MemoryQueue(6, ddp_worker.DIM, y_dim=1).double()
    queue.enqueue(batch["queue_z"][:2], batch["queue_age"][:2])
    queue.enqueue(batch["z2"], batch["age"])
    for results in rank_results:
        torch.testing.assert_close(results["queue"]["z"], queue.z, rtol=0, atol=0)
        torch.testing.assert_close(results["queue"]["y"], queue.y, rtol=0, atol=0)


def test_ddp_with_world_size_scaling_gives_full_batch_parameter_gradients(rank_results):
    batch = ddp_worker.global_batch()
    head = ddp_worker.make_head()
    NTXent(0.1)(head(batch["x"][0]), head(batch["x"][1])).backward()
    for results in rank_results:
        for name, param in head.named_parameters():
            torch.testing.assert_close(results["ddp"][name], param.grad, rtol=1e-10, atol=1e-14)


def test_single_process_fallbacks():
    x = torch.randn(3, 2, requires_grad=True)
    assert world_size() == 1 and rank() == 0
    assert gather_with_grad(x) is x
