"""MoCo's InfoNCE: each query against its own key and the negatives of a queue.

MoCo v2 (He et al., CVPR 2020, arXiv:1911.05722, eq. 1; Chen et al., arXiv:2003.04297):
    l_i  = -log( exp(q_i . k_i / T) / ( exp(q_i . k_i / T) + sum_{n in queue} exp(q_i . n / T) ) )
    loss = mean of l_i over the B queries (over every rank's queries with torch.distributed)
q = online encoder + head on one view (B, D); k = momentum encoder on the other view (B, D);
queue = keys of earlier batches (K, D). All L2-normalized inside. Only the own key is a positive
and only the queue holds negatives: the batch's other queries and keys are not candidates.
Keys and queue carry no gradient (detached here, whatever the caller passes).

Without a queue (``queue=None`` or 0 rows) the negatives are the other keys of the (global)
batch, as in MoCo v3 (Chen, Xie, He, ICCV 2021, arXiv:2104.02057, Algorithm 1 ``ctr``):
    l_i = -log( exp(q_i . k_i / T) / sum_{j in global batch} exp(q_i . k_j / T) )
``symmetric=True`` averages both directions, (L(q1, k2) + L(q2, k1)) / 2, as MoCo v3 does
(v3 also multiplies by 2T, a learning-rate convention left out here).

Not the same as ``NTXent``/``YAwareInfoNCE`` with ``queue=``: those take (query, key) as the two
views, so keys are anchors too and in-batch samples are negatives (SimCLR/y-Aware with extra
queue negatives).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from neuro_ssl.losses._dist import gather_rows, is_distributed, sum_over_ranks
from neuro_ssl.losses.ntxent import check_temperature, check_views


def _queue_rows(queue, dim: int) -> torch.Tensor | None:
    """``queue`` as (K, D) rows, or None: a tensor, or ``(zq, yq)`` as ``MemoryQueue.get()`` returns."""
    if queue is None:
        return None
    zq = queue[0] if isinstance(queue, (tuple, list)) else queue
    if zq.ndim != 2 or zq.shape[1] != dim:
        raise ValueError(f"queue embeddings must be (K, {dim}) like the queries, got {tuple(zq.shape)}")
    return zq if zq.shape[0] else None


def moco_loss(q, k, temperature: float = 0.2, gather: bool = False, queue=None) -> torch.Tensor:
    """MoCo InfoNCE of queries q (B, D) against keys k (B, D); see the module docstring. Scalar."""
    check_views(q, k)
    dtype = torch.promote_types(q.dtype, torch.float32)
    zq = _queue_rows(queue, q.shape[1])
    with torch.autocast(device_type=q.device.type, enabled=False):
        q_n = F.normalize(q.to(dtype), dim=1)
        k_n = F.normalize(k.detach().to(dtype), dim=1)
        n_global = int(sum_over_ranks(torch.tensor(float(q.shape[0]), device=q.device)).item()) if gather else q.shape[0]
        if zq is not None:  # v2: column 0 is the own key, then the queue
            negatives = F.normalize(zq.detach().to(device=q.device, dtype=dtype), dim=1)
            logits = torch.cat([(q_n * k_n).sum(1, keepdim=True), q_n @ negatives.T], dim=1) / temperature
            positive = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
        else:  # v3: every key of the global batch, the own one at this rank's offset
            keys, offset = gather_rows(k_n) if gather else (k_n, 0)
            logits = q_n @ keys.T / temperature
            positive = torch.arange(q.shape[0], device=q.device) + offset
        losses = -torch.log_softmax(logits, dim=1).gather(1, positive[:, None])[:, 0]
    part = losses.sum() / n_global
    return sum_over_ranks(part) if gather else part


class MoCoInfoNCE(torch.nn.Module):
    """MoCo's InfoNCE: ``loss(q1, k2, *, queue=None, q2=None, k1=None)``, each (B, D) un-normalized.

    Args:
        temperature: T in q . k / T; >= 1e-4 (0.2 in MoCo v2, 0.07 in v1, 1.0 in v3 ViT-S;
            stable at 0.01: a log-softmax on normalized dot products, float32 or wider).
        symmetric: average L(q1, k2) and L(q2, k1) (MoCo v3); then q2 and k1 are required.
        gather_distributed: under torch.distributed, the loss is the mean over every rank's
            queries (and, without a queue, every rank's keys are negatives), so N ranks with
            batch B give the single-process loss over N*B. Under DDP multiply by ``world_size()``.
    Keyword ``queue``: (K, D) negatives, a tensor or ``MemoryQueue.get()``'s ``(zq, yq)`` (yq
    unused); None or empty: the global batch's other keys are the negatives.
    """

    def __init__(self, temperature: float = 0.2, symmetric: bool = False, gather_distributed: bool = True):
        super().__init__()
        self.temperature = check_temperature(temperature)
        self.symmetric = bool(symmetric)
        self.gather_distributed = bool(gather_distributed)

    def forward(self, q1: torch.Tensor, k2: torch.Tensor, *, queue=None, q2: torch.Tensor | None = None,
                k1: torch.Tensor | None = None) -> torch.Tensor:
        gather = self.gather_distributed and is_distributed()
        loss = moco_loss(q1, k2, self.temperature, gather, queue)
        if not self.symmetric:
            if q2 is not None or k1 is not None:
                raise ValueError("q2 and k1 are for symmetric=True; build MoCoInfoNCE(symmetric=True) to use them")
            return loss
        if q2 is None or k1 is None:
            raise ValueError("symmetric=True needs q2 (queries of view 2) and k1 (keys of view 1)")
        return 0.5 * (loss + moco_loss(q2, k1, self.temperature, gather, queue))

    def extra_repr(self) -> str:
        return (f"temperature={self.temperature}, symmetric={self.symmetric}, "
                f"gather_distributed={self.gather_distributed}")


__all__ = ["MoCoInfoNCE", "moco_loss"]
