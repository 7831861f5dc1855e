"""CLIP: symmetric InfoNCE between paired embeddings of two modalities (a scan and its clinical data).

Radford et al., "Learning Transferable Visual Models From Natural Language Supervision",
ICML 2021, arXiv:2103.00020 (Fig. 3):
    s_ij = exp(t) * cos(u_i, v_j)       u: (B, D) image, v: (B, D) clinical embeddings (L2-normalized inside)
    l_i  = -log( exp(s_ii) / sum_{j in C(i)} exp(s_ij) )      image i -> clinical, over the columns
    m_j  = -log( exp(s_jj) / sum_{i in C(j)} exp(s_ij) )      clinical j -> image, over the rows
    loss = ( mean_i l_i + mean_j m_j ) / 2
t is a learnable log logit scale (temperature T = exp(-t)), initialised to log(1 / 0.07) and
clamped to [0, log 100] as in CLIP, so the logits are never scaled by more than 100 (T >= 0.01).
Masking (``groups``, e.g. subject ids): C(i) leaves out every j != i with groups_j == groups_i
(the other visits of the same person): such pairs are neither the match nor a true negative, so
they leave both softmaxes. Without groups C(i) holds every j, as in CLIP.

Computed in float32 at least with autocast off (``log_softmax``: stable at T = 0.01, bf16/fp16 AMP).
Distributed (``gather``): u, v and groups are gathered from every rank with gradient; each rank's
rows are anchors against all columns; local terms / global B are summed over ranks, so every rank
returns the global loss and gets its exact gradient slice (see ``_dist``; multiply by the world
size under DDP). Each rank's gradient of t is its own part; DDP's average of the parts scaled by
the world size is the whole.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from neuro_ssl.losses._dist import gather_rows, is_distributed, sum_over_ranks

#: CLIP's initial temperature and its largest logit scale (Radford et al. 2021, section 2.5)
CLIP_TEMPERATURE = 0.07
MAX_LOGIT_SCALE = 100.0


def check_pairs(u: torch.Tensor, v: torch.Tensor, groups=None) -> None:
    """u and v are (B, D) of the same shape; groups (B,) if given. Messages quote the shapes."""
    if u.ndim != 2 or u.shape != v.shape or u.shape[0] == 0:
        raise ValueError(f"u and v must both be (B, D) with B >= 1, got u {tuple(u.shape)} and v {tuple(v.shape)}")
    if groups is not None and tuple(torch.as_tensor(groups).shape) != (u.shape[0],):
        raise ValueError(f"groups must be ({u.shape[0]},) to match u {tuple(u.shape)}, got {tuple(torch.as_tensor(groups).shape)}")


def clip_loss(u: torch.Tensor, v: torch.Tensor, logit_scale: torch.Tensor | float, groups=None,
              gather: bool = False) -> torch.Tensor:
    """Symmetric CLIP InfoNCE of the module docstring; ``logit_scale`` = exp(t) (a scalar). Scalar."""
    check_pairs(u, v, groups)
    dtype = torch.promote_types(u.dtype, torch.float32)
    with torch.autocast(device_type=u.device.type, enabled=False):
        u = F.normalize(u.to(dtype), dim=1)
        v = F.normalize(v.to(dtype), dim=1)
        u_all, offset = gather_rows(u) if gather else (u, 0)
        v_all = gather_rows(v)[0] if gather else v
        rows = torch.arange(u.shape[0], device=u.device)
        own = rows + offset
        scale = torch.as_tensor(logit_scale, device=u.device).to(dtype)
        logits_uv = scale * (u @ v_all.T)  # (b, N): this rank's images against every clinical row
        logits_vu = scale * (v @ u_all.T)  # (b, N): this rank's clinical rows against every image
        if groups is not None:
            g = torch.as_tensor(groups, device=u.device).to(torch.float64)
            g_all = gather_rows(g)[0] if gather else g
            masked = g[:, None] == g_all[None, :]
            masked[rows, own] = False
            logits_uv = logits_uv.masked_fill(masked, -math.inf)
            logits_vu = logits_vu.masked_fill(masked, -math.inf)
        l_uv = -torch.log_softmax(logits_uv, dim=1)[rows, own]
        l_vu = -torch.log_softmax(logits_vu, dim=1)[rows, own]
        part = 0.5 * (l_uv.sum() + l_vu.sum()) / u_all.shape[0]
    return sum_over_ranks(part) if gather else part


class CLIPLoss(torch.nn.Module):
    """CLIP's symmetric InfoNCE with a learnable temperature: ``loss(u, v, *, groups=None)``.

    Args:
        temperature: initial T (CLIP: 0.07), in [1 / max_logit_scale, 1].
        learnable: train t = log(1 / T) (a parameter); False keeps T fixed (a buffer).
        max_logit_scale: the clamp on exp(t) (CLIP: 100).
        gather_distributed: under torch.distributed, every rank's pairs are candidates (see ``NTXent``).
    ``clamp_()`` clips t in place to [0, log max_logit_scale], as CLIP does after each optimizer
    step, so t never sits where the clamp in ``forward`` would stop its gradient.
    """

    def __init__(self, temperature: float = CLIP_TEMPERATURE, learnable: bool = True,
                 max_logit_scale: float = MAX_LOGIT_SCALE, gather_distributed: bool = True):
        super().__init__()
        if not (isinstance(max_logit_scale, (int, float)) and 1.0 <= max_logit_scale < math.inf):
            raise ValueError(f"max_logit_scale must be a finite number >= 1, got {max_logit_scale!r}")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
                or not 1.0 / max_logit_scale <= temperature <= 1.0:
            raise ValueError(f"temperature must be in [{1.0 / max_logit_scale:g}, 1], got {temperature!r}")
        log_scale = torch.tensor(math.log(1.0 / temperature))
        if learnable:
            self.log_scale = torch.nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)
        self.max_log_scale = math.log(float(max_logit_scale))
        self.gather_distributed = bool(gather_distributed)

    @property
    def logit_scale(self) -> torch.Tensor:
        """exp(t), clamped to [1, max_logit_scale] (1 / temperature)."""
        return self.log_scale.clamp(0.0, self.max_log_scale).exp()

    @torch.no_grad()
    def clamp_(self) -> None:
        self.log_scale.clamp_(0.0, self.max_log_scale)

    def forward(self, u: torch.Tensor, v: torch.Tensor, *, groups=None) -> torch.Tensor:
        gather = self.gather_distributed and is_distributed()
        return clip_loss(u, v, self.logit_scale, groups, gather)

    def extra_repr(self) -> str:
        return (f"temperature={float(1.0 / self.logit_scale.detach()):.4g}, learnable={isinstance(self.log_scale, torch.nn.Parameter)}, "
                f"gather_distributed={self.gather_distributed}")
