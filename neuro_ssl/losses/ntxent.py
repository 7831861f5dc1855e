"""NT-Xent (SimCLR), and the candidate log-probabilities every contrastive loss here shares.

NT-Xent (Chen et al., ICML 2020, arXiv:2002.05709):
    s_ab = cos(z_a, z_b) / T over the 2B embeddings [z1; z2] (L2-normalized inside)
    l_a  = -log( exp(s_ap) / sum_{c != a} exp(s_ac) ),   p = the other view of a's scan
    loss = mean of l_a over the 2B anchors
Same-view samples count as negatives (the SimCLR paper's and lightly's variant). The published
y-Aware code's ``NTXenLoss`` returns twice this value (it divides the sum over 2B anchors by B).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from neuro_ssl.losses._dist import gather_rows, is_distributed, sum_over_ranks

MIN_TEMPERATURE = 1e-4


def check_temperature(temperature: float) -> float:
    """The temperature as a float; refuses T < 1e-4 (T <= 0 is meaningless, tinier T explodes gradients)."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise ValueError(f"temperature must be a number, got {temperature!r}")
    if not math.isfinite(temperature) or temperature < MIN_TEMPERATURE:
        raise ValueError(f"temperature must be finite and >= {MIN_TEMPERATURE:g}, got {temperature!r}")
    return float(temperature)


def check_views(z1: torch.Tensor, z2: torch.Tensor) -> None:
    """Both views are (B, D) with the same shape; the message quotes both shapes."""
    if z1.ndim != 2 or z1.shape != z2.shape or z1.shape[0] == 0:
        raise ValueError(
            f"z1 and z2 must both be (B, D) with B >= 1, got z1 {tuple(z1.shape)} and z2 {tuple(z2.shape)}"
        )


def split_queue(queue, dim: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``queue=(zq, yq)`` (as ``MemoryQueue.get()`` returns it) or None -> (zq or None, yq or None)."""
    if queue is None:
        return None, None
    zq, yq = queue
    if zq.ndim != 2 or zq.shape[1] != dim:
        raise ValueError(f"queue embeddings must be (n, {dim}) like z1, got {tuple(zq.shape)}")
    if yq is not None and yq.shape[0] != zq.shape[0]:
        raise ValueError(f"queue y must have one row per queue embedding: zq {tuple(zq.shape)}, yq {tuple(yq.shape)}")
    return (zq, yq) if zq.shape[0] else (None, None)


class Candidates(NamedTuple):
    """Anchors are this rank's 2b rows [z1; z2]; candidate columns are [Z1; Z2; queue] over all ranks."""

    log_prob: torch.Tensor  # (2b, 2N + n_queue): log_softmax of cos/T over the candidates c != a
    self_col: torch.Tensor  # (2b,) column of each anchor itself: excluded, give it weight 0
    positive_col: torch.Tensor  # (2b,) column of each anchor's other view
    n_anchors: int  # 2N, the number of anchors summed over ranks
    offset: int  # this rank's first row in the global batch (0 in one process)


#: an anchor's own logit goes this far below the lowest possible one (-1/T): its softmax term is
#: exactly 0 (float32 and float64), and unlike -inf, weight 0 x its log-probability is 0, not NaN.
SELF_MARGIN = 1000.0


def contrastive_log_prob(z1, z2, temperature: float, gather: bool = False, queue_z=None) -> Candidates:
    """log_softmax_c (cos(z_a, z_c) / T) with c != a, for this rank's anchors against all candidates.

    z1, z2: (b, D) un-normalized. Computed in float32 at least, autocast disabled, so T = 0.01
    stays finite under bf16/fp16 AMP. With ``gather`` the candidates hold every rank's rows (with
    gradient) and the anchor columns are offset by this rank's first row in the global batch.
    The own column holds a finite, hugely negative log-probability: callers give it weight 0.
    1/T scales the anchors and the self logits are set in place: no extra (2b, C) copies.
    """
    check_views(z1, z2)
    dtype = torch.promote_types(z1.dtype, torch.float32)
    with torch.autocast(device_type=z1.device.type, enabled=False):
        both = F.normalize(torch.cat([z1, z2], dim=1).to(dtype).view(z1.shape[0], 2, -1), dim=2)
        local_b = z1.shape[0]
        if gather:
            both_all, offset = gather_rows(both)
        else:
            both_all, offset = both, 0
        n_global = both_all.shape[0]
        columns = [both_all[:, 0], both_all[:, 1]]
        if queue_z is not None:
            columns.append(F.normalize(queue_z.detach().to(device=z1.device, dtype=dtype), dim=1))
        anchors = torch.cat([both[:, 0], both[:, 1]]) / temperature
        logits = anchors @ torch.cat(columns).T
        rows = torch.arange(2 * local_b, device=z1.device)
        own = torch.arange(local_b, device=z1.device) + offset
        self_col = torch.cat([own, own + n_global])
        positive_col = torch.cat([own + n_global, own])
        excluded = torch.tensor(-1.0 / temperature - SELF_MARGIN, dtype=dtype, device=z1.device)
        logits.index_put_((rows, self_col), excluded)
        log_prob = torch.log_softmax(logits, dim=1)
    return Candidates(log_prob, self_col, positive_col, 2 * n_global, offset)


def tile_weights(scan_weights: torch.Tensor, queue_weights: torch.Tensor | None, cand: Candidates) -> torch.Tensor:
    """(2b, 2N + n_queue) weights in ``cand.log_prob``'s dtype, each anchor's own column 0.

    Both views of a scan carry the same y or label, so the (b, N) ``scan_weights`` (this rank's
    scans x all scans) fill the Z1 and Z2 columns of the z1 and z2 anchors alike (4x less work).
    """
    b, n = scan_weights.shape
    weights = cand.log_prob.new_empty(cand.log_prob.shape)
    weights[:b, :n] = scan_weights
    weights[:b, n:2 * n] = scan_weights
    if queue_weights is not None:
        weights[:b, 2 * n:] = queue_weights
    weights[b:] = weights[:b]
    rows = torch.arange(2 * b, device=weights.device)
    weights.index_put_((rows, cand.self_col), torch.zeros((), dtype=weights.dtype, device=weights.device))
    return weights


def mean_over_anchors(anchor_losses: torch.Tensor, n_anchors: int, gather: bool) -> torch.Tensor:
    """Sum of this rank's anchor losses / global anchor count, summed over ranks when gathering.

    Every rank returns the global mean; gradients w.r.t. each rank's inputs are exact (see _dist).
    """
    part = anchor_losses.sum() / n_anchors
    return sum_over_ranks(part) if gather else part


def ntxent_loss(z1, z2, temperature: float = 0.1, gather: bool = False, queue=None) -> torch.Tensor:
    """NT-Xent as in the module docstring; ``queue=(zq, _)`` entries are extra negatives. Scalar."""
    queue_z, _ = split_queue(queue, z1.shape[-1])
    cand = contrastive_log_prob(z1, z2, temperature, gather, queue_z)
    rows = torch.arange(cand.log_prob.shape[0], device=cand.log_prob.device)
    return mean_over_anchors(-cand.log_prob[rows, cand.positive_col], cand.n_anchors, gather)


class NTXent(torch.nn.Module):
    """SimCLR's NT-Xent loss: ``loss(z1, z2, queue=None)`` with un-normalized (B, D) projections.

    Args:
        temperature: T in cos / T; >= 1e-4 (0.1 in SimCLR, 0.5 or 0.07 are also common).
        gather_distributed: under torch.distributed, compare against every rank's embeddings
            (with gradient), so N ranks with batch B give the single-process loss over N*B.
            Under DDP multiply the loss by ``world_size()`` (DDP averages gradients; see _dist).
    Keyword ``queue=(zq, yq)``: a MoCo-style memory (``MemoryQueue.get()``), extra negatives.
    """

    def __init__(self, temperature: float = 0.1, gather_distributed: bool = True):
        super().__init__()
        self.temperature = check_temperature(temperature)
        self.gather_distributed = bool(gather_distributed)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor, *, queue=None) -> torch.Tensor:
        gather = self.gather_distributed and is_distributed()
        return ntxent_loss(z1, z2, self.temperature, gather, queue)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, gather_distributed={self.gather_distributed}"
