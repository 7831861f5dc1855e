"""Encoder embeddings, one row per scan: ``subject_id, session_id, f0 .. f{D-1}``.

The encoder comes from a pretraining run (``encoder.pt``) or a fine-tuned model (``model.pt``,
its ``.encoder``); the preprocessing is read from its meta, so embeddings are always computed
on the grid the encoder was trained on. ``projection=True`` appends the SimCLR projection head
(read from the pretraining run's ``checkpoint.pt`` beside ``encoder.pt``) and returns ``z``
instead of ``h``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from neuro_ssl.errors import CheckpointError, ConfigError, ManifestError
from neuro_ssl.evaluation.cluster import KEYS, feature_columns
from neuro_ssl.evaluation.inference import forward_dataset, make_dataset

#: the format of training checkpoints (training.loop.TRAIN_CHECKPOINT_FORMAT; evaluation may not import training)
TRAIN_CHECKPOINT_FORMAT = "neuro-ssl-train-checkpoint/1"


def load_embedding_network(encoder_path: str | Path | None = None, run: str | Path | None = None,
                           projection: bool = False) -> tuple[torch.nn.Module, dict]:
    """``(network, meta)``: the encoder of ``encoder_path`` or of ``run``'s model.pt (+ projection head)."""
    from neuro_ssl.models import load_encoder, load_model

    if (encoder_path is None) == (run is None):
        raise ConfigError("give exactly one of --encoder RUN/encoder.pt or --run RUN (with model.pt)")
    if run is not None:
        if projection:
            raise ConfigError("--projection needs a pretraining --encoder (a fine-tuned model has no projection head)")
        path = Path(run) / "model.pt" if Path(run).is_dir() else Path(run)
        model, meta = load_model(path)
        return model.encoder, meta
    encoder, meta = load_encoder(encoder_path)
    if not projection:
        return encoder, meta
    head = _projection_head(Path(encoder_path), encoder.out_features)
    return torch.nn.Sequential(encoder, head).eval(), meta


def _projection_head(encoder_path: Path, in_features: int) -> torch.nn.Module:
    from neuro_ssl.models import ProjectionHead, read_checkpoint, strip_prefixes

    checkpoint = encoder_path.parent / "checkpoint.pt"
    if not checkpoint.exists():
        raise CheckpointError(f"{checkpoint}: --projection needs the pretraining checkpoint beside {encoder_path.name}")
    state = read_checkpoint(checkpoint, TRAIN_CHECKPOINT_FORMAT)
    dims = tuple(int(d) for d in dict(state.get("config", {})).get("proj_dims", ()))
    weights = {k[len("head."):]: v for k, v in strip_prefixes(state.get("model", {})).items() if k.startswith("head.")}
    if not dims or not weights:
        raise CheckpointError(f"{checkpoint}: holds no projection head (not a contrastive pretraining run?)")
    head = ProjectionHead(in_features, dims)
    try:
        head.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{checkpoint}: projection head does not fit ({' '.join(str(exc).split())[:200]})") from None
    return head.eval()


def compute_embeddings(network: torch.nn.Module, meta: dict, manifest: pd.DataFrame, cache_dir=None,
                       batch_size: int = 8, device: str = "cpu", workers: int = 0,
                       skip_bad: bool = False) -> pd.DataFrame:
    """One row per scan (session) of ``manifest``: keys, then ``f0 .. f{D-1}`` (float32 precision)."""
    if "preprocess" not in meta:
        raise CheckpointError("the weights file's meta has no 'preprocess' section; cannot rebuild the preprocessing")
    from neuro_ssl.data.screening import screen_rows

    manifest, skipped = screen_rows(manifest, skip_bad=skip_bad)
    dataset = make_dataset(manifest, meta["preprocess"], cache_dir, (), skip_bad)
    features, rows = forward_dataset(network.to(device), dataset, batch_size, device, workers, "embed")
    table = manifest.loc[rows, KEYS].astype(str).reset_index(drop=True)
    feats = pd.DataFrame(features.astype(np.float32), columns=[f"f{k}" for k in range(features.shape[1])])
    out = pd.concat([table, feats], axis=1)
    out.attrs["skipped"] = skipped + list(dataset.skipped)
    return out


def read_embeddings(path: str | Path) -> pd.DataFrame:
    """Read an embeddings.csv, checking its keys and features; identifiers stay strings."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: embeddings file not found")
    table = pd.read_csv(path, dtype={"subject_id": str, "session_id": str})
    missing = [k for k in KEYS if k not in table.columns]
    features = feature_columns(table)
    if missing or not features:
        raise ManifestError(f"{path}: not an embeddings table (needs subject_id, session_id, f0..fD-1; "
                            f"missing {', '.join(missing) or 'f0..'})")
    table.index = pd.RangeIndex(2, 2 + len(table))
    numeric = table[features].apply(pd.to_numeric, errors="coerce")
    bad = numeric.isna().any(axis=1) | ~np.isfinite(numeric.to_numpy(float)).all(axis=1)
    if bad.any():
        raise ManifestError(f"{path} row {bad.idxmax()}: missing or non-finite feature values")
    dup = table.duplicated(KEYS)
    if dup.any():
        row = dup.idxmax()
        raise ManifestError(f"{path} row {row}: second row for subject {table.at[row, 'subject_id']} "
                            f"session {table.at[row, 'session_id']}")
    table[features] = numeric
    table.attrs["source"] = str(path)
    return table
