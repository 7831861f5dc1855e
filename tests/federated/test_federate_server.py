"""The server's round logic with the sites' real handler, in this process (no Ray, no processes).

``InProcessGrid`` stands in for Flower's ``Grid``: it delivers each message to
``client.handle_train`` with that site's node config and returns the real reply messages, so the
server's FedAvg, failure reports, ``--min-clients`` stop and checkpoints run exactly as deployed.
"""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

SITES = ("002", "023", "941")


class InProcessGrid:
    def __init__(self, node_configs: dict[int, dict]):
        self.node_configs = node_configs
        self.replies: list = []

    def get_node_ids(self):
        return list(self.node_configs)

    def send_and_receive(self, messages, *, timeout=None):
        from neuro_ssl.federated.client import handle_train

        replies = [handle_train(m, SimpleNamespace(node_config=self.node_configs[m.metadata.dst_node_id]))
                   for m in messages]
        self.replies.append(replies)
        return replies


@pytest.fixture(autouse=True)
def _task_identity(monkeypatch):
    """What Flower's runtime sets in a ServerApp process before messages can be created."""
    from flwr.supercore.task_identity import TaskIdentity

    for name, value in (("_run_id", 1), ("_task_id", 1), ("_node_id", 1)):
        monkeypatch.setattr(TaskIdentity, name, value)


def _setup(site_manifest, tmp_path, min_clients: int, break_site: str | None, val_manifest=None):
    from neuro_ssl._utils.files import write_yaml
    from neuro_ssl.data.manifest import read_manifest, write_manifest
    from neuro_ssl.federated.checkpoint import update_state
    from neuro_ssl.federated.config import FederatedConfig
    from neuro_ssl.training.config import PretrainConfig

    df = read_manifest(site_manifest)
    if break_site:
        broken = tmp_path / "broken.nii.gz"
        shutil.copy(df[df["site"] == break_site]["image"].iloc[0], broken)
        broken.write_bytes(b"not a NIfTI file")
        df.loc[df[df["site"] == break_site].index[0], "image"] = str(broken)
    manifest = write_manifest(df, tmp_path / "sites.csv")
    cfg = FederatedConfig(rounds=1, local_epochs=1, min_clients=min_clients, pretrain=PretrainConfig(
        loss="simclr", arch="resnet10", width=0.125, spacing_mm=(8.0,) * 3, shape=(16, 16, 16), proj_dims=(16, 8),
        batch_size=4, lr=1e-3, warmup_epochs=0.0, workers=0, device="cpu"))
    run = tmp_path / "run"
    write_yaml(run / "config.yaml", cfg.to_dict())
    update_state(run, sites=list(SITES), subjects=["x"], min_clients=min_clients,
                 val_manifest=str(val_manifest) if val_manifest else None)
    nodes = {100 + i: {"partition-id": i, "manifest": str(manifest), "site-column": "site", "site": site,
                       "state-dir": str(tmp_path / "sites" / site)} for i, site in enumerate(SITES)}
    return run, InProcessGrid(nodes), str(broken.parent) if break_site else None


def test_too_few_answering_sites_stop_the_run_with_one_line(site_manifest, tmp_path):
    from neuro_ssl.errors import FederationError
    from neuro_ssl.federated.server import serve

    run, grid, secret = _setup(site_manifest, tmp_path, min_clients=3, break_site="941")
    with pytest.raises(FederationError, match=r"round 1: 2 of 3 site\(s\) returned weights, fewer than --min-clients 3"):
        serve(run, grid)
    state = json.loads((run / "federation.json").read_text())
    assert state["state"] == "failed" and "--min-clients 3" in state["error"]
    assert not (run / "checkpoint.pt").exists() and not (run / "encoder.pt").exists()
    errors = [m.error.reason for m in grid.replies[0] if m.has_error()]
    assert errors == ["site 941 (partition 2): ImageError; the message is in the site's own log"]
    assert secret not in errors[0]


def test_a_round_averages_the_answering_sites_by_scan_count(site_manifest, tmp_path):
    import torch

    from neuro_ssl.federated.server import serve
    from neuro_ssl.models import load_encoder

    run, grid, _ = _setup(site_manifest, tmp_path, min_clients=2, break_site="023", val_manifest=site_manifest)
    serve(run, grid)
    ok = [m for m in grid.replies[0] if not m.has_error()]
    counts = np.array([m.content["metrics"]["num-examples"] for m in ok], dtype=np.float64)
    assert sorted(counts) == [5, 6]
    final = torch.load(run / "checkpoint.pt", weights_only=True)["model"]
    for key in ok[0].content["arrays"].keys():
        stack = np.stack([m.content["arrays"][key].numpy().astype(np.float64) for m in ok])
        np.testing.assert_allclose(final[key].numpy(), np.tensordot(counts / counts.sum(), stack, axes=1),
                                   rtol=1e-6, atol=1e-7, err_msg=key)
    metrics = pd.read_csv(run / "metrics.csv", dtype={"site": str})
    assert metrics.set_index("site")["status"].to_dict() == {"002": "ok", "941": "ok", "023": "failed", "all": "aggregated"}
    assert json.loads((run / "federation.json").read_text())["state"] == "finished"
    assert {"probe_age_mae", "probe_n"} <= set(metrics.columns)  # the server's probes on --val-manifest
    _, meta = load_encoder(run / "encoder.pt")
    assert meta["federated"]["rounds_done"] == 1 and meta["subjects"] == ["x"]
