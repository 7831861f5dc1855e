"""k-means on embeddings, scored against a manifest column (ARI, NMI), with a 2D map.

Embeddings are joined to the manifest on (subject_id, session_id), never by row order. k is
--k or the value in 2..8 with the best silhouette. Writes DIR/clusters.csv (keys, cluster, map
coordinates, the column and age), DIR/cluster_metrics.json and DIR/map.png (three panels:
cluster, --against, age). The map is PCA, or UMAP with --map umap when umap-learn is installed.

examples:
  neuro-ssl cluster --embeddings embeddings.csv --manifest test.csv --out clusters --against diagnosis
  neuro-ssl cluster --embeddings embeddings.csv --manifest test.csv --out clusters --k 3 --map umap
"""

from __future__ import annotations

import argparse
from pathlib import Path

from neuro_ssl.cli import _common


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--embeddings", type=Path, required=True, help="embeddings.csv from neuro-ssl embed")
    parser.add_argument("--manifest", type=Path, required=True, help="manifest with the column to compare against")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument("--k", type=_common.positive_int, default=None, help="number of clusters (default: best silhouette in 2..8)")
    parser.add_argument("--against", default="diagnosis", help="categorical manifest column for ARI/NMI")
    parser.add_argument("--map", dest="map_method", choices=("pca", "umap"), default="pca",
                        help="2D map (umap falls back to pca when umap-learn is not installed)")
    _common.add_seed(parser)


def run(args: argparse.Namespace) -> int:
    from neuro_ssl._utils.files import write_csv, write_json
    from neuro_ssl.data.manifest import read_manifest
    from neuro_ssl.evaluation.cluster import cluster_embeddings
    from neuro_ssl.evaluation.embed import read_embeddings
    from neuro_ssl.report.plots import plot_embedding_map

    _common.refuse_same_path(args.embeddings, args.out, "--out")
    embeddings = read_embeddings(args.embeddings)
    manifest = read_manifest(args.manifest)
    table, metrics = cluster_embeddings(embeddings, manifest, k=args.k, against=args.against,
                                        seed=args.seed, map_method=args.map_method)
    out = Path(args.out)
    write_csv(out / "clusters.csv", table)
    write_json(out / "cluster_metrics.json", metrics)
    plot_embedding_map(out / "clusters.csv", out / "map.png", ("cluster", args.against, "age"))
    print(f"k = {metrics['k']} ({metrics['k_chosen_by']}) on {metrics['n']} scan(s); "
          f"{metrics['n_unmatched']} without a manifest row")
    print(f"against {args.against}: ARI {metrics['ari']:.3f}, NMI {metrics['nmi']:.3f} on {metrics['n_labelled']} scan(s)")
    print(f"written: {out / 'clusters.csv'}, cluster_metrics.json, map.png")
    return 0
