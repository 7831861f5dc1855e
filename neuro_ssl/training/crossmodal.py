"""Cross-modal evaluation of a pretraining run on held-out scans (``RUN/retrieval.json``).

Written at the end of pretraining on ``--val-manifest``, and by ``neuro-ssl evaluate-retrieval``
on any manifest (subjects seen in pretraining refused unless ``--allow-overlap``):

- a CLIP run (``--loss clip``, ``yaware+clip``, ``simclr+clip``): ``image_to_clinical`` (each scan
  queries the clinical rows of the n held-out scans; its own row is the match) and
  ``clinical_to_image``; with ``--views`` the image is the first view's modality;
- a run with ``--views A,B`` (any loss): ``A_to_B`` and ``B_to_A`` between the projections z of the
  two modalities of each held-out session;

each ``{"recall_at_1", "recall_at_5", "recall_at_10", "median_rank", "chance_at_5", "n"}``
(``evaluation.retrieval``). A CLIP run whose training rows had a diagnosis also writes
``prototype_classification.json``: held-out scans classified by the nearest class prototype
(the embedded median clinical profile of each class in the training rows), with its AUC.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from neuro_ssl._utils.files import write_json
from neuro_ssl.errors import CheckpointError, ConfigError, ManifestError
from neuro_ssl.evaluation.retrieval import cosine_similarity, prototype_classification, retrieval_metrics
from neuro_ssl.training.clip import ClinicalAlignment

RETRIEVAL_FILE = "retrieval.json"
PROTOTYPE_FILE = "prototype_classification.json"
DEFAULT_CLASSES = ("CN", "AD")


class _Embedder(nn.Module):
    """Items (B, C, X, Y, Z) -> projections z, one (B, D) block per view modality (or one block)."""

    def __init__(self, model: nn.Module, n_views: int):
        super().__init__()
        self.model, self.n_views = model, n_views

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.n_views:
            return self.model(x)[1]
        return torch.cat([self.model(x[:, c:c + 1])[1] for c in range(self.n_views)], dim=1)


def is_cross_modal(config, alignment: ClinicalAlignment | None) -> bool:
    return alignment is not None or bool(config.views)


def check_held_out(alignment: ClinicalAlignment | None, frame: pd.DataFrame) -> None:
    """Refuse, before any training, a held-out manifest the final evaluation could not featurize."""
    if alignment is not None:
        alignment.featurizer.transform(frame)


def cross_modal_metrics(model: nn.Module, alignment: ClinicalAlignment | None, config, dataset,
                        frame: pd.DataFrame, device, batch_size: int = 8, amp: str = "none",
                        classes: Sequence[str] | None = None) -> tuple[dict, dict | None]:
    """``(retrieval, prototype classification or None)`` of the items of ``dataset`` (rows of ``frame``)."""
    from neuro_ssl.evaluation.inference import forward_dataset

    n_views = len(config.views)
    outputs, rows = forward_dataset(_Embedder(model, n_views), dataset, batch_size, device, amp=amp)
    blocks = np.split(outputs, max(n_views, 1), axis=1)
    scans = frame.loc[rows]
    scans.attrs = dict(frame.attrs)
    retrieval, prototypes = {}, None
    if alignment is not None:
        with torch.no_grad():
            image = alignment.embed_image(torch.as_tensor(blocks[0], dtype=torch.float32, device=device)).cpu().numpy()
            clinical = alignment.embed_clinical(alignment.featurizer.transform(scans)).cpu().numpy()
        similarity = cosine_similarity(image, clinical)
        retrieval["image_to_clinical"] = retrieval_metrics(similarity)
        retrieval["clinical_to_image"] = retrieval_metrics(similarity.T)
        prototypes = _prototypes(alignment, image, scans, classes)
    if n_views:
        a, b = config.views
        similarity = cosine_similarity(blocks[0], blocks[1])
        retrieval[f"{a}_to_{b}"] = retrieval_metrics(similarity)
        retrieval[f"{b}_to_{a}"] = retrieval_metrics(similarity.T)
    return retrieval, prototypes


def _prototypes(alignment: ClinicalAlignment, image: np.ndarray, scans: pd.DataFrame,
                classes: Sequence[str] | None) -> dict | None:
    """Nearest-prototype classification of the held-out scans, or None when it cannot be scored."""
    from neuro_ssl.data.clinical import ClinicalFeatures
    from neuro_ssl.evaluation.labels import class_codes

    stored = alignment.prototypes
    label = stored.get("label")
    if not stored or label not in scans.columns:
        return None
    known = list(stored["classes"])
    if classes is None:  # automatic (end of pretraining): CN vs AD when both exist, else every class
        classes = DEFAULT_CLASSES if set(DEFAULT_CLASSES) <= set(known) else tuple(known)
        if len(classes) < 2:
            return None
    unknown = [c for c in classes if c not in known]
    if unknown or len(classes) < 2:
        raise ConfigError(f"--classes {','.join(classes)}: prototypes exist for {', '.join(known) or 'no class'} "
                          f"(the {label} values of the training rows); give at least two of them")
    picks = [known.index(c) for c in classes]
    profiles = ClinicalFeatures(np.asarray([stored["values"][i] for i in picks], dtype=np.float32),
                                np.asarray([stored["missing"][i] for i in picks], dtype=bool), [])
    with torch.no_grad():
        embedded = alignment.embed_clinical(profiles).cpu().numpy()
    codes = class_codes(scans[label], tuple(classes), label)
    keep = codes >= 0
    if not keep.any():
        return None
    result = prototype_classification(cosine_similarity(image[keep], embedded), codes[keep], classes)
    return {"label": label, **result, "prototype_n": {c: int(stored["n"][i]) for c, i in zip(classes, picks)}}


def write_cross_modal(out_dir: Path, retrieval: dict, prototypes: dict | None) -> None:
    """RUN/retrieval.json and, when scored, RUN/prototype_classification.json (atomic writes)."""
    write_json(Path(out_dir) / RETRIEVAL_FILE, retrieval)
    if prototypes is not None:
        write_json(Path(out_dir) / PROTOTYPE_FILE, prototypes)


def load_cross_modal_run(run: str | Path):
    """``(model, alignment or None, config, subjects)`` of a pretraining run folder (weights-only loading)."""
    from neuro_ssl.models import ContrastiveModel, ProjectionHead, build_encoder, read_meta, strip_prefixes
    from neuro_ssl.training.clip import alignment_from_state
    from neuro_ssl.training.config import PretrainConfig
    from neuro_ssl.training.loop import load_checkpoint

    run = Path(run)
    path = run / "checkpoint.pt"
    if not run.is_dir() or not path.is_file():
        raise CheckpointError(f"{run}: not a pretraining run folder (no checkpoint.pt)")
    state = load_checkpoint(path)
    config = PretrainConfig.from_dict(state.get("config") or {})
    weights = strip_prefixes(state.get("model") or {})
    encoder = build_encoder(config.arch, config.in_channels, config.norm, config.width)
    model = ContrastiveModel(encoder, ProjectionHead(encoder.out_features, config.proj_dims))
    try:
        model.load_state_dict({k: v for k, v in weights.items() if not k.startswith("extras.")}, strict=True)
        alignment = alignment_from_state(config, weights)
    except (RuntimeError, KeyError, ValueError) as exc:
        raise CheckpointError(f"{path}: weights do not fit the run's config ({' '.join(str(exc).split())[:200]})") from None
    if not is_cross_modal(config, alignment):
        raise CheckpointError(f"{run}: pretrained with --loss {config.loss} and no --views: nothing cross-modal to "
                          f"retrieve (use --loss clip with --clinical, or --views MOD1,MOD2)")
    meta_path = run / "encoder.pt"
    subjects = read_meta(meta_path).get("subjects", []) if meta_path.is_file() else []
    return model.eval(), alignment, config, subjects


def evaluate_retrieval(run: str | Path, manifest: pd.DataFrame, out_dir: str | Path, classes=None,
                       allow_overlap: bool = False, cache_dir=None, batch_size: int = 8, device: str = "cpu",
                       skip_bad: bool = False) -> dict:
    """Cross-modal metrics of ``run`` on ``manifest``, written to ``out_dir``; returns
    ``{"retrieval", "prototype_classification", "overlap_subjects", "skipped"}``."""
    from neuro_ssl.data.screening import screen_rows, write_skipped
    from neuro_ssl.evaluation.inference import make_dataset
    from neuro_ssl.evaluation.leakage import check_leakage

    model, alignment, config, subjects = load_cross_modal_run(run)
    source = manifest.attrs.get("source", "manifest")
    manifest, skipped = screen_rows(manifest, skip_bad=skip_bad)
    overlap = check_leakage(subjects, manifest["subject_id"], allow_overlap, source=str(run), target=source)
    dataset = make_dataset(manifest, config.preprocess_dict(), cache_dir, (), skip_bad)
    if len(dataset) < 2:
        raise ManifestError(f"{source}: retrieval needs at least 2 scans, found {len(dataset)}")
    check_held_out(alignment, dataset.frame)
    if alignment is not None:
        alignment.to(device)
    retrieval, prototypes = cross_modal_metrics(model.to(device), alignment, config, dataset, manifest,
                                                device, batch_size, classes=classes)
    out_dir = Path(out_dir)
    write_cross_modal(out_dir, retrieval, prototypes)
    skipped = skipped + list(dataset.skipped)
    write_skipped(out_dir, skipped)
    return {"retrieval": retrieval, "prototype_classification": prototypes, "overlap_subjects": len(overlap),
            "skipped": [s.reason for s in skipped]}
