"""Saliency on the model grid with Captum: Grad-CAM, Guided Grad-CAM, Integrated Gradients.

Grad-CAM (Selvaraju et al., ICCV 2017, arXiv:1610.02391) at a convolutional layer with
activations ``A_k`` (K channels on an x*y*z grid) and the score ``y`` of the target class:

    w_k = mean over ALL THREE spatial axes of dy/dA_k
    cam = ReLU( sum_k w_k A_k )                      on the layer's grid
    map = trilinear upsampling of cam to the model input grid

Captum's ``LayerGradCam`` pools over every axis after the channel axis (so all three for a 3D
layer); its defaults are not Grad-CAM as published, so both are set here: ``relu_attributions``
is off by default and ``LayerAttribution.interpolate`` defaults to nearest (blocky maps).
MONAI's ``GradCAM`` is not used: its default normalizer inverts the map.

Guided Grad-CAM multiplies guided backpropagation by the (trilinearly upsampled) Grad-CAM map;
Integrated Gradients (Sundararajan et al., ICML 2017) integrates input gradients from a zero
baseline. Both give signed, per-channel input attributions: the map is ``sum_c |attr_c|``.

Every map is float32, >= 0, shape (X, Y, Z) of the model input. Nothing here reads files.
"""

from __future__ import annotations

import difflib
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from neuro_ssl.errors import ConfigError

METHODS = ("gradcam", "guided-gradcam", "integrated-gradients")


@dataclass
class SaliencyResult:
    """One scan's map on the model grid plus what the model said about it.

    ``predicted`` is the class name (classification) or the predicted value (regression);
    ``confidence`` is the softmax probability of the predicted class (NaN for regression);
    ``target`` names what the map explains (a class name, or ``"output"`` for regression).
    """

    map: np.ndarray
    predicted: str | float
    confidence: float
    target: str
    layer: str | None


def find_layer(model: nn.Module, name: str | None = None) -> tuple[str, nn.Module]:
    """The layer to explain: ``name`` (dotted, from the model or its encoder) or the default.

    Default: the encoder's ``target_layer`` (the last convolutional stage, ``layer4`` for a
    ResNet), else a module named ``layer4``, else the last ``Conv3d``.
    """
    modules = dict(model.named_modules())
    if name:
        for candidate in (name, f"encoder.{name}", f"encoder.net.{name}"):
            if candidate in modules and candidate:
                return candidate, modules[candidate]
        close = difflib.get_close_matches(name, [n for n in modules if n], n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(f"--layer {name}: no such layer in the model{hint}")
    encoder = getattr(model, "encoder", None)
    target = getattr(encoder, "target_layer", None) if encoder is not None else None
    if isinstance(target, nn.Module):
        return _name_of(modules, target), target
    for module_name, module in modules.items():
        if module_name.split(".")[-1] == "layer4":
            return module_name, module
    convs = [(n, m) for n, m in modules.items() if isinstance(m, nn.Conv3d)]
    if not convs:
        raise ConfigError("the model has no Conv3d layer to explain; name one with --layer")
    return convs[-1]


def _name_of(modules: dict[str, nn.Module], target: nn.Module) -> str:
    for module_name, module in modules.items():
        if module is target:
            return module_name
    return type(target).__name__


def resolve_target(target: str | int | None, classes: list[str] | None, logits: torch.Tensor) -> int:
    """Index of the output to explain: the named class, or the predicted one (argmax)."""
    n_outputs = logits.shape[-1]
    if target is None or target == "":
        return int(torch.argmax(logits[0]).item()) if n_outputs > 1 else 0
    names = [str(c) for c in (classes or [])]
    if str(target) in names:
        return names.index(str(target))
    from neuro_ssl.data.manifest import canonical_diagnosis

    canonical = [str(canonical_diagnosis(c)) for c in names]
    if str(canonical_diagnosis(target)) in canonical:
        return canonical.index(str(canonical_diagnosis(target)))
    if str(target).isdigit() and int(target) < n_outputs:
        return int(target)
    known = ", ".join(names) if names else f"0..{n_outputs - 1}"
    raise ConfigError(f"--target {target}: not a class of this model (classes: {known})")


def compute_saliency(
    model: nn.Module,
    image: torch.Tensor | np.ndarray,
    method: str = "gradcam",
    layer: str | None = None,
    target: str | int | None = None,
    classes: list[str] | None = None,
    task: str = "classification",
    n_steps: int = 16,
) -> SaliencyResult:
    """Explain one volume ``image`` (C, X, Y, Z) on the model grid.

    ``task`` "classification": the map explains ``target`` (a class name or index; default the
    predicted class); "regression": it explains the single output itself.
    """
    if method not in METHODS:
        close = difflib.get_close_matches(method, METHODS, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(f"--method {method}: unknown{hint}; choose one of {', '.join(METHODS)}")
    x = _as_batch(image, model)
    model.eval()
    with torch.no_grad():
        logits = model(x)
    if logits.dim() == 1:
        logits = logits[:, None]
    if task == "regression":
        index, predicted, confidence, target_name = 0, float(logits[0, 0]), float("nan"), "output"
    else:
        index = resolve_target(target, classes, logits)
        probs = torch.softmax(logits[0].double(), dim=0)
        top = int(torch.argmax(probs))
        predicted = _class_name(classes, top)
        confidence = float(probs[top])
        target_name = _class_name(classes, index)
    layer_name, layer_module = find_layer(model, layer) if method != "integrated-gradients" else (None, None)
    attribution = _attribute(model, x, method, layer_module, index, n_steps)
    saliency = attribution.detach().to(torch.float32).cpu().numpy()
    saliency = np.nan_to_num(saliency, nan=0.0, posinf=0.0, neginf=0.0)
    np.maximum(saliency, 0.0, out=saliency)
    return SaliencyResult(saliency, predicted, confidence, target_name, layer_name)


def _attribute(model, x, method, layer_module, index, n_steps) -> torch.Tensor:
    """(X, Y, Z) attribution for output ``index`` of ``model(x)``."""
    from captum.attr import GuidedGradCam, IntegratedGradients, LayerAttribution, LayerGradCam

    spatial = tuple(x.shape[2:])
    if method == "gradcam":
        cam = LayerGradCam(model, layer_module).attribute(x, target=index, relu_attributions=True)
        upsampled = LayerAttribution.interpolate(cam, spatial, interpolate_mode="trilinear")
        return upsampled[0, 0]
    if method == "guided-gradcam":
        with warnings.catch_warnings():  # "Setting backward hooks on ReLU": expected, removed afterwards
            warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU", category=UserWarning)
            attr = GuidedGradCam(model, layer_module).attribute(x, target=index, interpolate_mode="trilinear")
        return attr[0].abs().sum(dim=0)
    baseline = torch.zeros_like(x)
    attr = IntegratedGradients(model).attribute(
        x, baselines=baseline, target=index, n_steps=n_steps, internal_batch_size=min(n_steps, 4),
    )
    return attr[0].abs().sum(dim=0)


def _as_batch(image, model: nn.Module) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(image) if not torch.is_tensor(image) else image)
    if x.dim() == 3:
        x = x[None]
    if x.dim() != 4:
        raise ValueError(f"expected a (C, X, Y, Z) volume, got shape {tuple(x.shape)}")
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None else torch.float32
    device = param.device if param is not None else torch.device("cpu")
    return x[None].to(device=device, dtype=dtype).contiguous().requires_grad_(True)


def _class_name(classes: list[str] | None, index: int) -> str:
    if classes and 0 <= index < len(classes):
        return str(classes[index])
    return str(index)
