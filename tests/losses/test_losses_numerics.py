"""Numerics shared by all three losses: gradcheck, T = 0.01 in fp32, bf16 autocast; import layering."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import neuro_ssl.losses
from neuro_ssl.losses import NTXent, SupCon, YAwareInfoNCE

LABELS = torch.tensor([0, 1, 0, 2, 1])
AGES = torch.tensor([61.0, 74.5, 66.0, 80.2, 58.9])


def _call(name: str, temperature: float, z1, z2, **kwargs):
    """Each loss with the covariate it needs (ages in years, sigma 5 years; or labels)."""
    if name == "yaware":
        return YAwareInfoNCE(5.0, temperature)(z1, z2, AGES.to(z1.dtype), **kwargs)
    if name == "supcon":
        return SupCon(temperature)(z1, z2, LABELS, **kwargs)
    return NTXent(temperature)(z1, z2, **kwargs)


LOSS_NAMES = ["simclr", "yaware", "supcon"]


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_gradcheck_float64(name):
    gen = torch.Generator().manual_seed(0)
    z1, z2 = (torch.randn(5, 3, dtype=torch.float64, generator=gen, requires_grad=True) for _ in range(2))
    zq = torch.randn(3, 3, dtype=torch.float64, generator=gen)
    queue = (zq, torch.tensor([[60.0], [0.0], [75.0]], dtype=torch.float64))
    assert torch.autograd.gradcheck(lambda a, b: _call(name, 0.5, a, b), (z1, z2))
    assert torch.autograd.gradcheck(lambda a, b: _call(name, 0.5, a, b, queue=queue), (z1, z2))


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_small_temperature_is_finite_in_float32(name):
    gen = torch.Generator().manual_seed(1)
    z1, z2 = (torch.randn(5, 16, generator=gen, requires_grad=True) for _ in range(2))
    loss = _call(name, 0.01, z1, z2)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z1.grad).all() and torch.isfinite(z2.grad).all()
    exact = _call(name, 0.01, z1.detach().double(), z2.detach().double())
    assert loss.item() == pytest.approx(exact.item(), rel=1e-4)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_bf16_autocast_runs_and_is_close_to_fp32(name):
    gen = torch.Generator().manual_seed(2)
    head = torch.nn.Linear(32, 16)
    x1, x2 = torch.randn(5, 32, generator=gen), torch.randn(5, 32, generator=gen)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z1, z2 = head(x1), head(x2)
        assert z1.dtype == torch.bfloat16
        loss_bf16 = _call(name, 0.1, z1, z2)
    loss_bf16.backward()
    assert loss_bf16.dtype == torch.float32
    assert all(torch.isfinite(p.grad).all() for p in head.parameters())
    loss_fp32 = _call(name, 0.1, head(x1), head(x2))
    assert loss_bf16.item() == pytest.approx(loss_fp32.item(), rel=2e-2)


def test_losses_import_only_torch_and_their_siblings():
    for path in Path(neuro_ssl.losses.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            for name in names:
                assert name.split(".")[0] in {"torch", "neuro_ssl", "__future__", "math", "typing"}, (path, name)
                assert not name.startswith("neuro_ssl") or name.startswith("neuro_ssl.losses"), (path, name)


def test_docs_example_runs():
    text = (Path(__file__).resolve().parents[2] / "docs" / "losses.md").read_text()
    example = text.split("## Example", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(example, "docs/losses.md", "exec"), namespace)
    assert namespace["loss"].ndim == 0 and len(namespace["queue"]) == 8
