"""Label-free quality of one frozen encoder on the held-out scans.

The encoder embeds every held-out scan (its own preprocessing, no augmentation) and two
augmented views of each (the product's view transform, :class:`~neuro_ssl.data.views.TwoViewDataset`,
seeded so every encoder sees the same views). From these features (the encoder's pooled
output ``h``, the representation fine-tuning starts from):

- ``age_mae_years``: out-of-fold MAE of standardized ridge regression of age, folds grouped by
  subject (:func:`neuro_ssl.training.probes.ridge_age_mae`, the online probe of pretraining);
- ``knn_accuracy`` (classification label) or ``knn_mae`` (regression label): the kNN probe of
  :func:`neuro_ssl.evaluation.representation.knn_score`, folds grouped by subject;
- ``alignment`` of the view pairs and ``uniformity`` of the clean embeddings (Wang & Isola,
  ICML 2020, arXiv:2005.10242; :mod:`neuro_ssl.evaluation.representation`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch


def label_free_metrics(encoder: torch.nn.Module, meta: dict, heldout: pd.DataFrame, spec, *, augment: dict,
                       seed: int, knn_k: int = 5, cache_dir=None, batch_size: int = 8, device: str = "cpu",
                       workers: int = 0, skip_bad: bool = False) -> dict[str, Any]:
    """The label-free metrics of ``encoder`` on the ``heldout`` manifest rows (see the module doc)."""
    from neuro_ssl.data.views import AugmentConfig, TwoViewDataset
    from neuro_ssl.evaluation.inference import forward_dataset, make_dataset
    from neuro_ssl.evaluation.representation import alignment, knn_score, uniformity
    from neuro_ssl.training.probes import ridge_age_mae

    dataset = make_dataset(heldout, meta["preprocess"], cache_dir, (), skip_bad)
    features, rows = forward_dataset(encoder.to(device), dataset, batch_size, device, workers)
    scans = heldout.loc[rows]
    groups = scans["subject_id"].astype(str).to_numpy()
    age = pd.to_numeric(scans["age"], errors="coerce").to_numpy(float) if "age" in scans else np.full(len(scans), np.nan)
    pairs = TwoViewDataset(dataset, AugmentConfig.from_dict(dict(augment)), seed=seed)
    view1, view2 = _view_features(encoder, pairs, batch_size, device)
    knn_name = "knn_accuracy" if spec.task == "classification" else "knn_mae"
    return {
        "n_scans": int(len(scans)), "n_subjects": int(len(set(groups))), "features": int(features.shape[1]),
        "age_mae_years": ridge_age_mae(features, age, groups),
        knn_name: knn_score(features, _targets(heldout, rows, spec), groups, spec.task, k=knn_k),
        "alignment": alignment(view1, view2),
        "uniformity": uniformity(features),
    }


def _targets(heldout: pd.DataFrame, rows: np.ndarray, spec) -> np.ndarray:
    """The study label per embedded scan (class code or number); NaN where it has none."""
    from neuro_ssl.evaluation.labels import TARGET, prepare_labels

    labelled, _ = prepare_labels(heldout, spec.label, spec.task, spec.classes)
    return labelled[TARGET].astype(float).reindex(rows).to_numpy(float)


@torch.no_grad()
def _view_features(encoder: torch.nn.Module, pairs, batch_size: int, device: str) -> tuple[np.ndarray, np.ndarray]:
    """Encoder features (N, F) of view 1 and of view 2 of every item, each view drawn once."""
    was_training = encoder.training
    encoder.eval()
    first, second = [], []
    try:
        for start in range(0, len(pairs), batch_size):
            items = [pairs[i] for i in range(start, min(start + batch_size, len(pairs)))]
            for key, out in (("view1", first), ("view2", second)):
                images = torch.stack([item[key] for item in items]).to(device)
                out.append(encoder(images).double().cpu())
    finally:
        encoder.train(was_training)
    return torch.cat(first).numpy(), torch.cat(second).numpy()
