"""Score a fine-tuned run on a manifest, with 95% bootstrap CIs that resample subjects.

Writes DIR/metrics.json (classification: auc, balanced_accuracy, sensitivity, specificity, mcc,
f1_macro, each {value, ci_low, ci_high}, plus per-class precision/recall/F1 and the confusion
matrix; regression: mae, rmse, r), DIR/predictions.csv (one row per scan, keyed by subject and
session), DIR/roc_curve.csv + roc.png and confusion.png (or scatter.png for regression).
Subjects the model was trained, validated or pretrained on are refused unless --allow-overlap
(which is recorded in metrics.json). See docs/evaluation.md.

examples:
  neuro-ssl evaluate --run runs/ad_linear --manifest test.csv --out runs/ad_linear/test
  neuro-ssl evaluate --run runs/brain_age --manifest test.csv --out eval_age --n-boot 2000 --seed 1
"""

from __future__ import annotations

import argparse
from pathlib import Path

from neuro_ssl.cli import _common


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", type=Path, required=True, metavar="RUN", help="fine-tuning run folder (or its model.pt)")
    parser.add_argument("--manifest", type=Path, required=True, metavar="TEST", help="manifest to score (held-out subjects)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument("--allow-overlap", action="store_true",
                        help="score even subjects the model has seen (recorded in metrics.json; results are optimistic)")
    parser.add_argument("--n-boot", type=_common.positive_int, default=1000, help="bootstrap resamples (subjects)")
    parser.add_argument("--alpha", type=_common.fraction, default=0.05, help="1 - confidence level of the intervals")
    parser.add_argument("--batch-size", type=_common.positive_int, default=8, help="scans per forward pass")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--skip-bad", action="store_true", help="report and skip unusable scans instead of stopping")
    _common.add_cache_dir(parser)
    _common.add_seed(parser)


def _fmt(entry) -> str:
    if entry["value"] is None:
        return "undefined"
    ci = "" if entry["ci_low"] is None else f" [{entry['ci_low']:.3f}, {entry['ci_high']:.3f}]"
    return f"{entry['value']:.3f}{ci}"


def render_figures(out_dir: Path, metrics: dict) -> None:
    """roc.png + confusion.png (classification) or scatter.png (regression) from the written files."""
    from neuro_ssl.report import plots

    out_dir = Path(out_dir)
    if metrics["task"] == "regression":
        plots.plot_regression(out_dir / "predictions.csv", out_dir / "scatter.png", label=metrics["label"])
    else:
        plots.plot_roc(out_dir / "roc_curve.csv", out_dir / "roc.png", title=f"ROC ({metrics['label']})")
        plots.plot_confusion(out_dir / "metrics.json", out_dir / "confusion.png")


def run(args: argparse.Namespace) -> int:
    from neuro_ssl.data.manifest import read_manifest
    from neuro_ssl.evaluation.evaluate import METRIC_NAMES, evaluate_run
    from neuro_ssl.training.loop import resolve_device

    _common.refuse_same_path(args.manifest, args.out, "--out")
    manifest = read_manifest(args.manifest)
    metrics = evaluate_run(args.run, manifest, args.out, allow_overlap=args.allow_overlap, n_boot=args.n_boot,
                           seed=args.seed, alpha=args.alpha, cache_dir=args.cache_dir, skip_bad=args.skip_bad,
                           batch_size=args.batch_size, device=str(resolve_device(args.device)), workers=args.workers)
    render_figures(args.out, metrics)
    level = round(100 * (1 - args.alpha))
    print(f"{metrics['n']} scan(s) of {metrics['n_subjects']} subject(s); {level}% CI by subject bootstrap")
    for name in METRIC_NAMES[metrics["task"]]:
        print(f"  {name:>18}: {_fmt(metrics[name])}")
    baseline = metrics.get("shortcut_baseline_auc")
    if baseline:
        shown = _fmt(baseline) if baseline.get("value") is not None else f"undefined ({baseline.get('note', 'no value')})"
        print(f"  {'shortcut baseline':>18}: {shown}"
              "  (AUC of trivial summaries of the same inputs: background, edges, intensity, volume)")
    from neuro_ssl.report.findings import evaluation_flags

    for flag in evaluation_flags("this model", metrics):
        print(f"warning: {flag}")
    if metrics["overlap_subjects"]:
        print(f"warning: --allow-overlap: {metrics['overlap_subjects']} subject(s) were seen in training")
    for message in metrics["rows_skipped"]:
        print(f"skipped: {message}")
    print(f"written: {Path(args.out) / 'metrics.json'}, predictions.csv and plots")
    return 0
