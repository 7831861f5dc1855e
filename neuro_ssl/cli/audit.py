"""Can trivial per-scan summaries of what the model sees predict the label? A shortcut audit.

Every scan is preprocessed exactly as a model would see it (the options below, or a run's own
preprocessing with --run), then summarized by a handful of numbers: background level (outside
the brain mask), field-of-view edge mean, foreground mean / std / p10 / p50 / p90, brain-mask
volume. Each summary alone, all of them together, and each manifest covariate (age, sex, site,
any scanner or field-strength column) predicts the label by logistic regression (ridge for a
regression label), cross-validated with every subject's scans in one fold, with a 95 % interval
from a bootstrap over subjects.

Writes DIR/audit.csv (feature, kind, auc, ci_low, ci_high, n, balanced_accuracy, r2, metric),
DIR/summaries.csv (the per-scan numbers), DIR/audit.png, and prints one verdict line naming any
image summary with AUC >= 0.70 as a likely shortcut (covariates are reported as confounds).
Exit 0 either way: the audit reports, it does not judge. See docs/evaluation.md.

examples:
  neuro-ssl audit cohort/manifest.csv --out audit --label diagnosis --classes CN,AD --spacing 6 --shape 32,32,32
  neuro-ssl audit cohort/manifest.csv --out audit_old --label diagnosis --classes CN,AD --spacing 6 \\
      --shape 32,32,32 --no-mask-background           # the neuro-ssl 0.1 preprocessing, for comparison
  neuro-ssl audit study/splits/train.csv --out audit --label diagnosis --classes CN,AD --run runs/yaware
"""

from __future__ import annotations

import argparse
from pathlib import Path

from neuro_ssl.cli import _common


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest", type=Path, metavar="MANIFEST", help="scans to audit (CSV/TSV)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument("--label", required=True, help="label column (e.g. diagnosis, age, MMSE)")
    parser.add_argument("--classes", type=_common.class_list, default=(), metavar="A,B",
                        help="classes to keep, in order (e.g. CN,AD); default: every value of the label")
    parser.add_argument("--task", choices=("auto", "classification", "regression"), default="auto",
                        help="auto: classification for text labels or --classes, else regression")
    pre = parser.add_argument_group("preprocessing (as pretrain spells it), or --run")
    pre.add_argument("--run", type=Path, default=None, metavar="RUN",
                     help="take the preprocessing of a run (folder with model.pt or encoder.pt, or the .pt file)")
    _common.add_preprocess_arguments(pre)
    _common.add_frames(pre)
    run_group = parser.add_argument_group("scoring")
    run_group.add_argument("--folds", type=_common.positive_int, default=5, help="cross-validation folds (by subject)")
    run_group.add_argument("--n-boot", type=_common.positive_int, default=1000, help="bootstrap resamples (subjects)")
    run_group.add_argument("--skip-bad", action="store_true", help="list unusable scans in DIR/skipped.csv instead of stopping")
    _common.add_cache_dir(run_group)
    _common.add_seed(run_group)


def preprocess_of(args: argparse.Namespace) -> dict:
    """The preprocessing to audit: the run's (its model.pt or encoder.pt meta) or the options'."""
    from neuro_ssl.errors import CheckpointError
    from neuro_ssl.models import read_meta

    if args.run is None:
        return {"spacing_mm": list(args.spacing_mm), "shape": list(args.shape), "normalization": args.normalization,
                "modalities": list(args.modalities), "mask_background": bool(args.mask_background),
                "frames": args.frames}
    run = Path(args.run)
    candidates = [run] if run.is_file() else [run / "model.pt", run / "encoder.pt"]
    path = next((c for c in candidates if c.is_file()), None)
    if path is None:
        raise CheckpointError(f"--run {run}: no model.pt or encoder.pt there")
    meta = read_meta(path)
    if "preprocess" not in meta:
        raise CheckpointError(f"--run {path}: its meta has no 'preprocess' section")
    return meta["preprocess"]


def run(args: argparse.Namespace) -> int:
    from neuro_ssl._utils.files import write_csv
    from neuro_ssl.data.manifest import read_manifest
    from neuro_ssl.data.screening import write_skipped
    from neuro_ssl.data.transforms import PreprocessConfig
    from neuro_ssl.evaluation.audit import run_audit
    from neuro_ssl.report.plots import plot_audit

    _common.refuse_same_path(args.manifest, args.out, "--out")
    preprocess = PreprocessConfig.from_dict(preprocess_of(args))
    manifest = read_manifest(args.manifest)
    result = run_audit(manifest, args.label, preprocess, classes=args.classes, task=args.task, folds=args.folds,
                       n_boot=args.n_boot, seed=args.seed, cache_dir=args.cache_dir, skip_bad=args.skip_bad)
    write_csv(args.out / "audit.csv", result.table)
    write_csv(args.out / "summaries.csv", result.summaries.reset_index())
    write_skipped(args.out, result.skipped)
    plot_audit(args.out / "audit.csv", args.out / "audit.png", title=f"Shortcut audit: {args.label}")
    mask = "background masked" if preprocess.mask_background else "background NOT masked (--no-mask-background)"
    print(f"audited {result.table['n'].iloc[0]} scan(s) for '{args.label}' ({result.task}); preprocessing "
          f"{'x'.join(f'{v:g}' for v in preprocess.spacing_mm)} mm, {'x'.join(map(str, preprocess.shape))}, {mask}")
    for row in result.table.itertuples():
        value = row.auc if row.metric == "auc" else row.r2
        print(f"  {row.kind:>9}  {row.feature:<24} {row.metric} {value:.3f} [{row.ci_low:.3f}, {row.ci_high:.3f}]")
    print(result.verdict)
    print(f"written: {args.out / 'audit.csv'}, summaries.csv, audit.png")
    return 0
