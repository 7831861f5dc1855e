"""Grad-CAM against an independent float64 computation, and the other Captum methods' contracts."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn
import torch.nn.functional as F

from neuro_ssl.errors import ConfigError
from neuro_ssl.interpret.gradcam import compute_saliency, find_layer, resolve_target


class TinyNet(nn.Module):
    """conv -> relu -> [target conv, stride 2] -> relu -> conv -> relu -> pool -> linear.

    The convolution after the target layer makes the target layer's gradient vary in space, so
    pooling over two axes instead of three (or skipping the ReLU) gives a different map.
    """

    def __init__(self, n_classes: int = 3):
        super().__init__()
        self.stem = nn.Conv3d(1, 4, 3, padding=1)
        self.target = nn.Conv3d(4, 6, 3, stride=2, padding=1)
        self.after = nn.Conv3d(6, 5, 3, padding=1)
        self.fc = nn.Linear(5, n_classes)

    def forward(self, x):
        h = F.relu(self.stem(x))
        h = F.relu(self.target(h))
        h = F.relu(self.after(h))
        return self.fc(F.adaptive_avg_pool3d(h, 1).flatten(1))


def _reference_gradcam(model: nn.Module, x: torch.Tensor, index: int, pool_dims=(2, 3, 4),
                       relu: bool = True) -> torch.Tensor:
    """Grad-CAM by hand in float64 with a forward hook: returns the map on the layer grid."""
    model = copy.deepcopy(model).double()
    store = {}

    def hook(_module, _inp, out):
        out.retain_grad()
        store["act"] = out

    handle = model.target.register_forward_hook(hook)
    try:
        score = model(x.double())[0, index]
        score.backward()
    finally:
        handle.remove()
    act, grad = store["act"], store["act"].grad
    weights = grad.mean(dim=pool_dims, keepdim=True)
    cam = (weights * act).sum(dim=1, keepdim=True).detach()
    return torch.relu(cam) if relu else cam


def _tiny_input(seed: int = 0, shape=(1, 12, 10, 14)) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradcam_matches_float64_reference(seed):
    torch.manual_seed(seed)
    model = TinyNet()
    x = _tiny_input(seed)
    result = compute_saliency(model, x, method="gradcam", layer="target", classes=["a", "b", "c"])
    with torch.no_grad():
        index = int(model(x[None]).argmax())
    cam = _reference_gradcam(model, x[None], index)
    expected = F.interpolate(cam, size=x.shape[1:], mode="trilinear").squeeze().numpy()
    assert result.map.dtype == np.float32 and result.map.shape == x.shape[1:]
    assert expected.max() > 0
    np.testing.assert_allclose(result.map, expected, rtol=1e-4, atol=1e-5 * expected.max())
    assert result.predicted == ["a", "b", "c"][index] and result.target == result.predicted
    assert (result.map >= 0).all()


def test_reference_is_sensitive_to_pooling_axes_and_relu():
    """The comparison above could not pass with 2-axis pooling or without ReLU."""
    torch.manual_seed(0)
    model = TinyNet()
    x = _tiny_input(0)[None]
    three = _reference_gradcam(model, x, 0)
    two = _reference_gradcam(model, x, 0, pool_dims=(2, 3))
    assert not torch.allclose(three, two, rtol=1e-2, atol=1e-2 * float(three.max()))
    assert _reference_gradcam(model, x, 0, relu=False).min() < 0


def test_named_target_and_confidence_is_softmax():
    torch.manual_seed(3)
    model = TinyNet()
    x = _tiny_input(3)
    with torch.no_grad():
        probs = torch.softmax(model(x[None]).double(), dim=1)[0]
    result = compute_saliency(model, x, layer="target", target="c", classes=["a", "b", "c"])
    assert result.target == "c"
    assert result.predicted == "abc"[int(probs.argmax())]
    assert result.confidence == pytest.approx(float(probs.max()), rel=1e-6)
    expected = _reference_gradcam(model, x[None], 2)
    expected = F.interpolate(expected, size=x.shape[1:], mode="trilinear").squeeze().float().numpy()
    np.testing.assert_allclose(result.map, expected, rtol=1e-4, atol=1e-5 * max(expected.max(), 1e-12))


def test_diagnosis_aliases_name_a_class():
    logits = torch.tensor([[0.1, 0.9]])
    assert resolve_target("Dementia", ["CN", "AD"], logits) == 1
    assert resolve_target(None, ["CN", "AD"], logits) == 1
    with pytest.raises(ConfigError, match="not a class"):
        resolve_target("MCI", ["CN", "AD"], logits)


def test_unknown_layer_and_method_are_one_line_errors():
    model = TinyNet()
    with pytest.raises(ConfigError, match="did you mean"):
        find_layer(model, "targte")
    with pytest.raises(ConfigError, match="gradcam"):
        compute_saliency(model, _tiny_input(), method="gradcm")


def test_default_layer_is_last_conv_stage_of_a_monai_resnet():
    from monai.networks.nets import resnet10

    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Module()
            self.encoder.net = resnet10(spatial_dims=3, n_input_channels=1, num_classes=2, conv1_t_stride=2)

        def forward(self, x):
            return self.encoder.net(x)

    model = Wrapped()
    name, module = find_layer(model)
    assert name == "encoder.net.layer4" and module is model.encoder.net.layer4


@pytest.mark.parametrize("method", ["guided-gradcam", "integrated-gradients"])
def test_other_methods_give_nonnegative_input_grid_maps(method):
    torch.manual_seed(5)
    model = TinyNet()
    x = _tiny_input(5)
    result = compute_saliency(model, x, method=method, layer="target", n_steps=4)
    assert result.map.shape == x.shape[1:] and result.map.dtype == np.float32
    assert (result.map >= 0).all() and result.map.max() > 0


def test_integrated_gradients_completeness():
    """IG's attributions sum to f(x) - f(0) (the completeness axiom) on a linear-ish model."""
    torch.manual_seed(7)
    model = nn.Sequential(nn.Flatten(), nn.Linear(6 * 5 * 4, 2))
    x = _tiny_input(7, shape=(1, 6, 5, 4))
    from captum.attr import IntegratedGradients

    attr = IntegratedGradients(model).attribute(x[None], baselines=torch.zeros(1, 1, 6, 5, 4), target=1, n_steps=4)
    delta = model(x[None])[0, 1] - model(torch.zeros(1, 1, 6, 5, 4))[0, 1]
    assert float(attr.sum().detach()) == pytest.approx(float(delta.detach()), rel=1e-4)
    result = compute_saliency(model, x, method="integrated-gradients", target=1, n_steps=4)
    np.testing.assert_allclose(result.map, attr[0, 0].abs().detach().numpy(), rtol=1e-5, atol=1e-7)


def test_regression_explains_the_output():
    torch.manual_seed(9)
    model = TinyNet(n_classes=1)
    x = _tiny_input(9)
    result = compute_saliency(model, x, layer="target", task="regression")
    with torch.no_grad():
        value = float(model(x[None])[0, 0])
    assert result.predicted == pytest.approx(value, rel=1e-5) and np.isnan(result.confidence)
    expected = F.interpolate(_reference_gradcam(model, x[None], 0), size=x.shape[1:], mode="trilinear")
    np.testing.assert_allclose(result.map, expected.squeeze().float().numpy(), rtol=1e-4,
                               atol=1e-5 * max(float(expected.max()), 1e-12))


def test_matches_monai_gradcam_with_identity_postprocessing_and_not_its_default():
    """MONAI's GradCAM agrees with ours once its default normaliser (which inverts) is switched off."""
    from monai.visualize import GradCAM

    torch.manual_seed(11)
    model = TinyNet().eval()
    x = _tiny_input(11)
    ours = compute_saliency(model, x, layer="target", target=1).map
    monai_identity = GradCAM(model, target_layers="target", postprocessing=lambda m: m)(x[None], class_idx=1)
    np.testing.assert_allclose(ours, monai_identity[0, 0].detach().numpy(), rtol=1e-4, atol=1e-6 * ours.max())
    monai_default = GradCAM(model, target_layers="target")(x[None], class_idx=1)[0, 0].detach().numpy()
    inside = ours > 0
    assert np.corrcoef(ours[inside], monai_default[inside])[0, 1] < -0.9  # the pitfall: an inverted map
