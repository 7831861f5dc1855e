"""The report figures render real PNGs from the files evaluate/cluster write."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from PIL import Image

from neuro_ssl.report import plots


def _is_drawn_png(path, min_side=200):
    image = Image.open(path)
    assert image.format == "PNG" and min(image.size) >= min_side
    pixels = np.asarray(image.convert("L"))
    return pixels.std() > 5  # not a blank canvas


def test_roc_confusion_scatter_and_map(tmp_path):
    roc = pd.DataFrame({"curve": ["AD"] * 4, "fpr": [0, 0, 0.5, 1], "tpr": [0, 0.5, 1, 1], "auc": 0.875})
    roc.to_csv(tmp_path / "roc_curve.csv", index=False)
    assert _is_drawn_png(plots.plot_roc(tmp_path / "roc_curve.csv", tmp_path / "roc.png"))

    (tmp_path / "metrics.json").write_text(json.dumps({"classes": ["CN", "AD"], "confusion_matrix": [[5, 1], [2, 7]]}))
    assert _is_drawn_png(plots.plot_confusion(tmp_path / "metrics.json", tmp_path / "confusion.png"))

    rng = np.random.default_rng(0)
    age = rng.normal(70, 6, 30)
    pd.DataFrame({"true_value": age, "predicted_value": age + rng.normal(0, 3, 30)}).to_csv(tmp_path / "p.csv", index=False)
    assert _is_drawn_png(plots.plot_regression(tmp_path / "p.csv", tmp_path / "scatter.png", label="age"))

    clusters = pd.DataFrame({"subject_id": [f"{i:03d}" for i in range(30)], "session_id": "bl",
                             "cluster": rng.integers(0, 3, 30), "map_x": rng.normal(size=30),
                             "map_y": rng.normal(size=30), "diagnosis": rng.choice(["CN", "AD", None], 30), "age": age})
    clusters.to_csv(tmp_path / "clusters.csv", index=False)
    out = plots.plot_embedding_map(tmp_path / "clusters.csv", tmp_path / "map.png")
    assert _is_drawn_png(out)
    assert Image.open(out).size[0] > 2.5 * Image.open(out).size[1]  # three panels side by side
    assert not list(tmp_path.glob(".tmp-*"))


def test_map_without_age_column_still_renders(tmp_path):
    clusters = pd.DataFrame({"subject_id": list("abcd"), "session_id": "bl", "cluster": [0, 0, 1, 1],
                             "map_x": [0.0, 0.1, 1.0, 1.1], "map_y": [0.0, 0.2, 1.0, 0.9]})
    clusters.to_csv(tmp_path / "clusters.csv", index=False)
    assert _is_drawn_png(plots.plot_embedding_map(tmp_path / "clusters.csv", tmp_path / "map.png"))
