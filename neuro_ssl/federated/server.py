"""The server side: a Flower ``ServerApp`` running rounds of FedAvg or FedProx, checkpointed after each.

Round r: wait until the sites are connected, send the global tensors and the round's plan to
every connected site (Flower's ``FedAvg`` / ``FedProx`` ``configure_train``), collect the
replies within ``--round-timeout``, report each site that failed or disappeared, stop when fewer
than ``--min-clients`` answered, otherwise average the replies weighted by their scan counts
(Flower's ``aggregate_train``: McMahan et al., "Communication-Efficient Learning of Deep Networks
from Decentralized Data", AISTATS 2017), then write RUN/checkpoint.pt, RUN/encoder.pt,
RUN/metrics.csv, TensorBoard scalars and RUN/federation.json. A restarted server continues after
the last finished round. Everything is read from RUN/config.yaml and RUN/federation.json, which
the coordinator (``neuro_ssl.federated.coordinator``) writes; nothing about the sites' data is known here.
"""

from __future__ import annotations

import json
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from neuro_ssl.errors import FederationError, NeuroSSLError
from neuro_ssl.federated import checkpoint as ckpt
from neuro_ssl.federated.config import FederatedConfig
from neuro_ssl.federated.params import travelling_keys

#: seconds the server waits for every expected site before starting with at least --min-clients
CONNECT_GRACE_S = 30.0


def load_run_config(run_dir: Path) -> FederatedConfig:
    import yaml

    return FederatedConfig.from_dict(yaml.safe_load((Path(run_dir) / "config.yaml").read_text()))


def build_strategy(cfg: FederatedConfig, min_clients: int):
    """Flower's FedAvg, or FedProx (which sends ``proximal-mu`` to the sites); no federated evaluation."""
    from flwr.serverapp.strategy import FedAvg, FedProx

    common = dict(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=min_clients, min_evaluate_nodes=0,
                  min_available_nodes=min_clients, train_metrics_aggr_fn=_weighted_loss)
    if cfg.strategy == "fedprox":
        return FedProx(proximal_mu=float(cfg.proximal_mu), **common)
    return FedAvg(**common)


def _weighted_loss(records, weight_key: str):
    from flwr.app import MetricRecord

    pairs = [(float(next(iter(r.metric_records.values()))[weight_key]),
              float(next(iter(r.metric_records.values()))["loss"])) for r in records]
    total = sum(w for w, _ in pairs)
    return MetricRecord({"loss": sum(w * loss for w, loss in pairs) / total, weight_key: total})


class FederatedServer:
    """One federated run, driven through a Flower ``Grid``."""

    def __init__(self, run_dir: Path, grid):
        self.run_dir, self.grid = Path(run_dir), grid
        self.cfg = load_run_config(self.run_dir)
        plan = ckpt.read_state(self.run_dir)
        self.sites: list[str] = list(plan.get("sites", []))
        self.subjects: list[str] = list(plan.get("subjects", []))
        self.min_clients = int(plan.get("min_clients") or max(len(self.sites), 1))
        self.val_manifest = plan.get("val_manifest")
        self.model = ckpt.build_model(self.cfg.site_pretrain())
        self.state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.own_keys = set(self.state)
        self.keys = travelling_keys(self.model, self.cfg.keep_local_norm)
        self.rows: list[dict[str, Any]] = []
        self.done = 0

    def run(self) -> None:
        saved = ckpt.load_round(self.run_dir, self.cfg)
        if saved is not None:
            self.state.update(saved["model"])
            self._adopt_objective_keys()
            self.rows, self.done = list(saved["rows"]), int(saved["round"])
            self._say(f"resuming after round {self.done} of {self.cfg.rounds}")
        self.strategy = build_strategy(self.cfg, self.min_clients)
        self.logger = _tensorboard(self.run_dir, self.done if saved is not None else None)
        try:
            ckpt.update_state(self.run_dir, state="running", round=self.done, rounds=self.cfg.rounds, error=None)
            for rnd in range(self.done + 1, self.cfg.rounds + 1):
                self._round(rnd)
            self._write_outputs(self.done)
            ckpt.update_state(self.run_dir, state="finished", round=self.done)
        finally:
            self.logger.close()

    # ---- one round ---------------------------------------------------------------------------
    def _round(self, rnd: int) -> None:
        from flwr.app import Array, ArrayRecord, ConfigRecord

        started = time.perf_counter()
        self._wait_for_sites()
        sent = {k: self.state[k].numpy() for k in self.keys}
        plan = ConfigRecord({"pretrain": json.dumps(self.cfg.site_pretrain().to_dict()),
                             "local-epochs": int(self.cfg.local_epochs),
                             "keep-local-norm": bool(self.cfg.keep_local_norm),
                             "return-norm": bool(self.cfg.keep_local_norm and rnd == self.cfg.rounds)})
        messages = list(self.strategy.configure_train(rnd, ArrayRecord({k: Array(v) for k, v in sent.items()}),
                                                      plan, self.grid))
        self._say(f"round {rnd}/{self.cfg.rounds}: training at {len(messages)} site(s)")
        replies = list(self.grid.send_and_receive(messages, timeout=float(self.cfg.round_timeout)))
        if self.cfg.record_received:
            from neuro_ssl.federated.received import record_round

            record_round(self.run_dir, rnd, sent, dict(messages[0].content["config"]) if messages else {}, replies)
        ok = [m for m in replies if not m.has_error()]
        failed = [m for m in replies if m.has_error()]
        self._report_failures(rnd, failed, len(messages) - len(replies))
        if len(ok) < self.min_clients:
            raise FederationError(
                f"round {rnd}: {len(ok)} of {len(messages)} site(s) returned weights, fewer than --min-clients "
                f"{self.min_clients}; the run stopped after round {self.done} (fix the sites, then --resume)")
        arrays, _ = self.strategy.aggregate_train(rnd, ok)
        self.state.update({k: torch.from_numpy(arrays[k].numpy().copy()) for k in arrays.keys() if k not in self.state})
        self.state.update({k: torch.from_numpy(arrays[k].numpy().copy()).to(self.state[k].dtype)
                           for k in arrays.keys()})
        self._adopt_objective_keys()
        self._log_round(rnd, ok, failed, time.perf_counter() - started)
        ckpt.save_round(self.run_dir, self.cfg, rnd, self.state, self.rows)
        self.done = rnd
        self._write_outputs(rnd)
        ckpt.update_state(self.run_dir, round=rnd)

    def _adopt_objective_keys(self) -> None:
        """Tensors the sites' objective adds (``model.extras``: a decoder, a temperature) travel from now on.

        The server builds no objective (that needs the sites' data), so it learns these from the
        first replies; all sites build the same objective from the same options and seed.
        """
        self.keys = sorted(set(self.keys) | (set(self.state) - self.own_keys))

    def _wait_for_sites(self) -> None:
        expected, start = max(len(self.sites), self.min_clients), time.monotonic()
        while True:
            connected = len(list(self.grid.get_node_ids()))
            waited = time.monotonic() - start
            if connected >= expected or (connected >= self.min_clients and waited >= CONNECT_GRACE_S):
                return
            if waited > float(self.cfg.round_timeout):
                raise FederationError(f"only {connected} site(s) connected after {waited:.0f} s, fewer than "
                                      f"--min-clients {self.min_clients}; start the sites' SuperNodes, then --resume")
            time.sleep(0.5)

    def _report_failures(self, rnd: int, failed: list, silent: int) -> None:
        for msg in failed:
            site = self._site_of_error(msg.error.reason or "")
            self._say(f"round {rnd}: site {site} failed: {msg.error.reason}")
            self.rows.append({"round": rnd, "site": site, "node_id": str(msg.metadata.src_node_id),
                              "status": "failed", "error": msg.error.reason or f"error code {msg.error.code}"})
        if silent:
            self._say(f"round {rnd}: {silent} site(s) did not answer within --round-timeout {self.cfg.round_timeout} s")

    def _site_of_error(self, reason: str) -> str:
        match = re.search(r"\(partition (\d+)\)", reason)
        return self._site_name(int(match.group(1))) if match else "unknown"

    def _site_name(self, partition: int) -> str:
        return self.sites[partition] if 0 <= partition < len(self.sites) else f"partition {partition}"

    # ---- outputs -----------------------------------------------------------------------------
    def _log_round(self, rnd: int, ok: list, failed: list, seconds: float) -> None:
        metrics = [dict(next(iter(m.content.metric_records.values()))) for m in ok]
        total = sum(float(m["num-examples"]) for m in metrics)
        for msg, m in zip(ok, metrics):
            site = self._site_name(int(m.get("partition-id", -1)))
            self.rows.append({"round": rnd, "site": site, "node_id": str(msg.metadata.src_node_id), "status": "ok",
                              "n_scans": int(m["num-examples"]), "weight": float(m["num-examples"]) / total,
                              "steps": int(m.get("steps", 0)), "loss": float(m["loss"]),
                              "skipped": int(m.get("skipped", 0)), "seconds": float(m.get("seconds", 0.0))})
            self.logger.scalars(rnd, {"loss": float(m["loss"])}, prefix=f"site/{site}/")
        loss = sum(float(m["num-examples"]) * float(m["loss"]) for m in metrics) / total
        row = {"round": rnd, "site": "all", "status": "aggregated", "n_scans": int(total), "loss": loss,
               "clients": len(ok), "failed": len(failed), "epochs_done": rnd * int(self.cfg.local_epochs),
               "seconds": seconds, **self._probe(rnd)}
        self.rows.append(row)
        self.logger.scalars(rnd, {k: v for k, v in row.items() if k in ("loss", "clients", "failed")
                                  or k.startswith("probe_")}, prefix="federated/")
        self._say(f"round {rnd}/{self.cfg.rounds}: {len(ok)} site(s), {int(total)} scans, loss {loss:.4f}"
                  + "".join(f", {k} {v:.3f}" for k, v in row.items() if k.startswith("probe_")))

    def _probe(self, rnd: int) -> dict[str, Any]:
        """Online probes of the global encoder on the coordinator's --val-manifest, every --probe-every rounds."""
        every = int(self.cfg.pretrain.probe_every)
        if not self.val_manifest or (rnd % every and rnd != self.cfg.rounds):
            return {}
        from neuro_ssl.data.manifest import read_manifest
        from neuro_ssl.training.loop import resolve_device
        from neuro_ssl.training.pretrain_data import build_probe_data
        from neuro_ssl.training.probes import run_probes

        p = self.cfg.site_pretrain()
        self._load_model()
        probe = build_probe_data(read_manifest(self.val_manifest), p)
        device = resolve_device(p.device)
        metrics = run_probes(self.model.encoder.to(device), probe.dataset, probe.manifest, p.batch_size, device,
                             p.amp, p.seed)
        self.model.cpu()
        return metrics

    def _write_outputs(self, rnd: int) -> None:
        import pandas as pd

        from neuro_ssl._utils.files import write_csv

        self._load_model()
        ckpt.write_encoder(self.run_dir, self.model, self.cfg, rnd, self.subjects, self.sites)
        if self.rows:
            write_csv(self.run_dir / "metrics.csv", pd.DataFrame(self.rows))

    def _load_model(self) -> None:
        self.model.load_state_dict({k: v for k, v in self.state.items() if k in self.own_keys})

    def _say(self, message: str) -> None:
        print(f"neuro-ssl federate: {message}", file=sys.stderr, flush=True)


def _tensorboard(run_dir: Path, resume_round: int | None):
    from neuro_ssl.training.loop import MetricsLogger

    return MetricsLogger(run_dir, enabled=True, resume_step=resume_round)


def serve(run_dir: Path, grid) -> None:
    """Run the federation; a failure is written to RUN/federation.json before it propagates."""
    try:
        FederatedServer(run_dir, grid).run()
    except NeuroSSLError as exc:
        ckpt.update_state(run_dir, state="failed", error=str(exc), error_kind=type(exc).__name__)
        raise
    except Exception as exc:  # a bug: keep the traceback for the log, and say so in the state file
        ckpt.update_state(run_dir, state="failed", error=f"{type(exc).__name__}: {exc}", error_kind="bug",
                          traceback=traceback.format_exc())
        raise


def build_server_app(run_dir: Path | None = None):
    """A ServerApp for RUN (simulation), or for the ``run-dir`` of the run config (deployment)."""
    from flwr.serverapp import ServerApp

    app = ServerApp()

    @app.main()
    def main(grid, context) -> None:
        serve(Path(run_dir) if run_dir is not None else Path(str(context.run_config["run-dir"])), grid)

    return app
