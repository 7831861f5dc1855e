"""Sanity checks of saliency maps: do they depend on the model, and do they point at what it uses?

- **Cascading model-parameter randomization** (Adebayo et al., "Sanity Checks for Saliency
  Maps", NeurIPS 2018, arXiv:1810.03292): re-initialize the classifier head, then additionally
  the encoder's stages from the top down (``layer4, layer3, layer2, layer1, stem`` of a ResNet),
  cumulatively, and compare each randomized model's map with the trained model's map (Spearman
  rank correlation over brain voxels, SSIM). A map that survives the loss of the weights it
  claims to explain reflects the input or the architecture, not what the model learned (an edge
  detector survives every stage).
- **Localization** (Arun et al., "Assessing the Trustworthiness of Saliency Maps for Localizing
  Abnormalities in Medical Imaging", Radiology: Artificial Intelligence 2021): share of the
  saliency inside a region against chance (its volume share of the brain), and the area under the
  precision-recall curve of the map used as a voxel detector of the region.
- **Deletion**: delete (set to the background value) the top k % most salient brain voxels and
  measure the drop of the target-class probability, against deleting as many random brain voxels
  (the deletion metric of Samek et al., IEEE TNNLS 2017, and Petsiuk et al., BMVC 2018, read at
  fixed fractions). Evidence the model uses must cost more when removed than random voxels do.
- **Repeatability** (Arun et al. 2021): rank correlation of the maps of two models trained with
  different seeds.

Everything here works on the model grid (the preprocessed volume the model saw), over brain
voxels (:func:`brain_on_model_grid`). Functions take arrays and modules; nothing reads files.
"""

from __future__ import annotations

import copy
import math
from typing import Sequence

import numpy as np
import torch
from torch import nn

from neuro_ssl.interpret.gradcam import is_constant

DELETION_PERCENTS = (1, 2, 5, 10, 20)
N_RANDOM_DRAWS = 5
SSIM_WINDOW = 11  # Wang et al. 2004 and MONAI's default Gaussian window (sigma 1.5), capped by the grid


# ------------------------------------------------------------------------------ the brain

def border_value(volume: np.ndarray) -> float:
    """The most frequent value on the six faces of a 3D volume (the background of a padded scan)."""
    v = np.asarray(volume)
    faces = np.concatenate([v[0].ravel(), v[-1].ravel(), v[:, 0].ravel(), v[:, -1].ravel(),
                            v[:, :, 0].ravel(), v[:, :, -1].ravel()])
    values, counts = np.unique(faces, return_counts=True)
    return float(values[np.argmax(counts)])


def brain_on_model_grid(pre) -> np.ndarray:
    """Brain voxels of a preprocessed volume, bool (X, Y, Z) on the model grid.

    ``pre.mask`` when preprocessing recorded one (``data.cache.Preprocessed``), else the voxels
    that differ, in any channel, from that channel's background (:func:`border_value`).
    """
    image = _channels(pre.image)
    mask = getattr(pre, "mask", None)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != image.shape[1:]:
            raise ValueError(f"brain mask shape {mask.shape} differs from the image's {image.shape[1:]}")
        return mask
    brain = np.zeros(image.shape[1:], dtype=bool)
    for channel in image:
        background = border_value(channel)
        brain |= ~np.isclose(channel, background, rtol=0.0, atol=1e-6 * max(1.0, abs(background)))
    return brain


def background_values(pre) -> np.ndarray:
    """What a deleted voxel becomes, per channel: 0 when the brain mask is known (preprocessing
    zeroes everything outside it), else each channel's :func:`border_value`."""
    image = _channels(pre.image)
    if getattr(pre, "mask", None) is not None:
        return np.zeros(image.shape[0], dtype=np.float32)
    return np.array([border_value(channel) for channel in image], dtype=np.float32)


def _channels(image) -> np.ndarray:
    image = image.detach().cpu().numpy() if torch.is_tensor(image) else np.asarray(image)
    return image[None] if image.ndim == 3 else image


# ------------------------------------------------------------------------------ comparing maps

def spearman_in_brain(a: np.ndarray, b: np.ndarray, brain: np.ndarray) -> float:
    """Spearman rank correlation of two maps over the brain voxels (``scipy.stats.spearmanr``).

    NaN when ``a`` is constant there (it ranks nothing); 0 when only ``b`` is: a constant map
    shares no ranking with a map that has one.
    """
    from scipy.stats import spearmanr

    x, y = np.asarray(a)[brain].astype(np.float64), np.asarray(b)[brain].astype(np.float64)
    if x.size < 2 or is_constant(x):
        return math.nan
    if is_constant(y):
        return 0.0
    return float(spearmanr(x, y).statistic)


def map_ssim(a: np.ndarray, b: np.ndarray, win_size: int = SSIM_WINDOW) -> float:
    """SSIM (Wang et al., IEEE TIP 2004) of two 3D maps, each min-max scaled to [0, 1] first,
    with MONAI's ``SSIMMetric`` (Gaussian window, capped at the grid's smallest odd side)."""
    from monai.metrics import SSIMMetric

    side = min(min(np.shape(a)), int(win_size))
    side -= 1 - side % 2
    if side < 1:
        return math.nan
    metric = SSIMMetric(spatial_dims=3, data_range=1.0, win_size=side, kernel_sigma=1.5 * side / SSIM_WINDOW)
    pair = [torch.as_tensor(_unit(m))[None, None] for m in (a, b)]
    return float(metric(pair[0], pair[1]).mean())


def _unit(saliency: np.ndarray) -> np.ndarray:
    saliency = np.asarray(saliency, dtype=np.float64)
    low, high = float(saliency.min()), float(saliency.max())
    return (saliency - low) / (high - low) if high > low else np.zeros_like(saliency)


# ------------------------------------------------------------------------------ randomization

def randomization_stages(model: nn.Module) -> list[tuple[str, list[str]]]:
    """(stage, [module names]) from the top down: ``head``, then the encoder's stages
    (ResNet ``layer4 .. layer1, stem``; DenseNet ``denseblock4 .. denseblock1, stem``; any other
    model: its parameterized children in reverse order). Modules no stage names join the last
    one, so the last stage leaves nothing trained."""
    net = getattr(getattr(model, "encoder", None), "net", None)
    stages: list[tuple[str, list[str]]] = []
    if net is not None and all(hasattr(net, f"layer{i}") for i in range(1, 5)):
        stages = [(f"layer{i}", [f"encoder.net.layer{i}"]) for i in range(4, 0, -1)]
        stages.append(("stem", ["encoder.net.conv1", "encoder.net.bn1"]))
    elif net is not None and hasattr(getattr(net, "features", None), "denseblock4"):
        prefix = "encoder.net.features."
        stages = [("denseblock4", [prefix + "denseblock4", prefix + "norm5"])]
        stages += [(f"denseblock{i}", [f"{prefix}transition{i}", f"{prefix}denseblock{i}"]) for i in range(3, 0, -1)]
        stages.append(("stem", [prefix + "conv0", prefix + "norm0"]))
    head = "head" if isinstance(getattr(model, "head", None), nn.Module) else None
    if not stages:
        children = [n for n, m in model.named_children() if any(True for _ in m.parameters())]
        head = head or (children[-1] if children else None)
        stages = [(n, [n]) for n in reversed(children) if n != head]
    stages = ([("head", [head])] if head else []) + stages
    modules = dict(model.named_modules())
    stages = [(s, [n for n in names if n in modules]) for s, names in stages]
    covered = {id(p) for _, names in stages for n in names for p in modules[n].parameters()}
    left = [n for n, m in model.named_modules() if n and any(id(p) not in covered for p in m.parameters(recurse=False))]
    if left and stages:
        stages[-1][1].extend(left)
    return [(s, names) for s, names in stages if names]


def cascading_randomization(model: nn.Module, seed: int = 0) -> list[tuple[str, nn.Module]]:
    """Copies of ``model`` with the stages of :func:`randomization_stages` re-initialized
    cumulatively (the first copy: head only; the last: everything), each in eval mode.

    Re-initialization calls each module's ``reset_parameters`` (PyTorch's default init; norm
    layers back to weight 1, bias 0, fresh running statistics) under ``seed``; the global RNG
    state is left as it was.
    """
    out, current = [], model
    for k, (stage, names) in enumerate(randomization_stages(model)):
        current = copy.deepcopy(current)
        modules = dict(current.named_modules())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed) * 1009 + k)
            for name in names:
                _reinitialize(modules[name])
        out.append((stage, current.eval()))
    return out


def _reinitialize(module: nn.Module) -> None:
    for sub in module.modules():
        if callable(getattr(sub, "reset_parameters", None)):
            sub.reset_parameters()
        elif callable(getattr(sub, "reset_running_stats", None)):
            sub.reset_running_stats()
        else:
            for param in sub.parameters(recurse=False):
                with torch.no_grad():
                    nn.init.normal_(param, 0.0, 0.02)


# ------------------------------------------------------------------------------ localization

def localization(saliency: np.ndarray, mask: np.ndarray, brain: np.ndarray) -> dict[str, float]:
    """``share``: ``sum(map * mask) / sum(map)`` over brain voxels; ``chance``: the region's share
    of the brain voxels (what a uniform map gives); ``gain`` = share / chance; ``auprc``: average
    precision (scikit-learn ``average_precision_score``) of the map as a voxel detector of the
    mask, over brain voxels (chance level: ``chance``). NaN where undefined (empty region, zero map).
    """
    from sklearn.metrics import average_precision_score

    brain = np.asarray(brain, dtype=bool)
    scores = np.asarray(saliency, dtype=np.float64)[brain]
    inside = np.asarray(mask, dtype=bool)[brain]
    n_inside, total = int(inside.sum()), float(scores.sum())
    chance = n_inside / inside.size if inside.size else math.nan
    share = float(scores[inside].sum()) / total if total > 0 else math.nan
    gain = share / chance if chance > 0 else math.nan
    auprc = float(average_precision_score(inside, scores)) if 0 < n_inside < inside.size else math.nan
    return {"share": share, "chance": chance, "gain": gain, "auprc": auprc}


# ------------------------------------------------------------------------------ deletion

def deletion_drops(model: nn.Module, image, saliency: np.ndarray, brain: np.ndarray, target_index: int,
                   background, percents: Sequence[float] = DELETION_PERCENTS, n_random: int = N_RANDOM_DRAWS,
                   seed: int = 0, task: str = "classification") -> dict[str, dict[str, float]]:
    """``{str(k): {"salient_drop", "random_drop"}}`` for one scan.

    ``image`` (C, X, Y, Z) on the model grid, ``saliency`` and ``brain`` (X, Y, Z). For each k,
    the ``round(k % of the brain voxels)`` most salient brain voxels (ties in random order) are set
    to ``background`` (scalar or one value per channel) in every channel, and ``salient_drop`` is
    the score before minus after; ``random_drop`` is the mean drop over ``n_random`` draws of as
    many brain voxels. Score: the softmax probability of class ``target_index`` (classification)
    or the output itself (regression). Seeded by ``seed``.
    """
    image = torch.as_tensor(_channels(image), dtype=torch.float32)
    fill = torch.as_tensor(np.broadcast_to(np.asarray(background, np.float32), (image.shape[0],)).copy())
    voxels = np.flatnonzero(np.asarray(brain, dtype=bool).ravel())
    if voxels.size == 0:
        raise ValueError("deletion needs brain voxels; the brain mask is empty")
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(voxels)
    order = shuffled[np.argsort(-np.asarray(saliency).ravel()[shuffled], kind="stable")]
    base = float(_scores(model, image[None], target_index, task)[0])
    out = {}
    for k in percents:
        n = max(1, int(round(k / 100.0 * voxels.size)))
        chosen = [order[:n]] + [rng.choice(voxels, size=n, replace=False) for _ in range(n_random)]
        batch = torch.stack([_delete(image, idx, fill) for idx in chosen])
        drops = base - _scores(model, batch, target_index, task)
        out[f"{k:g}"] = {"salient_drop": float(drops[0]), "random_drop": float(drops[1:].mean())}
    return out


def _delete(image: torch.Tensor, flat_index: np.ndarray, fill: torch.Tensor) -> torch.Tensor:
    out = image.clone().reshape(image.shape[0], -1)
    out[:, torch.as_tensor(flat_index)] = fill[:, None]
    return out.reshape(image.shape)


def _scores(model: nn.Module, batch: torch.Tensor, index: int, task: str) -> np.ndarray:
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    model.eval()
    with torch.no_grad():
        logits = model(batch.to(device=device, dtype=dtype)).double()
    if logits.dim() == 1:
        logits = logits[:, None]
    values = logits[:, 0] if task == "regression" else torch.softmax(logits, dim=1)[:, index]
    return values.cpu().numpy()
