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
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from neuro_ssl.errors import ConfigError

METHODS = ("gradcam", "guided-gradcam", "integrated-gradients")
#: modules whose output has no spatial grid left to explain, whatever its shape
NON_SPATIAL = (nn.Linear, nn.Flatten, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool3d, nn.Identity)


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
    layer_grid: tuple[int, int, int] | None = None  # the explained layer's voxel grid
    stage_grids: dict = field(default_factory=dict)  # {stage name: grid} of the spatial stages

    @property
    def constant(self) -> bool:
        """True when the map holds one value everywhere (e.g. a 1x1x1 layer): it localizes nothing."""
        return is_constant(self.map)


def is_constant(saliency: np.ndarray) -> bool:
    """One value everywhere, up to float32 rounding (an all-zero map included)."""
    saliency = np.asarray(saliency)
    if saliency.size == 0:
        return True
    high, low = float(saliency.max()), float(saliency.min())
    return high - low <= 1e-6 * max(abs(high), abs(low), 1e-30)


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
    predicted class); "regression": it explains the single output itself. The result records the
    explained layer's grid (``layer_grid``) and the grids of the stages one could choose instead.

    Raises ConfigError for an unknown method, layer or target, and for a layer with no spatial
    grid (a Linear such as ``head``, a global pooling such as ``avgpool``): Grad-CAM weighs the
    channels of a spatial activation, and there is none there.
    """
    if method not in METHODS:
        close = difflib.get_close_matches(method, METHODS, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(f"--method {method}: unknown{hint}; choose one of {', '.join(METHODS)}")
    x = _as_batch(image, model)
    model.eval()
    layer_name, layer_module = find_layer(model, layer) if method != "integrated-gradients" else (None, None)
    logits, grids, layer_grid = _forward_with_grids(model, x, layer_name, layer_module)
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
    attribution = _attribute(model, x, method, layer_module, index, n_steps)
    saliency = attribution.detach().to(torch.float32).cpu().numpy()
    saliency = np.nan_to_num(saliency, nan=0.0, posinf=0.0, neginf=0.0)
    np.maximum(saliency, 0.0, out=saliency)
    return SaliencyResult(saliency, predicted, confidence, target_name, layer_name, layer_grid, grids)


def spatial_stages(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The stages a user can pick with ``--layer``: the children of the encoder's network (or of
    the model) that hold a ``Conv3d`` (``conv1, layer1..layer4`` of a ResNet, ``conv0,
    denseblock1..4, transition1..3`` of a DenseNet); a lone container is looked into."""
    prefix, base = "", model
    for attr in ("encoder", "net"):
        if isinstance(getattr(base, attr, None), nn.Module):
            prefix, base = f"{prefix}{attr}.", getattr(base, attr)
    while True:
        stages = [(f"{prefix}{n}", m) for n, m in base.named_children()
                  if any(isinstance(sub, nn.Conv3d) for sub in m.modules())]
        if len(stages) == 1 and any(True for _ in stages[0][1].children()):
            prefix, base = stages[0][0] + ".", stages[0][1]
            continue
        return stages


def _forward_with_grids(model, x, layer_name, layer_module):
    """Logits, {stage: grid} of the spatial stages, and the explained layer's grid; refuses
    (ConfigError) a layer with no spatial grid (a Linear, a global pooling, a flattened output)."""
    stages = dict(spatial_stages(model))
    watched = dict(stages)
    if layer_module is not None:
        watched[layer_name] = layer_module
    shapes: dict[str, tuple | None] = {}

    def hook_for(name):
        def hook(_module, _inputs, output):
            shapes[name] = tuple(output.shape) if torch.is_tensor(output) else None
        return hook

    handles = [m.register_forward_hook(hook_for(n)) for n, m in watched.items()]
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        for handle in handles:
            handle.remove()
    grids = {n: tuple(int(v) for v in shapes[n][2:]) for n in stages
             if shapes.get(n) is not None and len(shapes[n]) == x.dim()}
    if layer_module is None:
        return logits, grids, None
    shape = shapes.get(layer_name)
    if shape is None or len(shape) != x.dim() or isinstance(layer_module, NON_SPATIAL):
        raise ConfigError(_non_spatial_message(layer_name, layer_module, shape, grids))
    return logits, grids, tuple(int(v) for v in shape[2:])


def _non_spatial_message(name: str, module: nn.Module, shape, grids: dict) -> str:
    what = f"output {tuple(shape)}" if shape is not None else "no tensor output"
    choices = ", ".join(f"{n} ({grid_text(g)})" for n, g in grids.items()) or "none found: name a Conv3d layer"
    return (f"--layer {name}: no spatial grid there ({type(module).__name__}, {what}); Grad-CAM needs a "
            f"convolutional layer, choose one of: {choices}")


def grid_text(grid) -> str:
    """(2, 2, 2) -> ``2x2x2``."""
    return "x".join(str(int(v)) for v in grid)


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
