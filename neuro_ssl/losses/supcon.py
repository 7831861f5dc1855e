"""Supervised contrastive loss for discrete labels (diagnosis, site, ...).

Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020, arXiv:2004.11362, eq. (2), the
"L_out" variant (the average over positives sits outside the log; the paper's better one):
    P(a) = { b != a : label_b == label_a }  over the 2B embeddings [z1; z2]
    l_a  = -1/|P(a)| * sum_{p in P(a)} log( exp(s_ap) / sum_{c != a} exp(s_ac) )
    loss = mean of l_a over the 2B anchors,   s = cos / T (L2-normalized inside)
The other view is always in P(a), so no anchor lacks a positive. With all labels distinct it is
NT-Xent exactly. Labels carry no gradient; equal values (compared as float64) mean one class.
"""

from __future__ import annotations

import torch

from neuro_ssl.losses._dist import gather_rows, is_distributed
from neuro_ssl.losses.ntxent import (
    Candidates, check_temperature, contrastive_log_prob, mean_over_anchors, split_queue, tile_weights,
)


def labels_as_vector(labels, batch: int, name: str = "labels") -> torch.Tensor:
    """Class ids of shape (B,) (or (B, 1)) -> float64 (B,); refuses other shapes and NaN/inf."""
    labels = torch.as_tensor(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1 or labels.shape[0] != batch:
        raise ValueError(f"{name} must be ({batch},) to match z1 ({batch}, D), got {tuple(labels.shape)}")
    labels = labels.detach().to(torch.float64)
    if not torch.isfinite(labels).all():
        raise ValueError(f"{name} contains NaN or inf: drop the unlabelled scans before the loss")
    return labels


def supcon_weights(labels, labels_all, labels_queue, cand: Candidates) -> torch.Tensor:
    """(2b, C) weights 1/|P(a)| on each anchor's positives (same label, not itself), 0 elsewhere.

    |P(a)| = 2 x (scans of a's class over all ranks) - 1 (itself) + (queue entries of a's class);
    counts are exact and 1/|P(a)| is correctly rounded in the log-probabilities' dtype.
    """
    dtype = cand.log_prob.dtype
    same = labels[:, None] == labels_all[None, :]
    counts = 2.0 * same.sum(dim=1, dtype=dtype) - 1.0
    same_queue = None
    if labels_queue is not None:
        same_queue = (labels[:, None] == labels_queue[None, :]).to(dtype)
        counts += same_queue.sum(dim=1)
        same_queue /= counts[:, None]
    return tile_weights(same.to(dtype).div_(counts[:, None]), same_queue, cand)


def supcon_loss(z1, z2, labels, temperature: float = 0.1, gather: bool = False, queue=None) -> torch.Tensor:
    """SupCon L_out as in the module docstring; scalar. Queue entries ``(zq, yq)`` whose stored
    label equals the anchor's are extra positives, the others extra negatives."""
    queue_z, queue_y = split_queue(queue, z1.shape[-1])
    labels = labels_as_vector(labels, z1.shape[0]).to(z1.device)
    cand = contrastive_log_prob(z1, z2, temperature, gather, queue_z)
    labels_all = gather_rows(labels)[0] if gather else labels
    labels_queue = None
    if queue_z is not None:
        if queue_y is None:
            raise ValueError("SupCon with a queue needs the queue's labels: build MemoryQueue with y_dim=1")
        labels_queue = labels_as_vector(queue_y, queue_z.shape[0], "queue labels").to(z1.device)
    weights = supcon_weights(labels, labels_all, labels_queue, cand)
    anchor_losses = -(weights * cand.log_prob).sum(dim=1)
    return mean_over_anchors(anchor_losses, cand.n_anchors, gather)


class SupCon(torch.nn.Module):
    """Supervised contrastive loss (L_out): ``loss(z1, z2, labels, queue=None)``, z (B, D), labels (B,).

    Args:
        temperature: T in cos / T; >= 1e-4 (the paper uses 0.1).
        gather_distributed: gather embeddings and labels from every rank (see ``NTXent``).
    Keyword ``queue=(zq, yq)``: stored embeddings with their labels (``MemoryQueue(y_dim=1)``).
    """

    def __init__(self, temperature: float = 0.1, gather_distributed: bool = True):
        super().__init__()
        self.temperature = check_temperature(temperature)
        self.gather_distributed = bool(gather_distributed)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor, labels: torch.Tensor, *, queue=None) -> torch.Tensor:
        gather = self.gather_distributed and is_distributed()
        return supcon_loss(z1, z2, labels, self.temperature, gather, queue)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, gather_distributed={self.gather_distributed}"
