"""The saliency sanity checks against independent references: float64 formulas, planted evidence,
maps that ignore the model (they must survive randomization) and a real CNN (it must not)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

from neuro_ssl.interpret import checks as C
from neuro_ssl.interpret.gradcam import compute_saliency
from neuro_ssl.interpret.sanity import CohortChecks


def _head(n: int = 16, seed: int = 0, background: float = 0.0):
    """Noise inside an ellipsoid 'brain', ``background`` outside: (image (1, n, n, n), brain)."""
    rng = np.random.default_rng(seed)
    ijk = np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), axis=-1)
    brain = (((ijk - (n - 1) / 2) / (n * 0.42)) ** 2).sum(-1) < 1
    image = np.where(brain, 1.0 + 0.3 * rng.standard_normal((n,) * 3), background).astype(np.float32)
    return image[None], brain


class SmallCNN(nn.Module):
    """stem conv -> strided conv -> conv -> global pool -> head: a real (tiny) 3D CNN."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv3d(1, 6, 3, padding=1)
        self.block = nn.Conv3d(6, 8, 3, stride=2, padding=1)
        self.top = nn.Conv3d(8, 8, 3, padding=1)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        h = F.relu(self.top(F.relu(self.block(F.relu(self.stem(x))))))
        return self.head(F.adaptive_avg_pool3d(h, 1).flatten(1))


class SumModel(nn.Module):
    """logits = head(w * sum(x)): integrated gradients give |x| times a constant, whatever the
    weights, so its map ignores them (like an edge detector in Adebayo et al.)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv3d(1, 1, 1, bias=False)
        self.head = nn.Linear(1, 2)

    def forward(self, x):
        return self.head(self.stem(x).sum(dim=(1, 2, 3, 4))[:, None])


# ------------------------------------------------------------------------------ the brain

def test_brain_is_the_mask_when_preprocessing_gives_one_else_what_differs_from_the_border():
    image, brain = _head(background=-0.7)
    assert C.border_value(image[0]) == pytest.approx(-0.7)
    found = C.brain_on_model_grid(SimpleNamespace(image=image))
    np.testing.assert_array_equal(found, brain)
    np.testing.assert_allclose(C.background_values(SimpleNamespace(image=image)), [-0.7])
    given = np.zeros_like(brain)
    given[2:5, 2:5, 2:5] = True
    pre = SimpleNamespace(image=image, mask=given)
    np.testing.assert_array_equal(C.brain_on_model_grid(pre), given)
    np.testing.assert_array_equal(C.background_values(pre), [0.0])
    with pytest.raises(ValueError, match="differs"):
        C.brain_on_model_grid(SimpleNamespace(image=image, mask=given[:-1]))


# ------------------------------------------------------------------------------ comparing maps

def test_spearman_matches_pearson_of_ranks_and_handles_constant_maps():
    rng = np.random.default_rng(1)
    a, b = rng.random((8, 9, 7)), rng.random((8, 9, 7))
    b[:4] += a[:4]
    brain = rng.random(a.shape) > 0.3
    ranks = [np.argsort(np.argsort(x[brain])).astype(np.float64) for x in (a, b)]  # no ties in random floats
    expected = np.corrcoef(*ranks)[0, 1]
    assert C.spearman_in_brain(a, b, brain) == pytest.approx(expected, abs=1e-12)
    assert np.isnan(C.spearman_in_brain(np.ones_like(a), b, brain))
    assert C.spearman_in_brain(a, np.zeros_like(b), brain) == 0.0


def _ssim_reference(a: np.ndarray, b: np.ndarray, win: int = 11, sigma: float = 1.5) -> float:
    """Wang et al. 2004 in float64: Gaussian-weighted local statistics, valid region only."""
    x = (a - a.min()) / (a.max() - a.min())
    y = (b - b.min()) / (b.max() - b.min())
    d = np.arange(win) - (win - 1) / 2
    g = np.exp(-0.5 * (d / sigma) ** 2)
    g /= g.sum()

    def local_mean(v):
        for axis in range(3):
            v = ndimage.correlate1d(v, g, axis=axis, mode="constant")
        r = win // 2
        return v[r:-r, r:-r, r:-r]

    mx, my = local_mean(x), local_mean(y)
    vx, vy, cxy = local_mean(x * x) - mx ** 2, local_mean(y * y) - my ** 2, local_mean(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    return float((((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))).mean())


def test_ssim_matches_a_float64_formula_and_ignores_scale():
    rng = np.random.default_rng(2)
    a = ndimage.gaussian_filter(rng.random((20, 22, 18)), 2)
    b = a + 0.02 * rng.standard_normal(a.shape)
    assert C.map_ssim(a, b) == pytest.approx(_ssim_reference(a, b), abs=2e-4)
    assert C.map_ssim(a, 7 * a) == pytest.approx(1.0, abs=1e-5)
    assert C.map_ssim(a, rng.random(a.shape)) < 0.2


# ------------------------------------------------------------------------------ localization

def _average_precision(scores: np.ndarray, truth: np.ndarray) -> float:
    """AP = sum over thresholds of (recall step) x precision, ties grouped, in float64."""
    order = np.argsort(-scores, kind="stable")
    s, t = scores[order], truth[order].astype(np.float64)
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # last index of each tied score
    tp = np.cumsum(t)[last]
    precision, recall = tp / (last + 1), tp / t.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def test_localization_of_the_mask_itself_a_uniform_map_and_a_random_one():
    _, brain = _head()
    mask = np.zeros_like(brain)
    mask[5:9, 6:10, 4:8] = True
    chance = (mask & brain).sum() / brain.sum()
    exact = C.localization(mask.astype(float), mask, brain)
    assert exact["share"] == pytest.approx(1.0) and exact["auprc"] == pytest.approx(1.0)
    assert exact["chance"] == pytest.approx(chance) and exact["gain"] == pytest.approx(1 / chance)
    uniform = C.localization(np.ones(brain.shape), mask, brain)
    assert uniform["gain"] == pytest.approx(1.0) and uniform["auprc"] == pytest.approx(chance)
    saliency = np.random.default_rng(3).random(brain.shape) + 0.5 * mask
    got = C.localization(saliency, mask, brain)
    assert got["auprc"] == pytest.approx(_average_precision(saliency[brain], mask[brain]), rel=1e-12)
    share = saliency[brain & mask].sum() / saliency[brain].sum()
    assert got["share"] == pytest.approx(share) and got["gain"] == pytest.approx(share / chance)


# ------------------------------------------------------------------------------ deletion

class PlantedEvidence(nn.Module):
    """logit_1 = c * mean of x over a fixed set R of voxels, logit_0 = 0: the evidence is R."""

    def __init__(self, region: np.ndarray, c: float = 4.0):
        super().__init__()
        self.register_buffer("region", torch.as_tensor(region, dtype=torch.float32))
        self.c = nn.Parameter(torch.tensor(c))

    def forward(self, x):
        evidence = (x[:, 0] * self.region).sum(dim=(1, 2, 3)) / self.region.sum()
        return torch.stack([torch.zeros_like(evidence), self.c * evidence], dim=1)


def test_deletion_of_planted_evidence_drops_as_computed_and_more_than_random():
    image, brain = _head()
    image[0][brain] = 1.0
    region = np.zeros_like(brain)
    region[4:10, 5:11, 5:10] = True  # 180 voxels, all inside the brain
    assert (region & brain).sum() == region.sum()
    model = PlantedEvidence(region)
    saliency = region + 0.01 * np.random.default_rng(4).random(brain.shape)  # evidence ranks first
    drops = C.deletion_drops(model, image, saliency, brain, target_index=1, background=0.0, seed=0)
    assert list(drops) == ["1", "2", "5", "10", "20"]
    sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731 - the two-class softmax of (0, v)
    r, n_brain = region.sum(), brain.sum()
    for k, values in drops.items():
        n = max(1, round(int(k) / 100 * n_brain))
        expected = sigmoid(4.0) - sigmoid(4.0 * max(r - n, 0) / r)
        assert values["salient_drop"] == pytest.approx(expected, rel=1e-5), k
        assert values["salient_drop"] > 2 * values["random_drop"] > 0, (k, values)


# ------------------------------------------------------------------------------ randomization

def _checks_for(model, method: str, layer: str | None, seed: int = 0):
    image, brain = _head(seed=10 + seed)
    checks = CohortChecks(model, {"classes": ["a", "b"], "task": "classification"}, method, n_steps=4, seed=seed)
    result = compute_saliency(model, image, method=method, layer=layer, target="b", classes=["a", "b"], n_steps=4)
    checks.add(("s", ""), SimpleNamespace(image=image, mask=brain), result)
    return checks.result()


def test_stages_are_cumulative_seeded_and_leave_the_global_rng_alone():
    from neuro_ssl.models import build_encoder
    from neuro_ssl.models.heads import SupervisedModel

    torch.manual_seed(0)
    model = SupervisedModel(build_encoder("resnet10", 1, "group", width=0.25), 2)
    names = [s for s, _ in C.randomization_stages(model)]
    assert names == ["head", "layer4", "layer3", "layer2", "layer1", "stem"]
    state = torch.random.get_rng_state()
    copies = C.cascading_randomization(model, seed=3)
    assert torch.equal(state, torch.random.get_rng_state())
    again = dict(C.cascading_randomization(model, seed=3))
    prefixes = {"head": "head", "stem": "encoder.net.conv1", **{f"layer{i}": f"encoder.net.layer{i}." for i in range(1, 5)}}
    convs = {n: m.weight for n, m in model.named_modules() if isinstance(m, (nn.Conv3d, nn.Linear))}
    for k, (stage, randomized) in enumerate(copies):
        changed = {n for n, m in randomized.named_modules() if n in convs and not torch.equal(m.weight, convs[n])}
        expected = {n for n in convs if any(n.startswith(prefixes[s]) for s in names[: k + 1])}
        assert changed == expected, stage
        assert all(torch.equal(a, b) for a, b in zip(randomized.state_dict().values(), again[stage].state_dict().values()))
    assert changed == set(convs)  # the last stage leaves no trained weight


def test_a_map_that_ignores_the_weights_survives_randomization():
    torch.manual_seed(0)
    out = _checks_for(SumModel(), "integrated-gradients", None)
    assert [e["stage"] for e in out["randomization"]] == ["head", "stem"]
    for entry in out["randomization"]:
        assert entry["spearman"] > 0.999 and entry["ssim"] > 0.999, entry
    assert "barely depend on the learned weights" in out["readings"]["randomization"]


def test_a_real_cnns_gradcam_does_not_survive_full_randomization():
    """Seeds 0-4 (model, input and randomization) give a full-randomization Spearman of 0.02, -0.62,
    -0.02, 0.09, 0.08 and SSIM 0.07, -0.01, -0.03, 0.09, 0.00; the map that ignores the weights: 1.00."""
    torch.manual_seed(0)
    out = _checks_for(SmallCNN().eval(), "gradcam", "block")
    assert [e["stage"] for e in out["randomization"]] == ["head", "top", "block", "stem"]
    assert out["randomization"][-1]["spearman"] < 0.3
    assert out["randomization"][-1]["ssim"] < 0.3
    assert "depend on what the model learned" in out["readings"]["randomization"]
    assert set(out["deletion"]) == {"1", "2", "5", "10", "20"}
