"""Contrastive autoencoders: ``--loss ae-contrastive`` and ``--loss vae-contrastive``.

An autoencoder whose latent space is also shaped by a contrastive loss, so that clusters of the
latent space follow what the views share (and, with ``--meta``, a covariate), and whose decoder
reconstructs the scan (and, for the VAE, generates new ones from the prior).

The network is the shared encoder (``encoder.pt`` stays an ordinary encoder), the projection
head as the map from pooled features h to the latent code (the VAE's mean mu), for the VAE a
Linear(F -> D) log-variance layer on h, and a 3D convolutional decoder
(:class:`~neuro_ssl.models.decoders.Decoder`; why not MONAI's ``AutoEncoder`` is said there).
Per micro-batch of B scans, two views each (2B volumes x):

    mu = head(encoder(x));  code = mu (ae) or mu + exp(log_var / 2) * eps, eps ~ N(0, I) (vae)
    loss = contrastive(mu_view1, mu_view2)                 NT-Xent, or y-Aware InfoNCE with --meta
         + recon_weight * masked_mse(decoder(code), s)    s: the view's un-augmented scan, in its brain mask
         + kl_weight * KL(N(mu, exp(log_var)) || N(0, I))  vae only (Kingma & Welling, ICLR 2014)

Each view's code reconstructs the un-augmented scan the view was drawn from (``target1`` /
``target2`` of the batch), not the view: the contrastive term makes the code blind to the
augmentation, so only the scan itself is recoverable from it, and ``reconstruct`` then decodes
clean scans like those it was trained on. The mask is that scan's brain (preprocessing's
non-zero voxels). With ``--positives visits`` each view reconstructs its own visit.
``metrics.csv`` gains the epoch means ``contrastive``, ``recon_mse`` (and ``kl``).
``RUN/decoder.pt`` (head, log-variance layer, decoder; weights only) is written beside
``encoder.pt`` for ``neuro-ssl reconstruct``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from neuro_ssl.training.objectives import Objective, Step, StepOutput, register

#: log-variance clamp: exp(+-12) keeps exp() finite in float32 and under bf16 autocast
LOG_VAR_LIMIT = 12.0
#: the log-variance layer's initial output (zero weights): sigma = exp(-2) = 0.14 for every scan.
#: With PyTorch's default init it starts near 0 (sigma ~ 1) and the sampling noise drowns the
#: still-small codes: in-brain MSE 0.95 vs 0.55 after 18 steps on 25 scans at 24^3 (measured).
LOG_VAR_INIT = -4.0


@register("ae-contrastive")
class ContrastiveAutoencoder(Objective):
    """Reconstruction inside the brain mask + NT-Xent (or y-Aware) on the latent codes of two views."""

    variational = False
    reconstructs = True

    def __init__(self, config, data):
        super().__init__(config, data)
        from neuro_ssl.models.decoders import Decoder
        from neuro_ssl.models.encoders import encoder_out_features

        latent = int(config.proj_dims[-1])
        self.decoder = Decoder(latent, config.in_channels, tuple(config.shape), config.width, config.norm)
        features = encoder_out_features(config.arch, config.width)
        self.log_var = nn.Linear(features, latent) if self.variational else None
        if self.log_var is not None:
            nn.init.zeros_(self.log_var.weight)
            nn.init.constant_(self.log_var.bias, LOG_VAR_INIT)
        self.contrast = _contrastive_loss(config)
        self.recon_weight, self.kl_weight = float(config.recon_weight), float(config.kl_weight)

    def forward(self, step: Step) -> StepOutput:
        from neuro_ssl.losses import gaussian_kl, masked_mse
        from neuro_ssl.training.loop import autocast

        h, mu = step.encode()
        mu1, mu2 = mu.chunk(2)
        contrastive = self.contrast(mu1, mu2, step.y) if self.config.meta else self.contrast(mu1, mu2)
        code, logs = mu, {}
        if self.variational:
            log_var = self.log_var(h.float()).clamp(-LOG_VAR_LIMIT, LOG_VAR_LIMIT)
            code = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
            kl = gaussian_kl(mu, log_var)
            logs["kl"] = float(kl.detach())
        with autocast(step.amp, step.device):
            xhat = self.decoder(code)
        target = torch.cat([step.batch["target1"], step.batch["target2"]]).to(step.device, non_blocking=True)
        recon = masked_mse(xhat.float(), target.float())
        loss = contrastive + self.recon_weight * recon
        if self.variational:
            loss = loss + self.kl_weight * kl
        logs.update(contrastive=float(contrastive.detach()), recon_mse=float(recon.detach()))
        return StepOutput(loss, logs=logs)

    def latent_decoder(self, model: nn.Module):
        """The head, log-variance layer and decoder as one :class:`LatentDecoder` (shares the weights)."""
        from neuro_ssl.models.decoders import LatentDecoder

        return LatentDecoder(model.head, self.decoder, self.log_var)

    def export(self, run_dir, model: nn.Module, meta: dict) -> None:
        from neuro_ssl.models import save_decoder

        extra = {"loss": self.config.loss, "recon_weight": self.recon_weight, "kl_weight": self.kl_weight}
        save_decoder(Path(run_dir) / "decoder.pt", self.latent_decoder(model),
                     {**{k: meta[k] for k in ("preprocess", "epochs_done", "global_step", "seed") if k in meta}, **extra})


@register("vae-contrastive")
class ContrastiveVariationalAutoencoder(ContrastiveAutoencoder):
    """The variational version: sampled codes, plus the KL to the N(0, I) prior with ``--kl-weight``."""

    variational = True


def _contrastive_loss(config) -> nn.Module:
    from neuro_ssl.losses import NTXent, YAwareInfoNCE

    if config.meta:
        return YAwareInfoNCE(sigma=config.sigma, temperature=config.temperature)
    return NTXent(temperature=config.temperature)
