"""Cross-modal retrieval of a pretraining run on a manifest: scans <-> clinical data, MRI <-> PET.

For a CLIP run (--loss clip, yaware+clip, simclr+clip) each scan retrieves its own clinical row
among the manifest's scans and back; for a run with --views A,B each session's A scan retrieves
its B scan and back. Writes DIR/retrieval.json (per direction: recall_at_1, recall_at_5,
recall_at_10, median_rank, chance_at_5, n) and, for a CLIP run, DIR/prototype_classification.json
(scans classified by the nearest class prototype, each class's median clinical profile in the
training rows; AUC). The manifest is featurized and preprocessed exactly as in training (both are
read from RUN/checkpoint.pt). Subjects the run was pretrained on are refused unless
--allow-overlap. See docs/multimodal.md.

examples:
  neuro-ssl evaluate-retrieval --run runs/clip --manifest test.csv --out runs/clip/test
  neuro-ssl evaluate-retrieval --run runs/clip --manifest test.csv --out eval --classes CN,MCI,AD
"""

from __future__ import annotations

import argparse
from pathlib import Path

from neuro_ssl.cli import _common


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", type=Path, required=True, metavar="RUN", help="pretraining run folder (with checkpoint.pt)")
    parser.add_argument("--manifest", type=Path, required=True, metavar="M", help="manifest to retrieve in (held-out subjects)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument("--classes", type=_common.class_list, default=None, metavar="C1,C2[,...]",
                        help="prototype classes (diagnosis values of the training rows); default CN,AD when both exist")
    parser.add_argument("--allow-overlap", action="store_true",
                        help="evaluate even subjects the run was pretrained on (results are optimistic)")
    parser.add_argument("--batch-size", type=_common.positive_int, default=8, help="scans per forward pass")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--skip-bad", action="store_true", help="report and skip unusable scans instead of stopping")
    _common.add_cache_dir(parser)


def run(args: argparse.Namespace) -> int:
    from neuro_ssl.data.manifest import read_manifest
    from neuro_ssl.training.crossmodal import PROTOTYPE_FILE, RETRIEVAL_FILE, evaluate_retrieval
    from neuro_ssl.training.loop import resolve_device

    _common.refuse_same_path(args.manifest, args.out, "--out")
    manifest = read_manifest(args.manifest)
    result = evaluate_retrieval(args.run, manifest, args.out, classes=args.classes, allow_overlap=args.allow_overlap,
                                cache_dir=args.cache_dir, batch_size=args.batch_size,
                                device=str(resolve_device(args.device)), skip_bad=args.skip_bad)
    for key, entry in result["retrieval"].items():
        print(f"{key.replace('_to_', ' -> ')}: recall@1 {entry['recall_at_1']:.3f}, recall@5 {entry['recall_at_5']:.3f} "
              f"(chance {entry['chance_at_5']:.3f}), recall@10 {entry['recall_at_10']:.3f}, "
              f"median rank {entry['median_rank']:.1f} of {entry['n']}")
    written = [str(Path(args.out) / RETRIEVAL_FILE)]
    prototypes = result["prototype_classification"]
    if prototypes is not None:
        auc = "undefined" if prototypes["auc"] is None else f"{prototypes['auc']:.3f}"
        print(f"prototype classification ({','.join(prototypes['classes'])}, {prototypes['n']} scan(s)): AUC {auc}, "
              f"balanced accuracy {prototypes['balanced_accuracy']:.3f}")
        written.append(PROTOTYPE_FILE)
    if result["overlap_subjects"]:
        print(f"warning: --allow-overlap: {result['overlap_subjects']} subject(s) were seen in pretraining")
    for message in result["skipped"]:
        print(f"skipped: {message}")
    print(f"written: {', '.join(written)}")
    return 0
