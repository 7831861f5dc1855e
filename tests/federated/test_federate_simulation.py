"""Flower's simulation (Ray actors): FedProx + FedBN with one site that fails every round.

Site 941 holds an unreadable scan, so its ClientApp fails in each round; with ``--min-clients 2``
the rounds go on with the two other sites. The failure reaches the server as a bare error
(exception class only: no path), ``--keep-local-norm`` keeps every normalization layer at the
sites until the last round, and the released encoder's normalization layers are the count-weighted
mean of what the sites sent then.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from .conftest import FED, start_federate

TIMEOUT_S = 1500  # well under a minute on an idle 2-core machine; generous for a shared, loaded one
pytestmark = pytest.mark.timeout(2 * TIMEOUT_S)


@pytest.fixture(scope="module")
def failing_site_run(site_manifest, tmp_path_factory):
    from neuro_ssl.data.manifest import read_manifest, write_manifest

    work = tmp_path_factory.mktemp("fed_simulation")
    df = read_manifest(site_manifest)
    broken = work / "broken_T1w.nii.gz"
    shutil.copy(df[df["site"] == "941"]["image"].iloc[0], broken)
    broken.write_bytes(broken.read_bytes()[:200])  # a truncated gzip: an ImageError at site 941
    df.loc[df[df["site"] == "941"].index[0], "image"] = str(broken)
    manifest = write_manifest(df, work / "sites.csv")
    run = work / "run"
    proc = start_federate(["--manifest", manifest, "--out", run, *FED, "--strategy", "fedprox", "--proximal-mu", "0.5",
                           "--keep-local-norm", "--min-clients", "2", "--record-received"])
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.communicate(timeout=120)
    return {"run": run, "code": proc.returncode, "out": out, "err": err, "broken": broken, "manifest": manifest}


def test_a_failing_site_is_reported_and_the_rounds_go_on(failing_site_run):
    r = failing_site_run
    assert r["code"] == 0, r["err"][-3000:]
    assert "2 failed site repl(ies)" in r["out"], r["out"]
    metrics = pd.read_csv(r["run"] / "metrics.csv", dtype={"site": str})
    failed = metrics[metrics["status"] == "failed"]
    assert failed["site"].tolist() == ["941", "941"] and failed["round"].tolist() == [1, 2]
    assert failed["error"].str.contains("ImageError").all()
    assert not failed["error"].str.contains(str(r["broken"].parent)).any()
    aggregated = metrics[metrics["site"] == "all"]
    assert aggregated["clients"].tolist() == [2, 2] and aggregated["failed"].tolist() == [1, 1]
    assert sorted(metrics[metrics["status"] == "ok"]["site"].unique()) == ["002", "023"]


def test_fedbn_keeps_norm_layers_at_the_sites_until_the_release(failing_site_run):
    import torch

    from neuro_ssl.federated.params import norm_keys
    from neuro_ssl.models import load_encoder

    run = failing_site_run["run"]
    state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)["model"]
    encoder, _ = load_encoder(run / "encoder.pt")
    norm = {f"encoder.{k}" for k in norm_keys(encoder) if torch.is_floating_point(state[f"encoder.{k}"])}
    assert norm
    for rnd in (1, 2):
        folder = run / "received" / f"round_{rnd:03d}"
        with np.load(folder / "sent.npz") as npz:
            assert not norm & set(npz.files), "the server sent normalization layers under --keep-local-norm"
        replies = [(json.loads(p.read_text()), p) for p in sorted(folder.glob("node_*.json"))]
        ok = [(d, p) for d, p in replies if "error" not in d]
        assert len(ok) == 2 and len(replies) == 3
        for desc, _ in ok:
            has_norm = bool(norm & set(desc["records"]["arrays"]["items"]))
            assert has_norm == (rnd == 2), f"round {rnd}: norm layers sent: {has_norm}"
    counts = np.array([d["records"]["metrics"]["items"]["num-examples"] for d, _ in ok], dtype=np.float64)
    arrays = []
    for _, path in ok:
        with np.load(path.with_suffix(".npz")) as npz:
            arrays.append({k.split("/", 1)[1]: npz[k] for k in npz.files})
    for key in sorted(norm & set(arrays[0])):
        expected = np.tensordot(counts / counts.sum(), np.stack([a[key].astype(np.float64) for a in arrays]), axes=1)
        np.testing.assert_allclose(state[key].numpy(), expected, rtol=1e-6, atol=1e-7, err_msg=key)
    local = {site: torch.load(run / "sites" / site / "local_norm" / "round_0002.pt", weights_only=True)
             for site in ("002", "023")}
    assert set(local["002"]) == set(local["023"]) and set(local["002"]) >= norm
    differ = [k for k in local["002"] if not torch.equal(local["002"][k], local["023"][k])]
    assert differ, "the two sites ended with identical normalization layers"


def test_fedprox_sends_mu_and_only_the_failed_site_lacks_a_local_state(failing_site_run):
    run = failing_site_run["run"]
    for rnd in (1, 2):
        sent = json.loads((run / "received" / f"round_{rnd:03d}" / "sent.json").read_text())
        assert sent["proximal-mu"] == 0.5 and sent["server-round"] == rnd and sent["keep-local-norm"] is True
    assert not (run / "sites" / "941" / "local_norm").exists()
    assert (run / "encoder.pt").is_file() and json.loads((run / "federation.json").read_text())["state"] == "finished"
