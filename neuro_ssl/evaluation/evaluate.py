"""``evaluate``: a fine-tuned model on a manifest -> metrics.json, predictions.csv, roc_curve.csv.

The figures (roc.png, confusion.png, scatter.png) are rendered from these files by
``neuro_ssl.report.plots`` (the CLI does it): evaluation computes, report renders.

The model's own meta decides the task, the label column, the classes and the preprocessing, so
a run is always scored the way it was trained. Subjects the model (or its encoder) was trained,
validated or pretrained on are refused (:mod:`neuro_ssl.evaluation.leakage`). Every metric gets
a 95% percentile bootstrap interval that resamples subjects (:mod:`neuro_ssl.evaluation.bootstrap`).
Beside the model's AUC, ``shortcut_baseline_auc`` is what trivial summaries of the same input
tensors reach on the same scans (:mod:`neuro_ssl.evaluation.audit`): what the network adds over them.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from neuro_ssl._utils.files import write_csv, write_json
from neuro_ssl.data.screening import screen_rows, write_skipped
from neuro_ssl.evaluation import metrics as M
from neuro_ssl.evaluation.audit import shortcut_baseline
from neuro_ssl.evaluation.bootstrap import bootstrap_metrics
from neuro_ssl.evaluation.inference import forward_dataset, make_dataset
from neuro_ssl.evaluation.leakage import check_leakage
from neuro_ssl.errors import ManifestError
from neuro_ssl.models import load_model
from neuro_ssl.evaluation.labels import TARGET, prepare_labels


def model_path(run: str | Path) -> Path:
    """``RUN/model.pt`` for a run folder, or the file itself."""
    run = Path(run)
    return run / "model.pt" if run.is_dir() else run


def evaluate_run(run: str | Path, manifest: pd.DataFrame, out_dir: str | Path, allow_overlap: bool = False,
                 n_boot: int = 1000, seed: int = 0, alpha: float = 0.05, cache_dir=None, skip_bad: bool = False,
                 batch_size: int = 8, device: str = "cpu", workers: int = 0) -> dict:
    """Score the run's model on ``manifest``; write the files to ``out_dir``; return metrics.json's dict.

    Undefined metrics (AUC with one class present) are ``None``, as in the JSON file.
    """
    path = model_path(run)
    model, meta = load_model(path)
    source = manifest.attrs.get("source", "manifest")
    manifest, skipped = screen_rows(manifest, used_columns=(meta["label"],), skip_bad=skip_bad)
    rows, spec = prepare_labels(manifest, meta["label"], meta["task"], tuple(meta.get("classes") or ()))
    if rows.empty:
        raise ManifestError(f"{source}: no row has a usable '{meta['label']}' for this model ({spec.describe()})")
    overlap = check_leakage(meta.get("subjects", []), rows["subject_id"], allow_overlap, source=str(path), target=source)
    dataset = make_dataset(rows, meta["preprocess"], cache_dir, (TARGET,), skip_bad)
    skipped = skipped + dataset.skipped
    outputs, index = forward_dataset(model.to(device), dataset, batch_size, device, workers, "evaluate")
    scans = rows.loc[index]
    out_dir = Path(out_dir)
    common = {"run": str(path), "manifest": source, "mode": meta.get("mode"), "label": spec.label,
              "n": int(len(scans)), "n_subjects": int(scans["subject_id"].nunique()),
              "allow_overlap": bool(allow_overlap), "overlap_subjects": len(overlap),
              "overlap_subject_ids": overlap, "rows_dropped": spec.dropped,
              "rows_skipped": [s.reason for s in skipped],
              "bootstrap": {"unit": "subject", "n_boot": int(n_boot), "alpha": alpha, "seed": int(seed),
                            "interval": "percentile"}}
    if spec.task == "regression":
        result = _regression(scans, outputs[:, 0], out_dir, n_boot, seed, alpha)
    else:
        result = _classification(scans, outputs, spec.classes, out_dir, n_boot, seed, alpha)
        result["shortcut_baseline_auc"] = shortcut_baseline(dataset, scans[TARGET], scans["subject_id"],
                                                            n_boot=n_boot, seed=seed)
    metrics = {**result.pop("headline"), "task": spec.task, **common, **result}
    metrics = _json_safe(metrics)
    write_json(out_dir / "metrics.json", metrics)
    write_skipped(out_dir, skipped)
    return metrics


def _classification(scans: pd.DataFrame, logits: np.ndarray, classes, out_dir: Path, n_boot, seed, alpha) -> dict:
    prob = torch.softmax(torch.as_tensor(logits), dim=1).numpy()
    y_true = scans[TARGET].to_numpy(int)
    y_pred = prob.argmax(axis=1)
    names = np.asarray(classes, dtype=object)
    table = scans[["subject_id", "session_id"]].copy()
    table["true_label"], table["predicted_label"] = names[y_true], names[y_pred]
    for k, name in enumerate(classes):
        table[f"prob_{name}"] = prob[:, k]
    write_csv(out_dir / "predictions.csv", table)
    intervals = bootstrap_metrics(M.classification_metrics, y_true, prob, groups=scans["subject_id"].to_numpy(),
                                  n_boot=n_boot, seed=seed, alpha=alpha, classes=y_true)
    write_csv(out_dir / "roc_curve.csv", _roc_table(y_true, prob, classes))
    per_class = M.precision_recall_f1(y_true, y_pred, len(classes))
    return {
        "headline": {name: _ci(intervals[name]) for name in M.CLASSIFICATION_METRICS},
        "classes": list(classes),
        "positive_class": classes[1] if len(classes) == 2 else None,
        "accuracy": M.accuracy(y_true, y_pred),
        "per_class": {name: {"precision": float(per_class["precision"][k]), "recall": float(per_class["recall"][k]),
                             "f1": float(per_class["f1"][k]), "support": int(per_class["support"][k])}
                      for k, name in enumerate(classes)},
        "confusion_matrix": M.confusion_matrix(y_true, y_pred, len(classes)).tolist(),
        "bootstrap_skipped": {name: iv.n_skipped for name, iv in intervals.items()},
    }


def _roc_table(y_true: np.ndarray, prob: np.ndarray, classes) -> pd.DataFrame:
    """ROC points: the positive class for a binary task, one-vs-rest per class otherwise."""
    curves = [1] if len(classes) == 2 else range(len(classes))
    parts = []
    for k in curves:
        fpr, tpr, thresholds = M.roc_curve(y_true == k, prob[:, k])
        parts.append(pd.DataFrame({"curve": classes[k], "fpr": fpr, "tpr": tpr, "threshold": thresholds,
                                   "auc": M.binary_auc(y_true == k, prob[:, k])}))
    return pd.concat(parts, ignore_index=True)


def _regression(scans: pd.DataFrame, predicted: np.ndarray, out_dir: Path, n_boot, seed, alpha) -> dict:
    y_true = scans[TARGET].to_numpy(float)
    table = scans[["subject_id", "session_id"]].copy()
    table["true_value"], table["predicted_value"] = y_true, predicted
    write_csv(out_dir / "predictions.csv", table)
    intervals = bootstrap_metrics(M.regression_metrics, y_true, predicted, groups=scans["subject_id"].to_numpy(),
                                  n_boot=n_boot, seed=seed, alpha=alpha)
    return {"headline": {name: _ci(intervals[name]) for name in M.REGRESSION_METRICS},
            "mean_error": float(np.mean(predicted - y_true)),
            "bootstrap_skipped": {name: iv.n_skipped for name, iv in intervals.items()}}


def _ci(interval) -> dict:
    return {"value": interval.value, "ci_low": interval.ci_low, "ci_high": interval.ci_high}


def _json_safe(obj):
    """NaN (undefined metric) -> null, so metrics.json stays valid JSON."""
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)) and not math.isfinite(float(obj)):
        return None
    return obj


#: headline metrics per task, in the order they are printed
METRIC_NAMES = {"classification": M.CLASSIFICATION_METRICS, "regression": M.REGRESSION_METRICS}

