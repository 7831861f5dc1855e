"""y-Aware InfoNCE: contrastive learning where scans with similar covariates (age) attract.

Dufumier et al., "Contrastive Learning with Continuous Proxy Meta-Data for 3D MRI
Classification", MICCAI 2021, arXiv:2106.08808, eq. (3):
    w_ab = exp(-||y_a - y_b||^2 / (2 sigma^2)) on the duplicated covariates [y; y], w_aa = 0
    l_a  = -sum_{b != a} (w_ab / sum_{c != a} w_ac) * log( exp(s_ab) / sum_{c != a} exp(s_ac) )
    loss = mean of l_a over the 2B anchors,   s = cos / T on [z1; z2] (L2-normalized inside)
Default: weights normalized PER ANCHOR (each row sums to 1), as in the paper. The other view has
w = 1, so sigma -> 0 gives NT-Xent exactly WHEN THE COVARIATES IN THE BATCH ALL DIFFER (even when
the kernel underflows for every other pair). Scans with tied covariates keep w = 1 for each other,
so with ties the limit is SupCon with the covariate as the class (docs/losses.md gives the size).

``reference_compat=True`` reproduces the published code (Duplums/yAwareContrastiveLearning,
``GeneralizedSupervisedNTXenLoss``): its ``W /= W.sum(axis=1)`` broadcasts, dividing column l by
the sum of row l (columns, not anchors, sum to 1), and it divides the sum over 2B anchors by B,
i.e. twice the mean. The two differ by up to 1.3 % at (sigma 5, T 0.1), 2.4 % at (10, 0.07).
"""

from __future__ import annotations

import math

import torch

from neuro_ssl.losses._dist import gather_rows, is_distributed
from neuro_ssl.losses.ntxent import (
    Candidates, check_temperature, contrastive_log_prob, mean_over_anchors, split_queue, tile_weights,
)


def covariates_as_matrix(y: torch.Tensor, batch: int, name: str = "y") -> torch.Tensor:
    """y of shape (B,) or (B, k) -> float64 (B, k); refuses other shapes and NaN/inf."""
    y = torch.as_tensor(y)
    if y.ndim not in (1, 2) or y.shape[0] != batch:
        raise ValueError(f"{name} must be ({batch},) or ({batch}, k) to match z1 ({batch}, D), got {tuple(y.shape)}")
    y = y.detach().to(torch.float64).reshape(batch, -1)
    if not torch.isfinite(y).all():
        raise ValueError(f"{name} contains NaN or inf: drop or impute those scans before the loss")
    return y


def rbf_kernel(y_a: torch.Tensor, y_b: torch.Tensor, sigma: float) -> torch.Tensor:
    """exp(-||y_a - y_b||^2 / (2 sigma^2)), (A, k) x (C, k) -> (A, C), in float64.

    Differences are divided by sigma before squaring: equal covariates give exactly 1 and tiny
    sigma gives exactly 0 elsewhere, never 0/0. One (A, C) buffer, updated in place.
    """
    out = None
    for j in range(y_a.shape[1]):
        term = (y_a[:, j, None] - y_b[None, :, j]).div_(sigma).square_()
        out = term if out is None else out.add_(term)
    return out.mul_(-0.5).exp_()


def yaware_weights(y, y_all, y_queue, cand: Candidates, sigma: float, reference_compat: bool) -> torch.Tensor:
    """Kernel weights (2b, C) with each anchor's own column 0, normalized per anchor (default)
    or, with ``reference_compat``, per column as the published code does (candidates = anchors there).

    y (b, k) this rank's covariates, y_all (N, k) every rank's, y_queue (n_queue, k) or None.
    """
    kernel = rbf_kernel(y, y_all, sigma)
    queue_kernel = rbf_kernel(y, y_queue, sigma) if y_queue is not None else None
    if reference_compat:  # column l / sum of candidate row l: 2 * its row sum over [y_all; y_all] - itself (1)
        all_kernel = kernel if y_all is y else rbf_kernel(y_all, y_all, sigma)
        return tile_weights(kernel / (2.0 * all_kernel.sum(dim=1) - 1.0), None, cand)
    own = torch.arange(y.shape[0], device=kernel.device) + cand.offset
    row_sums = 2.0 * kernel.sum(dim=1) - kernel[torch.arange(y.shape[0], device=kernel.device), own]
    if queue_kernel is not None:
        row_sums += queue_kernel.sum(dim=1)
        queue_kernel /= row_sums[:, None]
    return tile_weights(kernel.div_(row_sums[:, None]), queue_kernel, cand)


def yaware_loss(z1, z2, y, sigma: float = 5.0, temperature: float = 0.1, reference_compat: bool = False,
                gather: bool = False, queue=None) -> torch.Tensor:
    """y-Aware InfoNCE as in the module docstring; scalar. Queue entries ``(zq, yq)`` are extra
    candidates weighted by the kernel on their stored covariates."""
    queue_z, queue_y = split_queue(queue, z1.shape[-1])
    if reference_compat and queue_z is not None:
        raise ValueError("reference_compat reproduces the published code, which has no queue: use one or the other")
    y = covariates_as_matrix(y, z1.shape[0]).to(z1.device)
    cand = contrastive_log_prob(z1, z2, temperature, gather, queue_z)
    y_all = gather_rows(y)[0] if gather else y
    y_queue = None
    if queue_z is not None:
        if queue_y is None:
            raise ValueError("y-Aware with a queue needs the queue's covariates: build MemoryQueue with y_dim=k")
        y_queue = covariates_as_matrix(queue_y, queue_z.shape[0], "queue y").to(z1.device)
        if y_queue.shape[1] != y.shape[1]:
            raise ValueError(f"queue y has {y_queue.shape[1]} columns but y has {y.shape[1]}")
    weights = yaware_weights(y, y_all, y_queue, cand, sigma, reference_compat)
    anchor_losses = -(weights * cand.log_prob).sum(dim=1)
    scale = 2.0 if reference_compat else 1.0
    return scale * mean_over_anchors(anchor_losses, cand.n_anchors, gather)


class YAwareInfoNCE(torch.nn.Module):
    """y-Aware InfoNCE: ``loss(z1, z2, y, queue=None)``, z (B, D) un-normalized, y (B,) or (B, k).

    Args:
        sigma: kernel width in the covariate's units (years for age); must be > 0. Pairs whose
            covariates differ by about sigma get weight exp(-1/2) = 0.61, by 2 sigma 0.14.
        temperature: T in cos / T; >= 1e-4.
        reference_compat: reproduce the published code's numbers (column normalization, twice
            the scale) instead of the paper's per-anchor normalization. No queue with it.
        gather_distributed: gather embeddings and y from every rank (see ``NTXent``).
    Keyword ``queue=(zq, yq)``: extra candidates, weighted by the kernel on their stored y.
    Kernel weights carry no gradient.
    """

    def __init__(self, sigma: float = 5.0, temperature: float = 0.1, reference_compat: bool = False,
                 gather_distributed: bool = True):
        super().__init__()
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not (0 < sigma < math.inf):
            raise ValueError(f"sigma must be a finite number > 0 (in the covariate's units), got {sigma!r}")
        self.sigma = float(sigma)
        self.temperature = check_temperature(temperature)
        self.reference_compat = bool(reference_compat)
        self.gather_distributed = bool(gather_distributed)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor, y: torch.Tensor, *, queue=None) -> torch.Tensor:
        gather = self.gather_distributed and is_distributed()
        return yaware_loss(z1, z2, y, self.sigma, self.temperature, self.reference_compat, gather, queue)

    def extra_repr(self) -> str:
        return (f"sigma={self.sigma}, temperature={self.temperature}, "
                f"reference_compat={self.reference_compat}, gather_distributed={self.gather_distributed}")
