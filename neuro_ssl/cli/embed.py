"""Encoder embeddings, one row per scan: subject_id, session_id, f0 ... f{D-1}.

The encoder is a pretraining run's encoder.pt (--encoder) or the encoder inside a fine-tuned
model.pt (--run); the preprocessing is read from it. --projection appends the projection head
(from checkpoint.pt beside encoder.pt) and writes z instead of h.

examples:
  neuro-ssl embed --encoder runs/yaware/encoder.pt --manifest test.csv --out embeddings.csv
  neuro-ssl embed --run runs/ad_full --manifest test.csv --out ft_embeddings.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

from neuro_ssl.cli import _common


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--encoder", type=Path, metavar="RUN/encoder.pt", help="pretrained encoder")
    source.add_argument("--run", type=Path, metavar="RUN", help="fine-tuning run folder (or model.pt): its encoder")
    parser.add_argument("--manifest", type=Path, required=True, help="scans to embed")
    parser.add_argument("--out", type=Path, required=True, metavar="embeddings.csv", help="output table")
    parser.add_argument("--projection", action="store_true", help="projection-head outputs z instead of encoder features h")
    parser.add_argument("--batch-size", type=_common.positive_int, default=8, help="scans per forward pass")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--skip-bad", action="store_true", help="report and skip unusable scans instead of stopping")
    _common.add_cache_dir(parser)


def run(args: argparse.Namespace) -> int:
    from neuro_ssl._utils.files import write_csv
    from neuro_ssl.data.manifest import read_manifest
    from neuro_ssl.evaluation.embed import compute_embeddings, load_embedding_network
    from neuro_ssl.training.loop import resolve_device

    _common.refuse_same_path(args.manifest, args.out, "--out")
    network, meta = load_embedding_network(args.encoder, args.run, args.projection)
    manifest = read_manifest(args.manifest)
    table = compute_embeddings(network, meta, manifest, cache_dir=args.cache_dir, batch_size=args.batch_size,
                               device=str(resolve_device(args.device)), workers=args.workers, skip_bad=args.skip_bad)
    write_csv(args.out, table)
    skipped = table.attrs.get("skipped", [])
    if skipped:
        from neuro_ssl.data.screening import write_skipped

        report = write_skipped(Path(args.out).parent, skipped, name=f"{Path(args.out).stem}_skipped.csv")
        print(f"skipped {len(skipped)} row(s), listed in {report}")
    print(f"{len(table)} scan(s) x {table.shape[1] - 2} feature(s) -> {args.out}")
    return 0
