"""``pretrain --loss moco``: MoCo's InfoNCE through the objectives registry, wired as the paper says."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from neuro_ssl.cli.main import main
from neuro_ssl.losses import MemoryQueue, MoCoInfoNCE
from neuro_ssl.training.config import PretrainConfig
from neuro_ssl.training.objectives import OBJECTIVES, Step

TINY = ["--arch", "resnet10", "--width", "0.25", "--spacing", "8", "--shape", "24,24,24", "--proj-dims", "16",
        "--batch-size", "4", "--epochs", "1", "--workers", "0", "--device", "cpu", "--seed", "0"]


class _Net(nn.Module):
    """(h, z) of a flattened input: stands in for encoder + projection head."""

    def __init__(self, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.proj = nn.Linear(8, 4).double()

    def forward(self, x):
        h = x.flatten(1)
        return h, self.proj(h)


def test_objective_pairs_each_query_with_the_other_views_key_and_the_queue():
    config = PretrainConfig(loss="moco", queue=6, temperature=0.2)
    objective = OBJECTIVES["moco"](config, None)
    assert objective.needs_target(config)
    views = torch.randn(2 * 3, 8, dtype=torch.float64)  # view 1 rows first, then view 2
    net, target = _Net(0), _Net(1)
    queue = MemoryQueue(6, 4).double()
    queue.enqueue(torch.randn(5, 4, dtype=torch.float64))
    step = Step(batch={}, views=views, y=None, net=net, target=target, queue=queue, amp="none",
                device=torch.device("cpu"))
    out = objective(step)
    q1, q2 = net(views)[1].chunk(2)
    with torch.no_grad():
        k1, k2 = target(views)[1].chunk(2)
    expected = MoCoInfoNCE(0.2, symmetric=True)(q1, k2, queue=queue.get(), q2=q2, k1=k1)
    torch.testing.assert_close(out.loss.double(), expected, rtol=1e-5, atol=0)  # the loop works in float32
    torch.testing.assert_close(out.keys, k1.float())  # view 1's keys join the queue after the step
    out.loss.backward()
    assert net.proj.weight.grad is not None and target.proj.weight.grad is None


def test_pretrain_with_moco_runs_and_fills_its_queue(tiny_cohort, tmp_path):
    run = tmp_path / "run"
    assert main(["pretrain", "--manifest", str(tiny_cohort), "--out", str(run), "--loss", "moco", "--queue", "8",
                 "--cache-dir", str(tmp_path / "cache"), *TINY]) == 0
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert int(state["queue"]["n_filled"]) == 8 and state["target"] is not None


def test_moco_without_a_queue_is_a_usage_error(tiny_cohort, tmp_path, capsys):
    code = main(["pretrain", "--manifest", str(tiny_cohort), "--out", str(tmp_path / "run"), "--loss", "moco", *TINY])
    assert code == 2 and "--loss moco needs --queue N" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("loss", ["simclr", "moco"])
def test_help_names_what_each_mode_is(loss, capsys):
    assert main(["pretrain", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "not MoCo's loss" in text and "moco (MoCo v2's InfoNCE" in text
