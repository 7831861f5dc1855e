"""The federated parts without Flower processes: FedProx's term, which tensors travel, a site's
local update, the options and every refusal of ``neuro-ssl federate`` before a run starts."""

from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pytest

from .conftest import FED, SITE_SCANS

SITE_METRICS = {"num-examples", "loss", "steps", "seconds", "skipped", "partition-id"}


def run_cli(argv):
    from neuro_ssl.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


# ---- FedProx ---------------------------------------------------------------------------------

def test_proximal_term_and_its_gradient_match_float64():
    import torch

    from neuro_ssl.training.pretrain import proximal_term

    gen = torch.Generator().manual_seed(0)
    params = {"a": torch.randn(3, 4, generator=gen), "b": torch.randn(5, generator=gen), "c": torch.randn(2, generator=gen)}
    reference = {"a": torch.randn(3, 4, generator=gen), "b": torch.randn(5, generator=gen)}  # "c" stays free
    for p in params.values():
        p.requires_grad_(True)
    mu = 0.37
    value = proximal_term(params.items(), reference, mu)
    value.backward()
    diff = {k: params[k].detach().numpy().astype(np.float64) - reference[k].numpy().astype(np.float64) for k in reference}
    assert value.item() == pytest.approx(mu / 2 * sum(float((d ** 2).sum()) for d in diff.values()), rel=1e-6)
    for k in reference:
        np.testing.assert_allclose(params[k].grad.numpy(), mu * diff[k], rtol=1e-6, atol=1e-7)
    assert params["c"].grad is None
    assert proximal_term(params.items(), {}, mu).item() == 0.0


# ---- which tensors travel --------------------------------------------------------------------

def _model(norm="batch"):
    from neuro_ssl.federated.checkpoint import build_model
    from neuro_ssl.training.config import PretrainConfig

    return build_model(PretrainConfig(arch="resnet10", width=0.125, norm=norm, proj_dims=(16, 8)))


def test_travelling_keys_are_the_float_tensors_and_fedbn_keeps_every_norm_layer_home():
    import torch

    from neuro_ssl.federated.params import travelling_keys

    model = _model("batch")
    state = model.state_dict()
    floats = {k for k, v in state.items() if torch.is_floating_point(v)}
    assert set(travelling_keys(model, keep_local_norm=False)) == floats
    assert not any(k.endswith("num_batches_tracked") for k in floats)
    bn = {k.rsplit(".", 1)[0] for k in state if k.endswith("running_mean")}  # every BatchNorm, 3d and 1d
    assert any(k.startswith("head.") for k in bn) and any(k.startswith("encoder.") for k in bn)
    shared = set(travelling_keys(model, keep_local_norm=True))
    assert shared == {k for k in floats if k.rsplit(".", 1)[0] not in bn}
    group = _model("group")
    gn = [name for name, m in group.named_modules() if isinstance(m, torch.nn.GroupNorm)]
    shared = set(travelling_keys(group, keep_local_norm=True))
    assert gn and not any(k.rsplit(".", 1)[0] in gn for k in shared)


# ---- one site's local update, without Flower -------------------------------------------------

def test_a_local_update_sends_back_the_tensors_it_got_plus_numbers(site_manifest, tmp_path):
    import torch

    from neuro_ssl.federated.checkpoint import build_model
    from neuro_ssl.federated.client import SiteSpec, local_update
    from neuro_ssl.federated.params import norm_keys, to_numpy, travelling_keys
    from neuro_ssl.training.config import PretrainConfig

    cfg = PretrainConfig(loss="yaware", meta=("age",), arch="resnet10", width=0.25, spacing_mm=(6.0,) * 3,
                         shape=(32, 32, 32), proj_dims=(32, 16), batch_size=4, lr=1e-3, warmup_epochs=0.0,
                         workers=0, device="cpu", epochs=3)
    model = build_model(cfg)
    sent = to_numpy(model.state_dict(), travelling_keys(model, keep_local_norm=True))
    spec = SiteSpec(0, str(site_manifest), "site", "002", str(tmp_path / "site"))
    plan = {"pretrain": json.dumps(cfg.to_dict()), "server-round": 2, "local-epochs": 1,
            "keep-local-norm": True, "return-norm": True}
    back, metrics = local_update(spec, sent, plan)
    norm = {k for k in norm_keys(model) if torch.is_floating_point(model.state_dict()[k])}
    assert set(back) == set(sent) | norm and not norm & set(sent)
    assert set(metrics) == SITE_METRICS and all(isinstance(v, (int, float)) for v in metrics.values())
    assert metrics["num-examples"] == SITE_SCANS["002"] and metrics["steps"] == 1 and metrics["partition-id"] == 0
    assert max(float(np.abs(back[k] - sent[k]).max()) for k in sent) > 0
    assert (tmp_path / "site" / "local_norm" / "round_0002.pt").is_file()
    assert not (tmp_path / "site" / "trainer").exists()


def test_the_local_schedule_continues_the_whole_runs_cosine(site_manifest, tmp_path):
    """Round 2 of 3 (one step per epoch): the step runs at lr * factor(1), then the lr is lr * factor(2)."""
    from neuro_ssl.data.manifest import read_manifest
    from neuro_ssl.federated.checkpoint import build_model
    from neuro_ssl.training.config import PretrainConfig
    from neuro_ssl.training.loop import DistInfo
    from neuro_ssl.training.pretrain import Pretrainer
    from neuro_ssl.training.pretrain_data import build_train_data

    cfg = PretrainConfig(loss="simclr", arch="resnet10", width=0.125, spacing_mm=(8.0,) * 3, shape=(16, 16, 16),
                         proj_dims=(16, 8), batch_size=4, lr=1e-3, warmup_epochs=0.0, workers=0, device="cpu", epochs=3)
    df = read_manifest(site_manifest)
    data = build_train_data(df[df["site"] == "941"], cfg, DistInfo(), log=lambda m: None)
    trainer = Pretrainer(cfg, tmp_path / "unused", DistInfo(), resume=False)
    _, rows = trainer.train_from(data, build_model(cfg).state_dict(), epochs=1, start_epoch=1)
    assert [r["epoch"] for r in rows] == [2] and trainer.global_step == 2
    assert rows[-1]["lr"] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 2 / 3)), rel=1e-9)


# ---- options ---------------------------------------------------------------------------------

def test_options_round_trip_through_config_yaml_keys():
    from neuro_ssl.federated.config import FederatedConfig
    from neuro_ssl.training.config import PretrainConfig

    cfg = FederatedConfig(rounds=3, local_epochs=2, strategy="fedprox", proximal_mu=0.1, keep_local_norm=True,
                          min_clients=2, pretrain=PretrainConfig(loss="yaware", meta=("age",), epochs=999))
    flat = cfg.to_dict()
    assert "epochs" not in flat and flat["loss"] == "yaware" and flat["rounds"] == 3
    back = FederatedConfig.from_dict(flat)
    assert back.to_dict() == flat and back.site_pretrain().epochs == 6


REFUSALS = [  # extra argv, exit code, words of the one-line message
    (["--site-column", "scanner"], 1, "no site column 'scanner'"),
    (["--strategy", "fedprox"], 2, "--proximal-mu > 0"),
    (["--proximal-mu", "0.1"], 2, "--strategy fedprox"),
    (["--queue", "8"], 2, "--queue is not supported"),
    (["--epochs", "3"], 2, "--rounds x --local-epochs"),
    (["--min-clients", "4"], 2, "more than the 3 site(s)"),
    (["--ssl-certfile", "server.pem"], 2, "all three"),
    (["--batch-size", "5"], 1, "site 023 has 4 scan(s)"),
]


@pytest.mark.parametrize("extra,code,needle", REFUSALS, ids=[r[2].split()[0] + str(i) for i, r in enumerate(REFUSALS)])
def test_refusals_are_one_line_and_leave_no_run_folder(site_manifest, tmp_path, extra, code, needle):
    run = tmp_path / "run"
    got, out, err = run_cli(["federate", "--manifest", site_manifest, "--out", run, *FED, *extra])
    lines = [line for line in err.splitlines() if line.strip()]
    assert got == code, err[-2000:]
    assert len(lines) == 1 and lines[0].startswith("neuro-ssl federate: error: ") and needle in lines[0], lines
    assert not run.exists()


def test_a_non_empty_run_folder_needs_resume(site_manifest, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    got, _, err = run_cli(["federate", "--manifest", site_manifest, "--out", run, *FED])
    assert got == 2 and "pass --resume" in err and sorted(p.name for p in run.iterdir()) == ["notes.txt"]
