"""Shortcut audit: how well do trivial per-scan summaries of the model's input predict the label?

A network can reach a high AUC by reading something other than the brain: the background
level that normalization leaves, the step at the edge of the field of view where zero padding
meets it, the intensity scale of a scanner, the head size. Published deep-learning work on ADNI
has been caught reading skull-stripping contours, field strength and site. This audit measures
the risk before any network is trained, on exactly the tensors the model sees (the run's own
preprocessing, through the shared cache):

- image summaries per scan (:data:`IMAGE_FEATURES`): ``background_level`` (median outside the
  brain mask), ``fov_edge_mean`` (mean of the six faces of the model grid, where padding meets
  the volume), ``foreground_mean / _std / _p10 / _p50 / _p90`` (inside the mask) and
  ``brain_mask_volume_ml``; with several channels, one set per modality (``_FDG`` suffix ...);
- covariates from the manifest: age, sex, site and any scanner or field-strength column.

Each feature alone, and all image summaries together, is scored by cross-validation that keeps
every subject's scans in one fold (scikit-learn ``StratifiedGroupKFold``, or ``GroupKFold`` for a
regression label): standardized logistic regression (AUC, balanced accuracy) or ridge (R^2) on
out-of-fold predictions, with a 95 % interval from a bootstrap over subjects. An image summary
with AUC >= :data:`SHORTCUT_AUC` is named as a likely shortcut; covariates are reported as
confounds to balance or adjust for, not errors.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from neuro_ssl.evaluation import metrics as M
from neuro_ssl.evaluation.bootstrap import bootstrap_metrics

IMAGE_FEATURES = ("background_level", "fov_edge_mean", "foreground_mean", "foreground_std", "foreground_p10",
                  "foreground_p50", "foreground_p90", "brain_mask_volume_ml")
ALL_IMAGE = "all_image_summaries"
#: an image summary this predictive (AUC) is named as a likely shortcut.
SHORTCUT_AUC = 0.70
#: summaries that describe acquisition and preprocessing only (the rest describe the brain's
#: intensities, which real diffuse atrophy also moves).
ACQUISITION_FEATURES = ("background_level", "fov_edge_mean")
#: manifest columns taken as covariates: the canonical ones, then any whose name says scanner or field strength.
BASE_COVARIATES = ("age", "sex", "site")
_SCANNER_COLUMN = re.compile(r"scanner|manufacturer|fldstreng|field.?strength|magnet|mfr|model.?name|coil", re.I)
AUDIT_COLUMNS = ("feature", "kind", "auc", "ci_low", "ci_high", "n", "balanced_accuracy", "r2", "metric")


def image_summaries(image: np.ndarray, mask: np.ndarray, voxel_ml: float, names=("",)) -> dict[str, float]:
    """The summaries of one preprocessed scan: ``image`` (C, X, Y, Z), ``mask`` bool (X, Y, Z).

    ``names``: one suffix per channel (``""`` for a single channel). Units: intensities as the
    model sees them; ``brain_mask_volume_ml`` in millilitres (``voxel_ml`` per voxel).
    """
    image = np.asarray(image, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if image.ndim != 4 or image.shape[1:] != mask.shape:
        raise ValueError(f"image (C, X, Y, Z) and mask (X, Y, Z) must match, got {image.shape} and {mask.shape}")
    out: dict[str, float] = {}
    for channel, suffix in zip(image, names):
        inside, outside = channel[mask], channel[~mask]
        faces = np.concatenate([np.take(channel, i, axis=a).ravel() for a in range(3) for i in (0, -1)])
        p10, p50, p90 = np.percentile(inside, [10, 50, 90]) if inside.size else (math.nan,) * 3
        out.update({
            f"background_level{suffix}": float(np.median(outside)) if outside.size else math.nan,
            f"fov_edge_mean{suffix}": float(faces.mean()),
            f"foreground_mean{suffix}": float(inside.mean()) if inside.size else math.nan,
            f"foreground_std{suffix}": float(inside.std()) if inside.size else math.nan,
            f"foreground_p10{suffix}": float(p10), f"foreground_p50{suffix}": float(p50),
            f"foreground_p90{suffix}": float(p90),
        })
    out["brain_mask_volume_ml"] = float(mask.sum() * voxel_ml)
    return out


def covariate_columns(manifest: pd.DataFrame) -> list[str]:
    """age, sex, site and every scanner / field-strength column present with some values."""
    columns = [c for c in BASE_COVARIATES if c in manifest.columns]
    columns += [c for c in manifest.columns if c not in columns and _SCANNER_COLUMN.search(str(c))]
    return [c for c in columns if manifest[c].notna().any()]


def covariate_matrix(values: pd.Series) -> np.ndarray:
    """A numeric column as it is (missing -> NaN); text one-hot, one column per value (missing: none set)."""
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().sum() == values.notna().sum() and values.notna().any():
        return numbers.to_numpy(dtype=np.float64)[:, None]
    dummies = pd.get_dummies(values.astype("string"), dtype=np.float64)
    return dummies.to_numpy() if dummies.shape[1] else np.zeros((len(values), 1))


@dataclass
class Scored:
    """One feature's cross-validated score: the headline metric with its interval."""

    metric: str
    value: float
    ci_low: float
    ci_high: float
    balanced_accuracy: float = math.nan


def cross_validated_predictions(x: np.ndarray, y: np.ndarray, groups: np.ndarray, task: str,
                                folds: int = 5, seed: int = 0) -> np.ndarray:
    """Out-of-fold predictions, every subject's scans in one fold.

    Classification: per-class scores (N, K) of a standardized logistic regression, its decision
    function minus its intercept (``x_std . w_k``). Without the intercept, each fold's scores
    are on one scale: the intercept carries the fold's class balance, and pooling it makes even
    a constant feature look anti-predictive (AUC < 0.5) when the folds differ in balance; this
    way a constant feature scores exactly 0.5. Regression: (N,) of a standardized ridge.
    Missing values are replaced by the training folds' median. Raises ValueError when there are
    too few subjects for 2 folds.
    """
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(x, dtype=np.float64).reshape(len(y), -1)
    x = np.where(np.isfinite(x), x, np.nan)
    if task == "classification":
        out = np.zeros((len(y), int(y.max()) + 1))
        model = lambda: LogisticRegression(C=1.0, max_iter=2000)  # noqa: E731
    else:
        out = np.zeros(len(y))
        model = lambda: Ridge(alpha=1.0)  # noqa: E731
    for train, test in subject_folds(y, groups, task, folds, seed):
        fit = make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler(), model())
        if task == "classification" and len(np.unique(y[train])) < 2:
            continue  # no contrast to learn: every score stays 0 (a tie)
        fit.fit(x[train], y[train])
        if task == "classification":
            out[np.ix_(test, fit.classes_)] = _centred_scores(fit, x[test])
        else:
            out[test] = fit.predict(x[test])
    return out


def subject_folds(y: np.ndarray, groups, task: str, folds: int = 5, seed: int = 0) -> list:
    """``(train, test)`` index pairs with every subject's scans on one side: StratifiedGroupKFold
    (classification; at most as many folds as the rarest class has subjects) or GroupKFold."""
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    codes = pd.factorize(pd.Series(groups).astype(str))[0]
    if task == "classification":
        n_splits = min(folds, min(len(np.unique(codes[y == k])) for k in np.unique(y)))
        splitter = StratifiedGroupKFold(n_splits=max(n_splits, 2), shuffle=True, random_state=seed)
    else:
        n_splits = min(folds, len(np.unique(codes)))
        splitter = GroupKFold(n_splits=max(n_splits, 2))
    if n_splits < 2:
        raise ValueError("fewer than 2 subjects per class: cannot cross-validate by subject")
    return list(splitter.split(np.zeros(len(y)), y, groups=codes))


def _centred_scores(fit, x: np.ndarray) -> np.ndarray:
    """Logistic-regression class scores without the intercept, (n, K) in ``fit.classes_`` order."""
    model = fit[-1]
    decision = fit.decision_function(x) - model.intercept_
    if decision.ndim == 1:  # binary: one score for the second class
        return np.stack([-decision, decision], axis=1)
    return decision


def score_feature(x: np.ndarray, y: np.ndarray, groups: np.ndarray, task: str, folds: int = 5,
                  n_boot: int = 1000, seed: int = 0) -> Scored:
    """Cross-validated AUC (with balanced accuracy) or R^2 of one feature matrix, with a subject bootstrap CI."""
    predictions = cross_validated_predictions(x, y, groups, task, folds, seed)
    if task == "classification":
        def auc_of(y_true, prob):
            return {"auc": M.roc_auc(y_true, prob)}

        interval = bootstrap_metrics(auc_of, y, predictions, groups=groups, n_boot=n_boot, seed=seed, classes=y)["auc"]
        bacc = M.balanced_accuracy(y, predictions.argmax(axis=1), predictions.shape[1])
        return Scored("auc", interval.value, interval.ci_low, interval.ci_high, bacc)
    interval = bootstrap_metrics(lambda t, p: {"r2": r_squared(t, p)}, y, predictions, groups=groups,
                                 n_boot=n_boot, seed=seed)["r2"]
    return Scored("r2", interval.value, interval.ci_low, interval.ci_high)


def r_squared(y_true, y_pred) -> float:
    """1 - SS_res / SS_tot (NaN when the truth is constant)."""
    y_true, y_pred = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    total = float(((y_true - y_true.mean()) ** 2).sum())
    return 1.0 - float(((y_true - y_pred) ** 2).sum()) / total if total > 0 else math.nan


def audit_table(summaries: pd.DataFrame, covariates: pd.DataFrame, y: np.ndarray, groups: np.ndarray,
                task: str, folds: int = 5, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per feature (``AUDIT_COLUMNS``): each image summary, all of them together, each covariate."""
    rows = []
    features = [(c, "image", summaries[[c]].to_numpy()) for c in summaries.columns]
    features.append((ALL_IMAGE, "image", summaries.to_numpy()))
    features += [(c, "covariate", covariate_matrix(covariates[c])) for c in covariates.columns]
    for name, kind, x in features:
        scored = score_feature(x, y, groups, task, folds, n_boot, seed)
        rows.append({"feature": name, "kind": kind, "auc": scored.value if scored.metric == "auc" else math.nan,
                     "ci_low": scored.ci_low, "ci_high": scored.ci_high, "n": int(len(y)),
                     "balanced_accuracy": scored.balanced_accuracy,
                     "r2": scored.value if scored.metric == "r2" else math.nan, "metric": scored.metric})
    return pd.DataFrame(rows, columns=list(AUDIT_COLUMNS))


def shortcuts(table: pd.DataFrame, threshold: float = SHORTCUT_AUC) -> pd.DataFrame:
    """Image summaries whose AUC reaches ``threshold``: single ones by AUC, then all of them together."""
    image = table[(table["kind"] == "image") & (table["auc"] >= threshold)]
    single = image[image["feature"] != ALL_IMAGE].sort_values("auc", ascending=False)
    return pd.concat([single, image[image["feature"] == ALL_IMAGE]])


def verdict(table: pd.DataFrame, threshold: float = SHORTCUT_AUC) -> str:
    """One line: the likely shortcuts, else that none was found; confounds among the covariates."""
    found = shortcuts(table, threshold)
    if table["metric"].eq("r2").all():
        best = table[table["kind"] == "image"].sort_values("r2", ascending=False).head(1)
        head = (f"best image summary {best['feature'].iloc[0]} R^2 {best['r2'].iloc[0]:.2f}" if len(best)
                else "no image summary")
        return f"audit (regression): {head}; compare with the model's own R^2"
    if len(found):
        named = ", ".join(f"{r.feature} (AUC {r.auc:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}])" for r in found.itertuples())
        line = (f"LIKELY SHORTCUT: {named} predict the label without looking at the brain's anatomy; "
                "a network can do as well from them")
        if not found["feature"].isin(ACQUISITION_FEATURES).all():
            line += (" (intensity summaries also move with real diffuse atrophy: the covariates and the "
                     "saliency maps tell scanner from disease)")
    else:
        best = table[table["kind"] == "image"].sort_values("auc", ascending=False).head(1)
        line = (f"no likely shortcut: every image summary has AUC < {threshold:.2f} "
                f"(highest {best['feature'].iloc[0]} {best['auc'].iloc[0]:.2f})") if len(best) else "no image summary"
    confounds = table[(table["kind"] == "covariate") & (table["auc"] >= threshold)]
    if len(confounds):
        line += "; confounds: " + ", ".join(f"{r.feature} (AUC {r.auc:.2f})" for r in confounds.itertuples())
    return line


def scan_summaries(dataset) -> pd.DataFrame:
    """Image summaries of every item of a ``ManifestDataset`` (index: the manifest row of each item).

    The brain mask is the preprocessing's own (``Preprocessed.mask``) when it masked the
    background, else the automatic one computed on the same tensor (what it would have masked).
    """
    from neuro_ssl.data.transforms import auto_brain_mask

    config = dataset.config
    voxel_ml = float(np.prod(config.spacing_mm)) / 1000.0
    names = ("",) if len(config.modalities) == 1 else tuple(f"_{m}" for m in config.modalities)
    rows, index = [], []
    for i in range(len(dataset)):
        pre = dataset.preprocessed(i)
        mask = pre.mask if pre.mask is not None else auto_brain_mask(pre.image[0], min(config.spacing_mm))
        rows.append(image_summaries(pre.image, mask, voxel_ml, names))
        index.append(dataset.rows[i][0])
    return pd.DataFrame(rows, index=pd.Index(index, name="row"))


@dataclass
class AuditResult:
    table: pd.DataFrame       # audit.csv
    summaries: pd.DataFrame   # per-scan summaries and covariates (summaries.csv)
    verdict: str
    task: str
    skipped: list


def run_audit(manifest: pd.DataFrame, label: str, preprocess, classes=(), task: str = "auto", folds: int = 5,
              n_boot: int = 1000, seed: int = 0, cache_dir=None, skip_bad: bool = False) -> AuditResult:
    """Audit ``manifest`` for ``label`` under ``preprocess`` (a PreprocessConfig or its dict)."""
    from neuro_ssl.data.screening import screen_rows
    from neuro_ssl.errors import ManifestError
    from neuro_ssl.evaluation.inference import make_dataset
    from neuro_ssl.evaluation.labels import TARGET, prepare_labels

    source = manifest.attrs.get("source", "manifest")
    manifest, skipped = screen_rows(manifest, used_columns=(label,), skip_bad=skip_bad)
    rows, spec = prepare_labels(manifest, label, task, tuple(classes))
    if rows.empty:
        raise ManifestError(f"{source}: no row has a usable '{label}' ({spec.describe()})")
    dataset = make_dataset(rows, preprocess, cache_dir, (), skip_bad)
    summaries = scan_summaries(dataset)
    scans = rows.loc[summaries.index]
    y = scans[TARGET].to_numpy(int if spec.task == "classification" else float)
    groups = scans["subject_id"].astype(str).to_numpy()
    covariates = scans[covariate_columns(scans)]
    try:
        table = audit_table(summaries, covariates, y, groups, spec.task, folds, n_boot, seed)
    except ValueError as exc:
        raise ManifestError(f"{source}: {exc} ({spec.describe()}, {len(set(groups))} subjects)") from None
    per_scan = pd.concat([scans[["subject_id", "session_id"]], scans[[label]], covariates.drop(
        columns=[c for c in covariates.columns if c in ("subject_id", "session_id", label)]), summaries], axis=1)
    return AuditResult(table, per_scan, verdict(table), spec.task, list(skipped) + list(dataset.skipped))


def shortcut_baseline(dataset, targets: pd.Series, subjects: pd.Series, folds: int = 5, n_boot: int = 1000,
                      seed: int = 0) -> dict:
    """``evaluate``'s ``shortcut_baseline_auc``: the all-summaries AUC, cross-validated by subject on
    the very scans the model is scored on (``targets``: class codes, ``subjects``: ids, both indexed
    by manifest row). ``{"value", "ci_low", "ci_high"}``, or null values and a ``"note"`` when there
    are too few subjects per class."""
    summaries = scan_summaries(dataset)
    y = targets.loc[summaries.index].to_numpy(int)
    groups = subjects.loc[summaries.index].astype(str).to_numpy()
    try:
        scored = score_feature(summaries.to_numpy(), y, groups, "classification", folds, n_boot, seed)
    except ValueError as exc:
        return {"value": None, "ci_low": None, "ci_high": None, "note": str(exc)}
    return {"value": scored.value, "ci_low": scored.ci_low, "ci_high": scored.ci_high,
            "features": list(summaries.columns), "cv": f"{folds}-fold by subject, logistic regression"}


__all__ = ["ALL_IMAGE", "AuditResult", "run_audit", "scan_summaries", "shortcut_baseline", "subject_folds", "AUDIT_COLUMNS", "IMAGE_FEATURES", "SHORTCUT_AUC", "audit_table", "covariate_columns",
           "covariate_matrix", "cross_validated_predictions", "image_summaries", "r_squared", "score_feature",
           "shortcuts", "verdict"]
