"""k-means on embeddings: joined by key (not row order), k by silhouette, ARI/NMI against a column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from neuro_ssl.errors import ConfigError, ManifestError
from neuro_ssl.evaluation.cluster import choose_k, cluster_embeddings, join_manifest, standardize


def _embeddings_and_manifest(seed=0, n_per_group=15, dim=6):
    rng = np.random.default_rng(seed)
    groups = np.repeat(["CN", "MCI", "AD"], n_per_group)
    centres = {"CN": 0.0, "MCI": 6.0, "AD": 12.0}
    feats = np.stack([rng.normal(centres[g], 1.0, dim) for g in groups])
    feats[:, 0] *= 1000.0  # one dimension on a much larger scale: standardization must tame it
    subjects = [f"{i:03d}" for i in range(len(groups))]
    emb = pd.DataFrame(feats, columns=[f"f{k}" for k in range(dim)])
    emb.insert(0, "session_id", "bl")
    emb.insert(0, "subject_id", subjects)
    manifest = pd.DataFrame({"subject_id": subjects, "session_id": "bl", "diagnosis": groups,
                             "age": rng.normal(70, 5, len(groups))})
    manifest.attrs["source"] = "m.csv"
    return emb, manifest


def test_join_is_by_key_not_row_order():
    emb, manifest = _embeddings_and_manifest()
    shuffled = manifest.sample(frac=1.0, random_state=1)
    joined = join_manifest(emb, shuffled, ["diagnosis"])
    expected = manifest.set_index("subject_id").loc[emb["subject_id"], "diagnosis"].to_numpy()
    np.testing.assert_array_equal(joined["diagnosis"].to_numpy(), expected)


def test_recovers_planted_groups_and_counts_unmatched():
    emb, manifest = _embeddings_and_manifest()
    extra = emb.iloc[:2].copy()
    extra["subject_id"] = ["zz1", "zz2"]  # embedded scans that the manifest does not describe
    emb = pd.concat([emb, extra], ignore_index=True)
    table, metrics = cluster_embeddings(emb, manifest.sample(frac=1.0, random_state=2), against="diagnosis", seed=0)
    assert metrics["k"] == 3 and metrics["k_chosen_by"] == "silhouette"
    assert metrics["n_unmatched"] == 2 and metrics["n_labelled"] == 45
    assert metrics["ari"] == pytest.approx(1.0) and metrics["nmi"] == pytest.approx(1.0)
    labelled = table["diagnosis"].notna()
    assert adjusted_rand_score(table.loc[labelled, "diagnosis"], table.loc[labelled, "cluster"]) == pytest.approx(1.0)
    assert list(table.columns[:5]) == ["subject_id", "session_id", "cluster", "map_x", "map_y"]
    assert set(metrics["silhouette_by_k"]) == set(range(2, 9))
    assert sum(sum(row.values()) for row in metrics["contingency"].values()) == 45


def test_given_k_and_determinism():
    emb, manifest = _embeddings_and_manifest(seed=3)
    a, ma = cluster_embeddings(emb, manifest, k=2, seed=5)
    b, mb = cluster_embeddings(emb, manifest, k=2, seed=5)
    pd.testing.assert_frame_equal(a, b)
    assert ma["k"] == 2 and ma["k_chosen_by"] == "given" and ma["ari"] == mb["ari"]


def test_silhouette_prefers_true_k_on_two_blobs():
    rng = np.random.default_rng(0)
    x = np.r_[rng.normal(0, 1, (20, 3)), rng.normal(10, 1, (20, 3))]
    k, scores = choose_k(standardize(x), seed=0)
    assert k == 2 and scores[2] == max(scores.values())


def test_bad_requests_are_one_line_errors():
    emb, manifest = _embeddings_and_manifest()
    with pytest.raises(ManifestError, match="no column 'DX'"):
        cluster_embeddings(emb, manifest, against="DX")
    with pytest.raises(ManifestError, match="continuous"):
        cluster_embeddings(emb, manifest, against="age", k=3)
    with pytest.raises(ManifestError, match="--k 99"):  # more clusters than this data has embeddings
        cluster_embeddings(emb, manifest, k=99)
    with pytest.raises(ConfigError, match="--k 1: needs k >= 2"):  # wrong whatever the data
        cluster_embeddings(emb, manifest, k=1)
    other = manifest.assign(subject_id=["x" + s for s in manifest["subject_id"]])
    with pytest.raises(ManifestError, match="none of the 45 embedding rows"):
        cluster_embeddings(emb, other)
