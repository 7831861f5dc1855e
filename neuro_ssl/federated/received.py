"""``--record-received``: write down everything the server received from the sites, for audit.

For every round, ``RUN/received/round_NNN/`` holds ``sent.npz`` (the global tensors sent out),
``sent.json`` (the round's plan sent with them: round, options, FedProx mu) and, per reply,
``node_<id>.json`` (every record of the message, by record type: arrays as dtype + shape,
metrics and configs with their values, or the error) and ``node_<id>.npz`` (the arrays
themselves). The description is generic (nothing is filtered), so an ethics board, or a
test, can check that only parameters and counts ever arrive.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np

from neuro_ssl._utils.files import atomic_path, write_json

FOLDER = "received"


def describe(msg) -> dict[str, Any]:
    """Every part of a received Flower ``Message``: its metadata, its error or all its records."""
    from flwr.app import ArrayRecord, ConfigRecord, MetricRecord

    meta = msg.metadata
    out: dict[str, Any] = {"src_node_id": int(meta.src_node_id), "message_type": str(meta.message_type),
                           "group_id": str(meta.group_id)}
    if msg.has_error():
        out["error"] = {"code": int(msg.error.code), "reason": msg.error.reason}
        return out
    records: dict[str, Any] = {}
    for name, record in msg.content.items():
        if isinstance(record, ArrayRecord):
            items = {k: {"dtype": str(v.numpy().dtype), "shape": list(v.numpy().shape)} for k, v in record.items()}
            records[name] = {"type": "ArrayRecord", "items": items}
        elif isinstance(record, (MetricRecord, ConfigRecord)):
            items = {k: (f"<{len(v)} bytes>" if isinstance(v, bytes) else v) for k, v in record.items()}
            records[name] = {"type": type(record).__name__, "items": items}
        else:
            records[name] = {"type": type(record).__name__, "items": repr(record)}
    out["records"] = records
    return out


def record_round(run_dir: Path, rnd: int, sent: dict[str, np.ndarray], plan: dict[str, Any], replies: Iterable) -> Path:
    """Write what was sent (tensors, plan) and everything received in round ``rnd``; returns the folder."""
    from flwr.app import ArrayRecord

    folder = Path(run_dir) / FOLDER / f"round_{int(rnd):03d}"
    _save_npz(folder / "sent.npz", sent)
    write_json(folder / "sent.json", plan)
    for msg in replies:
        node = int(msg.metadata.src_node_id)
        write_json(folder / f"node_{node}.json", describe(msg))
        if not msg.has_error():
            arrays = {f"{name}/{k}": v.numpy() for name, record in msg.content.items()
                      if isinstance(record, ArrayRecord) for k, v in record.items()}
            _save_npz(folder / f"node_{node}.npz", arrays)
    return folder


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
