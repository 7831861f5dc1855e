"""k-means on encoder embeddings, scored against a manifest column, with a 2D map for the eye.

Embeddings are joined to the manifest on ``(subject_id, session_id)``, never by row order;
embedding rows without a manifest row are kept for clustering and counted as unmatched.
Features are z-scored per dimension before k-means (encoder features have very different
scales; without it a few dimensions decide the clusters). ``k`` is given or chosen as the value
in 2..8 with the highest silhouette. ARI and NMI (scikit-learn) compare clusters with the
column's categories on the matched, labelled rows.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from neuro_ssl.errors import ConfigError, ManifestError

KEYS = ["subject_id", "session_id"]
#: a numeric column with more distinct values than this is continuous: no ARI/NMI against it
MAX_CATEGORIES = 20


def feature_columns(embeddings: pd.DataFrame) -> list[str]:
    """``f0 .. f{D-1}`` in numeric order."""
    cols = [c for c in embeddings.columns if c.startswith("f") and c[1:].isdigit()]
    return sorted(cols, key=lambda c: int(c[1:]))


def join_manifest(embeddings: pd.DataFrame, manifest: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Embedding rows with the requested manifest columns attached by (subject_id, session_id).

    A session with several manifest rows (one per modality) contributes its first row.
    Adds ``matched`` (bool). Raises when nothing matches: the two files describe different scans.
    """
    source = manifest.attrs.get("source", "manifest")
    keep = [c for c in dict.fromkeys(columns) if c in manifest.columns and c not in KEYS]
    right = manifest[KEYS + keep].astype({k: str for k in KEYS}).drop_duplicates(KEYS)
    left = embeddings.astype({k: str for k in KEYS})
    joined = left.merge(right.assign(matched=True), on=KEYS, how="left", validate="many_to_one")
    joined["matched"] = joined["matched"].astype("boolean").fillna(False).astype(bool)
    if not joined["matched"].any():
        raise ManifestError(
            f"{source}: none of the {len(embeddings)} embedding rows matches a manifest row on "
            "subject_id + session_id; were the embeddings made from this manifest?"
        )
    return joined


def choose_k(features: np.ndarray, k_range: Sequence[int] = range(2, 9), seed: int = 0) -> tuple[int, dict[int, float]]:
    """The k with the highest silhouette (ties: the smallest k), and the silhouette of every k tried."""
    from sklearn.metrics import silhouette_score

    scores = {}
    for k in k_range:
        if not 2 <= k < len(features):
            continue
        labels = _kmeans(features, k, seed)
        scores[int(k)] = float(silhouette_score(features, labels)) if len(set(labels)) > 1 else float("nan")
    if not scores:
        raise ManifestError(f"cannot choose k: {len(features)} embeddings are too few for k-means with k >= 2")
    best = max(scores, key=lambda k: (np.nan_to_num(scores[k], nan=-2.0), -k))
    return best, scores


def cluster_embeddings(embeddings: pd.DataFrame, manifest: pd.DataFrame, k: int | None = None,
                       against: str | None = "diagnosis", seed: int = 0,
                       map_method: str = "pca") -> tuple[pd.DataFrame, dict]:
    """Cluster, score against ``against`` and project to 2D; returns (clusters table, metrics dict)."""
    if against and against not in manifest.columns:
        raise ManifestError(f"{manifest.attrs.get('source', 'manifest')}: no column '{against}' to compare clusters with "
                          f"(columns: {', '.join(map(str, manifest.columns))})")
    features = standardize(embeddings[feature_columns(embeddings)].to_numpy(float))
    joined = join_manifest(embeddings, manifest, [c for c in (against, "diagnosis", "age") if c])
    if k is None:
        k, silhouettes = choose_k(features, seed=seed)
        chosen_by = "silhouette"
    else:
        if k < 2:
            raise ConfigError(f"--k {k}: needs k >= 2")
        if k >= len(features):
            raise ManifestError(f"--k {k}: needs fewer clusters than embeddings ({len(features)})")
        silhouettes, chosen_by = {}, "given"
    labels = _kmeans(features, k, seed)
    map_xy, method = embedding_map(features, map_method, seed)
    table = joined[KEYS].copy()
    table["cluster"] = labels
    table["map_x"], table["map_y"] = map_xy[:, 0], map_xy[:, 1]
    for column in dict.fromkeys(c for c in (against, "diagnosis", "age") if c and c in joined):
        table[column] = joined[column].to_numpy()
    metrics = {"k": int(k), "k_chosen_by": chosen_by, "silhouette_by_k": silhouettes,
               "n": int(len(table)), "n_unmatched": int((~joined["matched"]).sum()), "map": method,
               "features_standardized": True}
    if against:
        metrics.update(_agreement(labels, joined[against], against, manifest))
    return table, metrics


def standardize(features: np.ndarray) -> np.ndarray:
    """Per-dimension z-score; constant dimensions become 0."""
    features = np.asarray(features, dtype=float)
    sd = features.std(axis=0)
    return (features - features.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def embedding_map(features: np.ndarray, method: str = "pca", seed: int = 0) -> tuple[np.ndarray, str]:
    """2D coordinates: PCA, or UMAP when asked for and installed (PCA otherwise, said in the result)."""
    if method == "umap":
        try:
            import umap  # optional; not a dependency
        except ImportError:
            method = "pca"
        else:
            return umap.UMAP(n_components=2, random_state=seed).fit_transform(features), "umap"
    if method != "pca":
        raise ConfigError(f"--map {method}: expected pca or umap")
    from sklearn.decomposition import PCA

    n_components = min(2, features.shape[0], features.shape[1])
    xy = PCA(n_components=n_components, random_state=seed).fit_transform(features)
    if xy.shape[1] < 2:
        xy = np.c_[xy, np.zeros((len(xy), 2 - xy.shape[1]))]
    return xy, "pca"


def _kmeans(features: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(features)


def _agreement(labels: np.ndarray, column: pd.Series, name: str, manifest: pd.DataFrame) -> dict:
    """ARI / NMI of clusters against a categorical column, on rows that have a value."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    values = column.reset_index(drop=True)
    if pd.api.types.is_numeric_dtype(values) and values.nunique() > MAX_CATEGORIES:
        raise ManifestError(f"{manifest.attrs.get('source', 'manifest')}: column '{name}' is continuous "
                          f"({values.nunique()} distinct values); ARI/NMI need categories")
    labelled = values.notna().to_numpy()
    if labelled.sum() < 2:
        raise ManifestError(f"{manifest.attrs.get('source', 'manifest')}: fewer than 2 embedded scans have a '{name}' value")
    truth = values[labelled].astype(str).to_numpy()
    table = pd.crosstab(pd.Series(labels[labelled], name="cluster"), pd.Series(truth, name=name))
    return {
        "against": name,
        "n_labelled": int(labelled.sum()),
        "ari": float(adjusted_rand_score(truth, labels[labelled])),
        "nmi": float(normalized_mutual_info_score(truth, labels[labelled])),
        "contingency": {str(c): {str(v): int(n) for v, n in row.items()} for c, row in table.iterrows()},
    }
