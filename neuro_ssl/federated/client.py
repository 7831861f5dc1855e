"""The site side: a Flower ``ClientApp`` that trains on the site's own rows and returns weights and counts.

Each train message carries the global weights (``arrays``) and the round's plan (``config``:
round, local epochs, the pretraining options as JSON, FedProx mu, FedBN). The site reads its
own manifest rows (``node_config``: ``manifest``, ``site-column``, ``site``, ``state-dir``,
``partition-id``), runs the ordinary pretraining loop (``training.pretrain.Pretrainer.train_from``)
for the local epochs and replies with exactly two records: the updated float tensors
(``arrays``) and numbers (``metrics``: ``num-examples`` = scans trained on, the FedAvg weight;
loss, steps, seconds, skipped scans, partition id). Paths, covariates, subject ids and images
never leave: a failure is replied as a bare error naming only the exception's class, and the
full message goes to the site's own log. Rows skipped with ``--skip-bad`` are listed in the
site's ``state-dir/skipped.csv``; FedBN's local normalization layers live in ``state-dir`` too.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

LOCAL_NORM_DIR = "local_norm"


@dataclass(frozen=True)
class SiteSpec:
    """Where one site's data and private state are (known only to that site)."""

    partition: int
    manifest: str
    site_column: str | None
    site: str | None
    state_dir: str

    @property
    def name(self) -> str:
        return self.site if self.site is not None else f"partition {self.partition}"


def site_from_node_config(node_config: Mapping[str, Any]) -> SiteSpec:
    """The SiteSpec a SuperNode was started with (``flower-supernode --node-config '...'``)."""
    from neuro_ssl.errors import ConfigError

    missing = [k for k in ("manifest", "state-dir") if k not in node_config]
    if missing:
        raise ConfigError(f"the SuperNode's --node-config lacks {', '.join(missing)} "
                          f"(e.g. manifest=\"/data/site.csv\" state-dir=\"/data/neuro-ssl-site\")")
    site = node_config.get("site")
    return SiteSpec(partition=int(node_config.get("partition-id", 0)), manifest=str(node_config["manifest"]),
                    site_column=node_config.get("site-column"), site=None if site is None else str(site),
                    state_dir=str(node_config["state-dir"]))


def site_rows(spec: SiteSpec):
    """The site's manifest rows (all rows when the node config names no site)."""
    from neuro_ssl.data.manifest import read_manifest
    from neuro_ssl.errors import ManifestError

    df = read_manifest(spec.manifest)
    if spec.site is None:
        return df
    if spec.site_column not in df.columns:
        raise ManifestError(f"{spec.manifest}: no site column '{spec.site_column}' (columns: {', '.join(df.columns[:15])})")
    rows = df[df[spec.site_column].astype(str).str.strip() == spec.site]
    rows.attrs["source"] = f"{spec.manifest} (site {spec.site})"
    return rows


def local_update(spec: SiteSpec, arrays: Mapping[str, np.ndarray], plan: Mapping[str, Any]
                 ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Train on the site's rows from ``arrays``; return (tensors to send, metrics). No Flower types."""
    import torch

    from neuro_ssl.data.screening import write_skipped
    from neuro_ssl.federated.params import norm_keys, to_numpy, travelling_keys
    from neuro_ssl.training.config import PretrainConfig
    from neuro_ssl.training.loop import DistInfo, count_batches_or_fail
    from neuro_ssl.training.pretrain import Pretrainer
    from neuro_ssl.training.pretrain_data import build_train_data

    started = time.perf_counter()
    cfg = PretrainConfig.from_dict(json.loads(str(plan["pretrain"]))).validate()
    rnd, epochs = int(plan["server-round"]), int(plan["local-epochs"])
    keep_norm = bool(plan.get("keep-local-norm", False))
    state_dir = Path(spec.state_dir)
    data = build_train_data(site_rows(spec), cfg, DistInfo(), log=lambda m: _say(spec, m))
    if data.skipped_rows:
        write_skipped(state_dir, data.skipped_rows)
    count_batches_or_fail(data.n_items, cfg.batch_size, 1, f"site {spec.name}")
    weights = {k: torch.from_numpy(np.asarray(v)) for k, v in arrays.items()}
    if keep_norm:
        weights.update(_load_local_norm(state_dir, rnd - 1))
    # the trainer's own folder is never created: train_from writes no files
    trainer = Pretrainer(cfg, state_dir / "trainer", DistInfo(), resume=False)
    state, rows = trainer.train_from(data, weights, epochs, start_epoch=(rnd - 1) * epochs,
                                     proximal_mu=float(plan.get("proximal-mu", 0.0)))
    send = set(arrays) | set(travelling_keys(trainer.model, keep_norm))  # + the objective's own tensors, if any
    if keep_norm:
        local = {k for k in norm_keys(trainer.model) if torch.is_floating_point(state[k])}
        _save_local_norm(state_dir, rnd, {k: state[k] for k in local})
        if plan.get("return-norm"):
            send |= local
    metrics = {"num-examples": int(data.n_items), "loss": float(rows[-1]["loss"]),
               "steps": int(trainer.steps_per_epoch * epochs), "seconds": float(time.perf_counter() - started),
               "skipped": int(sum(data.skipped.values())), "partition-id": int(spec.partition)}
    _say(spec, f"round {rnd}: {epochs} local epoch(s) on {data.n_items} scan(s), loss {metrics['loss']:.4f}")
    return to_numpy(state, sorted(send)), metrics


def _load_local_norm(state_dir: Path, rnd: int) -> dict:
    import torch

    path = state_dir / LOCAL_NORM_DIR / f"round_{rnd:04d}.pt"
    return torch.load(path, map_location="cpu", weights_only=True) if rnd >= 1 and path.exists() else {}


def _save_local_norm(state_dir: Path, rnd: int, state: dict) -> None:
    """This round's local norm layers (atomic); rounds before the previous one are removed."""
    from neuro_ssl._utils.files import torch_save

    folder = state_dir / LOCAL_NORM_DIR
    torch_save(state, folder / f"round_{rnd:04d}.pt")
    for old in folder.glob("round_*.pt"):
        if old.stem < f"round_{rnd - 1:04d}":
            old.unlink(missing_ok=True)


def _say(spec: SiteSpec, message: str) -> None:
    print(f"neuro-ssl federate [site {spec.name}]: {message}", file=sys.stderr, flush=True)


def handle_train(msg, context, sites: Sequence[SiteSpec] | None = None):
    """Flower train handler: a reply with ``arrays`` + ``metrics``, or an error naming only the exception class."""
    from flwr.app import Array, ArrayRecord, Error, Message, MetricRecord, RecordDict
    from flwr.common.constant import ErrorCode

    spec = None
    try:
        node = context.node_config
        spec = sites[int(node["partition-id"])] if sites else site_from_node_config(node)
        arrays = {k: v.numpy() for k, v in msg.content["arrays"].items()}
        out, metrics = local_update(spec, arrays, dict(msg.content["config"]))
    except Exception as exc:  # noqa: BLE001 - reported to the server without details, in full locally
        where = f"{spec.name} (partition {spec.partition})" if spec is not None else "unknown"
        print(f"neuro-ssl federate [site {where}]: round failed: {exc}\n{traceback.format_exc()}",
              file=sys.stderr, flush=True)
        reason = f"site {where}: {type(exc).__name__}; the message is in the site's own log"
        return Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=reason), reply_to=msg)
    content = RecordDict({"arrays": ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in out.items()}),
                          "metrics": MetricRecord(metrics)})
    return Message(content, reply_to=msg)


def build_client_app(sites: Sequence[SiteSpec] | None = None):
    """A ClientApp; ``sites`` (by partition id) for the simulation, else each SuperNode's node config."""
    from flwr.clientapp import ClientApp

    app = ClientApp()
    table = tuple(sites) if sites else None

    @app.train()
    def train(msg, context):
        return handle_train(msg, context, table)

    return app
