"""Real Flower processes on loopback: one flower-superlink, three flower-supernodes, `flwr run`.

One run of 3 sites x 2 rounds (``--deployment processes --record-received``) serves three checks:
the server is killed with SIGKILL in round 2 and the run is finished with ``--resume``; every
round's aggregate is the scan-count-weighted mean of the weights the sites sent after their one
local step (against a float64 computation); and the server received nothing but parameter
arrays and counts.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from .conftest import FED, SITE_SCANS, start_federate

TIMEOUT_S = 1500  # about a minute on an idle 2-core machine; generous for a shared, loaded one
pytestmark = pytest.mark.timeout(3 * TIMEOUT_S)
#: the metrics a site may send: its scan count (the FedAvg weight) and numbers about its training
SITE_METRICS = {"num-examples", "loss", "steps", "seconds", "skipped", "partition-id"}


def _wait_for_round(run: Path, rnd: int, proc) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        state = run / "federation.json"
        if state.exists() and json.loads(state.read_text()).get("round", 0) >= rnd:
            return
        if proc.poll() is not None:
            raise AssertionError(f"federate exited {proc.returncode} before round {rnd}: {proc.stderr.read()[-3000:]}")
        time.sleep(0.2)
    raise AssertionError(f"no round {rnd} within {TIMEOUT_S} s")


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _flower_processes_of(addresses: list[str]) -> list[str]:
    """Command lines of live processes that mention one of the run's loopback addresses."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(a in cmd for a in addresses) and _alive(int(entry.name)):
            found.append(cmd)
    return found


@pytest.fixture(scope="module")
def killed_then_resumed(site_manifest, tmp_path_factory):
    run = tmp_path_factory.mktemp("fed_processes") / "run"
    argv = ["--manifest", site_manifest, "--site-column", "site", "--out", "run", *FED,  # a relative RUN, as users type
            "--deployment", "processes", "--record-received"]
    first = start_federate(argv, cwd=run.parent)
    try:
        _wait_for_round(run, 1, first)
        processes = json.loads((run / "flower" / "processes.json").read_text())
        superlink = next(p for p in processes if p["role"] == "superlink")
        os.kill(superlink["pid"], signal.SIGKILL)  # the server dies during round 2
        _, first_err = first.communicate(timeout=TIMEOUT_S)
    finally:
        if first.poll() is None:  # SIGTERM: the coordinator stops the Flower processes it started
            first.terminate()
            first.communicate(timeout=120)
    time.sleep(1.0)
    leftovers = _flower_processes_of([p["address"] for p in processes])
    resumed = start_federate([*argv, "--resume"], cwd=run.parent)
    out, err = resumed.communicate(timeout=TIMEOUT_S)
    return {"run": run, "first_code": first.returncode, "first_err": first_err, "processes": processes,
            "leftovers": leftovers, "code": resumed.returncode, "out": out, "err": err}


def _received(run: Path, rnd: int) -> list[tuple[dict, dict]]:
    """(description, arrays) of every reply the server received in round ``rnd``."""
    folder = run / "received" / f"round_{rnd:03d}"
    replies = []
    for path in sorted(folder.glob("node_*.json")):
        with np.load(path.with_suffix(".npz")) as npz:
            replies.append((json.loads(path.read_text()), {k.split("/", 1)[1]: npz[k] for k in npz.files}))
    assert len(replies) == len(SITE_SCANS), sorted(folder.iterdir())
    return replies


def test_kill9_of_the_server_then_resume_ends_at_the_same_round_count(killed_then_resumed, site_manifest):
    from neuro_ssl.data.manifest import read_manifest
    from neuro_ssl.models import load_encoder

    r = killed_then_resumed
    assert r["first_code"] == 1, r["first_err"][-3000:]
    assert "the SuperLink (server) stopped" in r["first_err"] and "--resume" in r["first_err"], r["first_err"][-2000:]
    assert not [p for p in r["processes"] if _alive(p["pid"])], "a Flower process outlived the first run"
    assert not r["leftovers"], r["leftovers"]
    assert r["code"] == 0, r["err"][-3000:]
    assert "resuming after round 1 of 2" in r["err"], r["err"][-2000:]
    run = r["run"]
    state = json.loads((run / "federation.json").read_text())
    assert (state["state"], state["round"], state["rounds"]) == ("finished", 2, 2)
    metrics = pd.read_csv(run / "metrics.csv", dtype={"site": str})
    assert not metrics.duplicated(["round", "site"]).any()
    ok = metrics[metrics["status"] == "ok"]
    assert sorted(ok.groupby("round")["site"].apply(sorted).tolist()) == [sorted(SITE_SCANS)] * 2
    assert metrics[metrics["site"] == "all"]["round"].tolist() == [1, 2]
    encoder, meta = load_encoder(run / "encoder.pt")
    assert meta["federated"]["rounds_done"] == 2 and meta["epochs_done"] == 2
    assert meta["preprocess"]["shape"] == [32, 32, 32]
    assert meta["subjects"] == sorted(read_manifest(site_manifest)["subject_id"].unique())
    assert (run / "checkpoint.pt").is_file() and list(run.glob("events.out.tfevents.*"))


def test_aggregate_is_the_scan_weighted_mean_of_the_site_weights(killed_then_resumed):
    import torch

    run = killed_then_resumed["run"]
    metrics = pd.read_csv(run / "metrics.csv", dtype={"site": str})
    assert (metrics[metrics["status"] == "ok"]["steps"] == 1).all()  # one local step per site and round
    final = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)["model"]
    with np.load(run / "received" / "round_002" / "sent.npz") as npz:
        after_round = {1: {k: npz[k] for k in npz.files},
                       2: {k: final[k].numpy() for k in npz.files}}
    for rnd in (1, 2):
        replies = _received(run, rnd)
        counts = np.array([d["records"]["metrics"]["items"]["num-examples"] for d, _ in replies], dtype=np.float64)
        assert sorted(counts) == sorted(SITE_SCANS.values())
        with np.load(run / "received" / f"round_{rnd:03d}" / "sent.npz") as npz:
            sent = {k: npz[k] for k in npz.files}
        assert all(set(a) == set(sent) for _, a in replies)
        worst_plain = 0.0
        for key in sent:
            stack = np.stack([a[key].astype(np.float64) for _, a in replies])
            expected = np.tensordot(counts / counts.sum(), stack, axes=1)
            np.testing.assert_allclose(after_round[rnd][key], expected, rtol=1e-6, atol=1e-7, err_msg=key)
            worst_plain = max(worst_plain, float(np.abs(stack.mean(0) - expected).max()))
        assert worst_plain > 1e-5, "weights this close cannot tell a weighted from a plain mean"
        moved = [max(float(np.abs(a[k] - sent[k]).max()) for k in sent) for _, a in replies]
        assert min(moved) > 0, "a site sent back the weights it received: it did not train"


def test_the_server_receives_only_parameter_arrays_and_counts(killed_then_resumed, site_manifest):
    import torch

    from neuro_ssl.data.manifest import read_manifest

    run = killed_then_resumed["run"]
    model_state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)["model"]
    df = read_manifest(site_manifest)
    # long enough not to occur by chance in float bytes (session codes like "bl" would)
    secrets = [str(site_manifest), str(Path(site_manifest).parent), *df["image"], *df["subject_id"]]
    for rnd in (1, 2):
        for desc, arrays in _received(run, rnd):
            assert "error" not in desc
            assert {n: r["type"] for n, r in desc["records"].items()} == {"arrays": "ArrayRecord",
                                                                          "metrics": "MetricRecord"}
            items = desc["records"]["metrics"]["items"]
            assert set(items) == SITE_METRICS
            assert all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items.values())
            for name, spec in desc["records"]["arrays"]["items"].items():
                assert name in model_state and spec["shape"] == list(model_state[name].shape), name
                assert spec["dtype"] == "float32"
                assert not (len(spec["shape"]) >= 3 and spec["shape"][-3:] == [32, 32, 32]), f"{name} looks like a volume"
            text = json.dumps(desc)
            raw = b"".join(a.tobytes() for a in arrays.values())
            for secret in secrets:
                assert str(secret) not in text and str(secret).encode() not in raw, secret
