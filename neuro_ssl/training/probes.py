"""Online probes: how much age and diagnosis a frozen encoder's embeddings hold.

Every ``probe_every`` epochs pretraining embeds a held-out manifest (deterministic preprocessing,
no augmentation) and fits, with cross-validation on that probe set grouped by subject (one
person's scans never sit on both sides of a fold):

- ridge regression of age -> ``probe_age_mae`` (years, mean absolute error of out-of-fold predictions);
- logistic regression of diagnosis -> ``probe_dx_auc`` (binary AUC, or macro one-vs-rest AUC),
  when at least two classes with enough scans exist.

Features are standardized inside each fold (:class:`FlooredScaler`: a feature's scale is never
below a tenth of the mean feature scale, so a feature that is nearly constant on the training
fold cannot be blown up into a huge value on the held-out one); ridge's penalty is chosen by an
inner efficient leave-one-out search over a log grid, so a probe measures the embedding, not a
tuned threshold.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

RIDGE_ALPHAS = np.logspace(-2, 5, 15)


@torch.no_grad()
def embed_dataset(encoder: torch.nn.Module, dataset, batch_size: int = 8, device: str | torch.device = "cpu",
                  amp: str = "none", channel: int | None = None) -> np.ndarray:
    """Encoder features (N, F) of every item ``{"image": (C, X, Y, Z)}`` of ``dataset``, in order.

    ``channel``: feed only that channel (a cross-modal ``--views`` run's 1-channel encoder on
    sessions that stack both modalities)."""
    from neuro_ssl.training.loop import autocast

    device = torch.device(device)
    was_training = encoder.training
    encoder.eval()
    chunks = []
    try:
        for start in range(0, len(dataset), batch_size):
            images = torch.stack([dataset[i]["image"] for i in range(start, min(start + batch_size, len(dataset)))])
            if channel is not None:
                images = images[:, channel:channel + 1]
            with autocast(amp, device):
                chunks.append(encoder(images.to(device)).float().cpu())
    finally:
        encoder.train(was_training)
    return torch.cat(chunks).numpy().astype(np.float64) if chunks else np.zeros((0, 0))


def floored_scale(std: np.ndarray, floor: float = 0.1) -> np.ndarray:
    """Per-feature scales (F,): each standard deviation, floored at ``floor`` x their mean; 1 where
    every feature is constant. Used by :class:`FlooredScaler` and fine-tuning's linear head."""
    std = np.asarray(std, dtype=np.float64)
    typical = float(std.mean()) if std.size else 0.0
    scale = np.maximum(std, floor * typical) if typical > 0 else np.ones_like(std)
    scale[scale == 0] = 1.0
    return scale


class FlooredScaler:
    """Per-feature standardization whose scales are floored at ``floor`` x the mean feature scale.

    ``StandardScaler`` divides by each feature's own standard deviation. Random and ReLU encoders
    have features that are (nearly) zero on almost every scan: a training-fold standard deviation
    of 1e-5 turns a held-out value of 0.1 into 10^4 standard deviations, and one such feature can
    put a ridge prediction thousands of years away (seen on a random resnet10: MAE 379 years where
    predicting the mean age gives 4.7). With the floor such a feature is scaled like a typical
    one; when every feature's scale is above the floor this *is* ``StandardScaler`` (tested).
    ``fit(x)`` with x (N, F); ``transform`` returns (N, F) float64; all-constant input gives scale 1.
    """

    def __init__(self, floor: float = 0.1):
        self.floor = floor

    def get_params(self, deep: bool = True) -> dict:
        return {"floor": self.floor}

    def set_params(self, **params):
        for key, value in params.items():
            setattr(self, key, value)
        return self

    def fit(self, x, y=None):
        x = np.asarray(x, dtype=np.float64)
        self.mean_ = x.mean(axis=0)
        self.scale_ = floored_scale(x.std(axis=0), self.floor)
        return self

    def transform(self, x):
        return (np.asarray(x, dtype=np.float64) - self.mean_) / self.scale_

    def fit_transform(self, x, y=None):
        return self.fit(x).transform(x)


def _folds(groups: np.ndarray, n_splits: int) -> int:
    return int(min(n_splits, len(np.unique(groups))))


def ridge_age_mae(features: np.ndarray, age: np.ndarray, groups: np.ndarray, n_splits: int = 5) -> float:
    """Out-of-fold MAE (in age units) of standardized ridge regression, folds grouped by subject."""
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import GroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline

    keep = np.isfinite(age)
    x, y, g = features[keep], age[keep], np.asarray(groups)[keep]
    k = _folds(g, n_splits)
    if k < 2 or len(y) < 4:
        return float("nan")
    model = make_pipeline(FlooredScaler(), RidgeCV(alphas=RIDGE_ALPHAS))
    predicted = cross_val_predict(model, x, y, groups=g, cv=GroupKFold(n_splits=k))
    return float(np.mean(np.abs(predicted - y)))


def diagnosis_auc(features: np.ndarray, labels: np.ndarray, groups: np.ndarray, n_splits: int = 5,
                  seed: int = 0) -> float:
    """Out-of-fold AUC of standardized logistic regression, folds grouped by subject.

    NaN unless there are >= 2 classes of >= 2 scans and >= 2 subjects each, and every training
    fold holds every class (a small validation manifest: no AUC rather than an error).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline

    labels = np.asarray(labels, dtype=object)
    keep = np.array([isinstance(v, str) and v != "" for v in labels])
    x, y, g = features[keep], labels[keep], np.asarray(groups)[keep]
    classes, counts = np.unique(y.astype(str), return_counts=True) if len(y) else (np.array([]), np.array([]))
    if len(classes) < 2 or counts.min() < 2:
        return float("nan")
    y = y.astype(str)
    subjects_per_class = min(len(np.unique(g[y == c])) for c in classes)
    k = min(_folds(g, n_splits), subjects_per_class)
    if k < 2:
        return float("nan")
    folds = list(StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed).split(x, y, g))
    if any(len(np.unique(y[train])) < len(classes) for train, _ in folds):
        return float("nan")  # a few subjects per class: some training fold would miss a class
    model = make_pipeline(FlooredScaler(), LogisticRegression(C=1.0, max_iter=2000))
    proba = cross_val_predict(model, x, y, cv=folds, method="predict_proba")
    if len(classes) == 2:
        return float(roc_auc_score(y.astype(str) == classes[1], proba[:, 1]))
    return float(roc_auc_score(y.astype(str), proba, multi_class="ovr", average="macro", labels=classes))


def probe_embeddings(features: np.ndarray, manifest, seed: int = 0) -> dict[str, Any]:
    """Both probes on precomputed features, one row of ``manifest`` (age, diagnosis, subject_id) each."""
    age = manifest["age"].to_numpy(dtype=float) if "age" in manifest else np.full(len(manifest), np.nan)
    groups = manifest["subject_id"].astype(str).to_numpy() if "subject_id" in manifest else np.arange(len(manifest))
    diagnosis = (manifest["diagnosis"].where(manifest["diagnosis"].notna(), None).to_numpy(dtype=object)
                 if "diagnosis" in manifest else np.full(len(manifest), None, dtype=object))
    out = {
        "probe_age_mae": ridge_age_mae(features, age, groups),
        "probe_dx_auc": diagnosis_auc(features, diagnosis, groups, seed=seed),
        "probe_n": int(len(features)),
    }
    if not np.isfinite(out["probe_age_mae"]):
        out["probe_age_note"] = age_probe_gap(age, groups)
    if not np.isfinite(out["probe_dx_auc"]):
        out["probe_dx_note"] = diagnosis_probe_gap(diagnosis, groups)
    return out


def age_probe_gap(age: np.ndarray, groups: np.ndarray) -> str:
    """Why the age probe has no value on this probe set (it needs 4 scans with an age, 2 subjects)."""
    known = np.isfinite(np.asarray(age, dtype=float))
    n_subjects = len(np.unique(np.asarray(groups)[known]))
    if known.sum() < 4:
        return f"only {int(known.sum())} probe scan(s) have an age; the probe needs 4"
    return f"the probe scans with an age come from {n_subjects} subject(s); a grouped cross-validation needs 2"


def diagnosis_probe_gap(labels: np.ndarray, groups: np.ndarray) -> str:
    """Why the diagnosis probe has no AUC on this probe set, in words (e.g. ``only CN in the probe set``)."""
    labels = np.asarray(labels, dtype=object)
    keep = np.array([isinstance(v, str) and v != "" for v in labels], dtype=bool)
    if not keep.any():
        return "no probe scan has a diagnosis"
    y, g = labels[keep].astype(str), np.asarray(groups)[keep]
    classes = sorted(set(y))
    if len(classes) < 2:
        return f"only {classes[0]} in the probe set ({int(keep.sum())} scan(s)); an AUC needs two diagnoses"
    scans = {c: int((y == c).sum()) for c in classes}
    subjects = {c: len(np.unique(g[y == c])) for c in classes}
    few = [c for c in classes if scans[c] < 2 or subjects[c] < 2]
    if few:
        shown = ", ".join(f"{c} {subjects[c]} subject(s)/{scans[c]} scan(s)" for c in few)
        return f"too few probe scans of {shown}; each diagnosis needs 2 subjects"
    counts = ", ".join(f"{c} {subjects[c]}" for c in classes)
    return f"too few subjects per diagnosis ({counts}) for every cross-validation fold to hold each one"


def run_probes(encoder: torch.nn.Module, dataset, manifest, batch_size: int = 8, device="cpu",
               amp: str = "none", seed: int = 0, channel: int | None = None) -> dict[str, Any]:
    """Embed ``dataset`` (rows aligned with ``manifest``) with the frozen encoder and run both probes."""
    features = embed_dataset(encoder, dataset, batch_size=batch_size, device=device, amp=amp, channel=channel)
    return probe_embeddings(features, manifest, seed=seed)
