"""Autoencoder terms: reconstruction error inside the brain mask, and the VAE's KL to N(0, I).

Masked MSE (the contrastive autoencoders' reconstruction term):
    M_n   = voxels where any channel of x_n is non-zero (preprocessing sets every voxel outside
            the brain to exactly 0, so this is the brain mask on the model grid)
    mse_n = sum_{v in M_n, c} (xhat_ncv - x_ncv)^2 / (C |M_n|)
    loss  = mean of mse_n over the N volumes (a volume with an empty mask counts 0)
x, xhat: (N, C, X, Y, Z); computed in float32 or wider whatever the autocast dtype.

KL of the approximate posterior N(mu, diag(exp(log_var))) to the prior N(0, I)
(Kingma & Welling, ICLR 2014, arXiv:1312.6114, appendix B):
    KL_n = 0.5 * sum_j (mu_nj^2 + exp(log_var_nj) - log_var_nj - 1)
    loss = mean of KL_n over the N codes (summed over the D latent dimensions, as in the paper)
mu, log_var: (N, D).

Distributed (``gather_distributed=True`` under torch.distributed), as the contrastive losses:
the mean is over the volumes (codes) of every rank: each rank returns the global value, and its
gradient is its own rows' share of the global mean's (``_dist.sum_over_ranks``), so the loop's
``loss * world_size`` under DDP's gradient averaging gives the full-batch gradients.
"""

from __future__ import annotations

import torch

from neuro_ssl.losses._dist import is_distributed, sum_over_ranks


def brain_mask(x: torch.Tensor) -> torch.Tensor:
    """(N, 1, X, Y, Z) bool: voxels where any channel of ``x`` (N, C, X, Y, Z) is non-zero."""
    if x.ndim != 5:
        raise ValueError(f"x must be (N, C, X, Y, Z), got {tuple(x.shape)}")
    return (x != 0).any(dim=1, keepdim=True)


def mean_over_ranks(per_row: torch.Tensor, gather_distributed: bool = True) -> torch.Tensor:
    """Mean of ``per_row`` (N,) over the rows of every rank (ranks may hold different N); one process: the mean."""
    if not (gather_distributed and is_distributed()):
        return per_row.mean()
    total_rows = sum_over_ranks(torch.tensor(float(per_row.shape[0]), dtype=per_row.dtype, device=per_row.device))
    return sum_over_ranks(per_row.sum() / total_rows)


def masked_mse(xhat: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None = None,
               gather_distributed: bool = True) -> torch.Tensor:
    """Mean over volumes of the squared error inside each volume's brain mask (module docstring).

    ``mask``: (N, 1, X, Y, Z) bool, default :func:`brain_mask` of ``x``.
    """
    if xhat.shape != x.shape:
        raise ValueError(f"xhat and x must have the same shape, got xhat {tuple(xhat.shape)} and x {tuple(x.shape)}")
    mask = brain_mask(x) if mask is None else mask
    dtype = torch.promote_types(x.dtype, torch.float32)
    weight = mask.to(dtype)
    squared = (xhat.to(dtype) - x.to(dtype)).square() * weight
    count = weight.sum(dim=(1, 2, 3, 4)) * x.shape[1]
    per_volume = squared.sum(dim=(1, 2, 3, 4)) / count.clamp_min(1.0)
    return mean_over_ranks(per_volume, gather_distributed)


def gaussian_kl(mu: torch.Tensor, log_var: torch.Tensor, gather_distributed: bool = True) -> torch.Tensor:
    """KL(N(mu, exp(log_var)) || N(0, I)), summed over dimensions, averaged over rows (module docstring)."""
    if mu.ndim != 2 or mu.shape != log_var.shape:
        raise ValueError(f"mu and log_var must both be (N, D), got mu {tuple(mu.shape)} and log_var {tuple(log_var.shape)}")
    dtype = torch.promote_types(mu.dtype, torch.float32)
    mu, log_var = mu.to(dtype), log_var.to(dtype)
    return mean_over_ranks(0.5 * (mu.square() + log_var.exp() - log_var - 1.0).sum(dim=1), gather_distributed)


__all__ = ["brain_mask", "gaussian_kl", "masked_mse", "mean_over_ranks"]
