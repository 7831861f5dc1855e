"""Contrastive losses for pretraining: take projections (and covariates or labels), return a scalar.

All compare un-normalized (B, D) projections of two views by cosine / temperature in float32 or
wider (stable at T = 0.01 and under bf16/fp16 autocast) and gather embeddings across ranks under
torch.distributed. NTXent, YAwareInfoNCE and SupCon accept a momentum ``queue=(zq, yq)`` of extra
candidates (SimCLR/y-Aware/SupCon with extra queue negatives: keys act as anchors too, in-batch
samples stay negatives); MoCoInfoNCE is MoCo's own loss (a query against its key and the queue
only). ``CLIPLoss`` aligns two modalities (a scan's projection with its clinical embedding) the
same way, with a learnable temperature. See docs/losses.md for the formulas and the distributed
gradient convention. The autoencoder terms
(``masked_mse`` inside the brain mask, ``gaussian_kl`` of a VAE) are in ``reconstruction.py``.
"""

from neuro_ssl.losses._dist import gather_with_grad, rank, world_size
from neuro_ssl.losses.clip import CLIPLoss
from neuro_ssl.losses.moco import MoCoInfoNCE
from neuro_ssl.losses.ntxent import NTXent
from neuro_ssl.losses.queue import MemoryQueue, momentum_update
from neuro_ssl.losses.reconstruction import brain_mask, gaussian_kl, masked_mse
from neuro_ssl.losses.supcon import SupCon
from neuro_ssl.losses.yaware import YAwareInfoNCE

LOSSES = {"simclr": NTXent, "yaware": YAwareInfoNCE, "supcon": SupCon}

__all__ = [
    "CLIPLoss",
    "LOSSES",
    "MemoryQueue",
    "MoCoInfoNCE",
    "NTXent",
    "SupCon",
    "YAwareInfoNCE",
    "brain_mask",
    "gather_with_grad",
    "gaussian_kl",
    "masked_mse",
    "momentum_update",
    "rank",
    "world_size",
]
