"""Round checkpoints, the run's state file and the ordinary ``encoder.pt`` a federated run leaves.

``RUN/checkpoint.pt`` (atomic, ``weights_only``): the finished round, the global model's full state
dict, the metrics rows so far and the options. ``RUN/federation.json``: the plan the coordinator
wrote (sites, subjects, minimum clients) plus the server's progress (state, round, error).
``RUN/encoder.pt``: ``models.save_encoder`` with the preprocessing and the subjects of the sites,
rewritten after every round, so finetune, embed, study and saliency take it like any other.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from neuro_ssl._utils.files import write_json
from neuro_ssl.errors import ConfigError
from neuro_ssl.federated.config import RESUMABLE_CHANGES, FederatedConfig
from neuro_ssl.training.config import PretrainConfig

CHECKPOINT = "checkpoint.pt"
STATE_FILE = "federation.json"


def build_model(cfg: PretrainConfig) -> torch.nn.Module:
    """The contrastive model (encoder + projection head) every site and the server start from."""
    from neuro_ssl._utils.seeding import seed_everything
    from neuro_ssl.models import ContrastiveModel, ProjectionHead, build_encoder

    seed_everything(cfg.seed)  # the same initial weights as Pretrainer builds at each site
    encoder = build_encoder(cfg.arch, cfg.in_channels, cfg.norm, cfg.width)
    return ContrastiveModel(encoder, ProjectionHead(encoder.out_features, cfg.proj_dims))


def save_round(run_dir: Path, cfg: FederatedConfig, rnd: int, state: dict, rows: list[dict]) -> None:
    from neuro_ssl.training.loop import save_checkpoint

    save_checkpoint(run_dir / CHECKPOINT, {"kind": "federated", "config": cfg.to_dict(), "round": int(rnd),
                                           "model": state, "rows": rows})


def load_round(run_dir: Path, cfg: FederatedConfig) -> dict[str, Any] | None:
    """The last finished round's checkpoint (None when there is none); options must match."""
    from neuro_ssl.training.loop import load_checkpoint

    path = run_dir / CHECKPOINT
    if not path.exists():
        return None
    saved = load_checkpoint(path)
    if saved.get("kind") != "federated":
        raise ConfigError(f"{path} is a pretraining checkpoint, not a federated run's: choose a new --out")
    now = cfg.to_dict()
    differ = [k for k in now if k not in RESUMABLE_CHANGES and _norm(saved["config"].get(k)) != _norm(now[k])]
    if differ:
        raise ConfigError(f"{path} was made with other options ({', '.join(differ[:6])}): resume with the same "
                          f"options (e.g. --config {run_dir / 'config.yaml'} --resume) or start a new --out")
    return saved


def read_state(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / STATE_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def update_state(run_dir: Path, **values: Any) -> dict[str, Any]:
    """Merge ``values`` into RUN/federation.json (atomic rewrite); returns the new content."""
    state = {**read_state(run_dir), **values}
    write_json(Path(run_dir) / STATE_FILE, state)
    return state


def write_encoder(run_dir: Path, model: torch.nn.Module, cfg: FederatedConfig, rnd: int,
                  subjects: list[str], sites: list[str]) -> Path:
    """RUN/encoder.pt with the meta later commands read (preprocessing, subjects) plus the federation."""
    from neuro_ssl.models import save_encoder

    p = cfg.pretrain
    meta = {"preprocess": p.preprocess_dict(), "subjects": sorted(subjects), "loss": p.loss,
            "meta_columns": list(p.meta), "sigma": p.sigma, "temperature": p.temperature, "queue": 0,
            "views": list(p.views), "epochs_done": int(rnd) * int(cfg.local_epochs), "seed": p.seed,
            "federated": {"rounds_done": int(rnd), "rounds": int(cfg.rounds), "local_epochs": int(cfg.local_epochs),
                          "strategy": cfg.strategy, "proximal_mu": float(cfg.proximal_mu),
                          "keep_local_norm": bool(cfg.keep_local_norm), "sites": list(sites)}}
    return save_encoder(Path(run_dir) / "encoder.pt", model.encoder, meta)


def _norm(value):
    return [_norm(v) for v in value] if isinstance(value, (list, tuple)) else value
