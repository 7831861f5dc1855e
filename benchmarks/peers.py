"""The losses a user would pick instead of neuro-ssl's, called the way their own users call them.

Each ``make_*`` returns a callable with neuro-ssl's signature, ``(z1, z2)`` or ``(z1, z2, y)``
with un-normalized (B, D) projections, so one timing loop and one equality check fit all.
Which definitions are equal (checked by tests/losses/test_peers.py and before every timing in
loss_peers.py):

* lightly ``NTXentLoss(temperature=T)`` == ``NTXent(T)``: the same definition (same-view samples
  are negatives, L2-normalized inside), the same reduction (mean over the 2B anchors).
* MONAI ``ContrastiveLoss(temperature=T)`` == ``NTXent(T)``: the same definition and reduction;
  it does exp, then log, so it overflows for small T (T <= ~0.011 in float32), and it builds a
  (2B, 2B, D) cosine tensor: 4 (2B)^2 D bytes, 2 GiB at B = 1024, 32 GiB at B = 4096.
* pytorch-metric-learning ``SupConLoss(temperature=T)`` on ``[z1; z2]`` with labels
  ``[l; l]`` == ``SupCon(T)`` (L_out, mean over the 2B anchors) whenever the batch holds at
  least two classes; with a single class it returns 0 (no negatives) where SupCon does not.
  lightly has no SupConLoss in any release (1.6.0 is the newest; one exists only in its
  repository, unreleased): pytorch-metric-learning is the SupCon a user installs.
* the published y-Aware code's pattern (``published_yaware``, written here from its
  description) == ``YAwareInfoNCE(sigma, T, reference_compat=True)``: per-column kernel
  normalization and twice the mean (see docs/losses.md). The default ``YAwareInfoNCE`` (the
  paper's per-anchor normalization) differs from it by up to ~1-2 %; both -> NT-Xent as sigma -> 0.

lightly's wheel requires torchvision; PyPI's torchvision does not import beside a CPU-only
torch ("operator torchvision::nms does not exist"), and ``lightly.loss/__init__`` imports every
loss, some of which import torchvision. ``lightly_ntxent_class`` therefore falls back to
loading lightly's own ``ntx_ent_loss`` module (and the memory-bank and dist modules it uses)
without the package ``__init__`` files; lightly's loss code runs unchanged.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

LIGHTLY_VERSION = "1.6.0"  # the pin in pyproject's 'bench' extra; the fallback loader knows its layout


class PeerUnavailable(RuntimeError):
    """A peer library is not installed (``make setup`` installs them; see the Makefile)."""


@functools.cache
def lightly_ntxent_class():
    """lightly's ``NTXentLoss`` class, imported normally or, without torchvision, module by module."""
    try:
        from lightly.loss import NTXentLoss

        return NTXentLoss
    except ModuleNotFoundError as exc:
        if exc.name == "lightly":
            raise PeerUnavailable("lightly is not installed: run `make setup` (it installs the bench peers)") from None
        if not (exc.name or "").startswith("torchvision"):
            raise
    except RuntimeError as exc:  # a torchvision that is installed but does not load its operators
        if "torchvision" not in str(exc):
            raise
    return _load_lightly_module("lightly.loss.ntx_ent_loss").NTXentLoss


def _load_lightly_module(name: str):
    """Import ``name`` with lightly's package ``__init__`` files (which import torchvision) skipped.

    The parent packages become bare packages over their real folders; ``lightly.models.utils``
    (its module imports torchvision.ops) becomes an empty module: the memory bank uses it only
    to gather across ranks, which a single process never does.
    """
    root = importlib.util.find_spec("lightly")
    if root is None:
        raise PeerUnavailable("lightly is not installed: run `make setup` (it installs the bench peers)")
    import lightly

    base = Path(root.origin).parent
    for package in ("lightly.loss", "lightly.models", "lightly.models.modules"):
        if package not in sys.modules:
            module = types.ModuleType(package)
            module.__path__ = [str(base.joinpath(*package.split(".")[1:]))]
            sys.modules[package] = module
    sys.modules.setdefault("lightly.models.utils", types.ModuleType("lightly.models.utils"))
    lightly.loss, lightly.models = sys.modules["lightly.loss"], sys.modules["lightly.models"]
    return importlib.import_module(name)


def make_lightly_ntxent(temperature: float):
    """lightly ``NTXentLoss``: ``loss(z1, z2)``."""
    return lightly_ntxent_class()(temperature=temperature)


def make_monai_contrastive(temperature: float):
    """MONAI ``ContrastiveLoss``: ``loss(z1, z2)``."""
    from monai.losses import ContrastiveLoss

    return ContrastiveLoss(temperature=temperature)


def make_pml_supcon(temperature: float):
    """pytorch-metric-learning ``SupConLoss`` adapted to ``loss(z1, z2, labels)``: both views stacked."""
    try:
        from pytorch_metric_learning.losses import SupConLoss
    except ModuleNotFoundError:
        raise PeerUnavailable("pytorch-metric-learning is not installed: run `make setup`") from None
    loss = SupConLoss(temperature=temperature)

    def supcon(z1, z2, labels):
        labels = torch.as_tensor(labels).reshape(-1).to(z1.device)
        return loss(torch.cat([z1, z2]), torch.cat([labels, labels]))

    return supcon


def make_published_yaware(sigma: float, temperature: float):
    """The published y-Aware code's way (Dufumier et al., MICCAI 2021; github.com/Duplums/
    yAwareContrastiveLearning), written from its description, not copied: every step the
    covariates go to the CPU as numpy, scikit-learn's ``rbf_kernel`` builds the (2B, 2B) weights,
    the diagonal is zeroed, ``W /= W.sum(axis=1)`` (numpy broadcasting: column l divided by the
    sum of row l), the weights go back to the embeddings' device, and the loss is
    ``-(1/B) * sum(W * log_softmax(sim))`` with the self-similarities pushed to -1e8 first.
    """
    from sklearn.metrics.pairwise import rbf_kernel

    gamma = 1.0 / (2.0 * sigma**2)
    big = 1e8

    def published_yaware(z1, z2, y):
        batch = z1.shape[0]
        y_cpu = torch.as_tensor(y).detach().reshape(batch, -1).repeat(2, 1).cpu().numpy()
        weights = rbf_kernel(y_cpu, y_cpu, gamma=gamma)
        weights = weights * (1.0 - np.eye(2 * batch))
        weights /= weights.sum(axis=1)
        z = F.normalize(torch.cat([z1, z2]), dim=1)
        sim = z @ z.T / temperature - big * torch.eye(2 * batch, device=z.device, dtype=z.dtype)
        log_prob = F.log_softmax(sim, dim=1)
        return -(torch.from_numpy(weights).to(z.device) * log_prob).sum() / batch

    return published_yaware
