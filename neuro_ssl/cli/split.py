"""Split a manifest by subject into train/val/test (or K folds), stratified and reproducible.

No subject is ever in two parts: subjects are dealt to parts, then all their scans follow.
Stratification uses each subject's label at its first visit (default column: diagnosis; `none`
to switch off); classes too small to reach every part are pooled, with a warning. Writes
DIR/train.csv, val.csv, test.csv (image paths relative to DIR), or with --folds K a held-out
DIR/test.csv (when --test-size > 0) and DIR/fold_1 ... DIR/fold_K each with train.csv and val.csv;
plus DIR/split_report.csv with subjects, scans, classes, age (mean +- sd) and % female per part.

  neuro-ssl split manifest.csv --out splits --stratify diagnosis --seed 0
  neuro-ssl split manifest.csv --out cv --folds 5 --test-size 0.2 --baseline-only-eval
"""

from __future__ import annotations

from pathlib import Path

from neuro_ssl.cli import _common


def add_arguments(parser) -> None:
    parser.add_argument("manifest", type=Path, help="manifest CSV/TSV")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument("--test-size", type=_common.fraction, default=0.2, help="fraction of subjects held out for test")
    parser.add_argument("--val-size", type=_common.fraction, default=0.1,
                        help="fraction of subjects for validation (ignored with --folds)")
    parser.add_argument("--stratify", default="diagnosis", metavar="COLUMN",
                        help="column to stratify on, per subject ('none' to switch off)")
    parser.add_argument("--folds", type=_common.positive_int, default=None, metavar="K",
                        help="K-fold cross-validation over the subjects not in test")
    parser.add_argument("--baseline-only-eval", action="store_true",
                        help="val and test keep only each subject's first session")
    _common.add_seed(parser)


def run(args) -> int:
    import sys
    import warnings

    from neuro_ssl.data import splits
    from neuro_ssl.data.manifest import read_manifest, write_manifest
    from neuro_ssl._utils.files import write_csv

    df = read_manifest(args.manifest)
    stratify = None if str(args.stratify).lower() in ("none", "") else args.stratify
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", splits.SplitWarning)
        parts = _split(df, args, stratify, splits)
    for warning in caught:
        if issubclass(warning.category, splits.SplitWarning):
            print(f"neuro-ssl split: warning: {warning.message}", file=sys.stderr)
    outputs = {args.out / f"{name}.csv": part for name, part in parts.items() if not part.empty}
    for path in outputs:
        _common.refuse_same_path(args.manifest, path)
    for path, part in outputs.items():
        write_manifest(part, path)
    report = splits.split_report(parts, stratify)
    write_csv(args.out / "split_report.csv", report)
    print(splits.format_report(report))
    print(f"wrote {len(outputs)} manifests and split_report.csv to {args.out}")
    return 0


def _split(df, args, stratify, splits) -> dict:
    """Flat {relative name: part}: train/val/test, or test plus fold_K/train and fold_K/val."""
    if args.folds is None:
        return splits.make_splits(df, args.test_size, args.val_size, stratify, args.seed,
                                  baseline_only_eval=args.baseline_only_eval)
    parts = {}
    rest = df
    if args.test_size > 0:
        outer = splits.make_splits(df, args.test_size, 0.0, stratify, args.seed,
                                   baseline_only_eval=args.baseline_only_eval)
        rest, parts["test"] = outer["train"], outer["test"]
    folds = splits.make_folds(rest, args.folds, stratify, args.seed, baseline_only_eval=args.baseline_only_eval)
    for k, fold in enumerate(folds, start=1):
        parts.update({f"fold_{k}/{name}": part for name, part in fold.items()})
    return parts
