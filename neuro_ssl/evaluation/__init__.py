"""Honest evaluation: metrics with subject-level bootstrap CIs, the leakage guard, embeddings, clusters.

- ``metrics``: numpy metrics (AUC, balanced accuracy, sensitivity, specificity, MCC, F1, MAE, r)
- ``bootstrap``: percentile intervals that resample subjects (``bootstrap_ci``)
- ``leakage``: refuse to score subjects a model has seen (``check_leakage``)
- ``labels``: target column, classes and the seeded per-class subject budget
- ``evaluate``: a run on a manifest -> metrics.json, predictions.csv, roc_curve.csv
- ``embed`` / ``cluster``: embeddings.csv; k-means with ARI/NMI and a 2D map
- ``crossval``: subject-level folds and the mean +- sd table

Only ``metrics``, ``bootstrap`` and ``leakage`` are imported here (numpy only); the rest load
torch or scikit-learn and are imported on use.
"""

from neuro_ssl.evaluation.bootstrap import Interval, bootstrap_ci, bootstrap_metrics
from neuro_ssl.evaluation.leakage import check_leakage
from neuro_ssl.evaluation.metrics import classification_metrics, regression_metrics

__all__ = ["Interval", "bootstrap_ci", "bootstrap_metrics", "check_leakage",
           "classification_metrics", "regression_metrics"]
