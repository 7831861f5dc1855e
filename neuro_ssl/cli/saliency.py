"""Where did the fine-tuned model look? Grad-CAM (or Guided Grad-CAM / Integrated Gradients) per scan.

Each scan is preprocessed exactly as the model was trained (the run's stored preprocessing), the
map is computed on the model grid (Grad-CAM: gradients pooled over all three axes, ReLU,
trilinear upsampling), then mapped back through the preprocessing onto the scan's own voxel grid
and written with the scan's affine: it overlays the scan in FSLeyes, ITK-SNAP, 3D Slicer or
NiiVue as it is. See docs/saliency.md.

Writes DIR/maps/<subject>_<session>_<modality>_saliency.nii.gz, DIR/summary.csv (prediction,
true label, confidence, coverage_pct, peak in voxels and mm, region_<name> shares), DIR/regions.csv
(mean share per region against chance), DIR/group_mean.nii.gz (when every scan shares one grid),
DIR/montages/*.png and DIR/index.html (self-contained review page with NiiVue viewers). With
--checks also DIR/checks.json: cascading randomization, localization, deletion and (with
--compare-run) repeatability (Adebayo et al. NeurIPS 2018; Arun et al. Radiology: AI 2021).

examples:
  neuro-ssl saliency --run runs/ad_full --manifest splits/test.csv --out runs/ad_full/saliency
  neuro-ssl saliency --run runs/ad_full --manifest test.csv --out sal --regions cohort/truth \\
      --regions-column truth_region --target AD
  neuro-ssl saliency --run runs/ad_full --manifest test.csv --out sal --regions atlas.nii.gz \\
      --region-labels atlas_labels.tsv --method integrated-gradients
  neuro-ssl saliency --run runs/ad_full --manifest test.csv --out sal --layer encoder.net.layer3 \\
      --regions-column truth_region --checks --compare-run runs/ad_full_seed1
"""

from __future__ import annotations

import argparse
from pathlib import Path

from neuro_ssl.cli import _common
from neuro_ssl.errors import ConfigError

METHODS = ("gradcam", "guided-gradcam", "integrated-gradients")


def _non_negative_int(text: str) -> int:
    if not str(text).strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return int(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    io = parser.add_argument_group("inputs and outputs")
    io.add_argument("--run", type=Path, required=True, metavar="RUN",
                    help="fine-tuned run folder holding model.pt (or the model.pt file itself)")
    io.add_argument("--manifest", type=Path, required=True, metavar="M", help="scans to explain (CSV/TSV)")
    io.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    io.add_argument("--max-scans", type=_common.positive_int, default=None, metavar="N",
                    help="explain only the first N scans of the manifest (default: every scan)")
    io.add_argument("--skip-bad", action="store_true", help="list unusable scans in DIR/skipped.csv instead of stopping")
    _common.add_cache_dir(io)

    method = parser.add_argument_group("method")
    method.add_argument("--method", choices=METHODS, default="gradcam",
                        help="gradcam (Selvaraju et al. 2017), guided-gradcam, or integrated-gradients (voxel level)")
    method.add_argument("--layer", default=None, metavar="NAME",
                        help="dotted layer name for (Guided) Grad-CAM, e.g. encoder.net.layer3; "
                             "default: the encoder's last convolutional stage")
    method.add_argument("--target", default=None, metavar="CLASS",
                        help="class to explain; default: the predicted class (regression: the output)")
    method.add_argument("--n-steps", type=_common.positive_int, default=16,
                        help="integration steps for integrated-gradients")
    method.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")

    measure = parser.add_argument_group("measures")
    measure.add_argument("--threshold", type=_common.fraction, default=0.5,
                         help="coverage counts brain voxels above this fraction of the map's peak")
    measure.add_argument("--regions", type=Path, default=None, metavar="DIR_OR_FILE",
                         help="a folder of binary masks (one region per file) or one integer atlas, in any space")
    measure.add_argument("--region-labels", type=Path, default=None, metavar="TSV",
                         help="index,name table for an atlas; default: <atlas>.tsv/.csv or <atlas>_labels.tsv/.csv beside it")
    measure.add_argument("--regions-column", default=None, metavar="COL",
                         help="manifest column holding a per-scan region mask (e.g. truth_region)")
    measure.add_argument("--brain-mask", type=Path, default=None, metavar="FILE",
                         help="brain mask in any space for coverage; default: the scan's non-background voxels")

    checks = parser.add_argument_group("sanity checks")
    checks.add_argument("--checks", action="store_true",
                        help="run the saliency sanity checks (cascading randomization, localization with regions, "
                             "deletion) and write DIR/checks.json; costs about 8 extra maps per scan")
    checks.add_argument("--compare-run", type=Path, default=None, metavar="RUN2",
                        help="with --checks: a model trained with another seed (same preprocessing and classes); "
                             "adds the repeatability check")
    _common.add_seed(checks)

    page = parser.add_argument_group("review page")
    page.add_argument("--max-viewers", type=_non_negative_int, default=12, metavar="N",
                      help="interactive viewers on index.html for the first N scans (the rest: montage only)")
    page.add_argument("--radiological", action="store_true",
                      help="show pictures in radiological convention (patient's right on the left); "
                           "otherwise neurological")


def run(args: argparse.Namespace) -> int:
    from neuro_ssl.data.manifest import read_manifest
    from neuro_ssl.data.cache import resolve_cache_dir
    from neuro_ssl.interpret.cohort import SaliencyOptions, explain_cohort
    from neuro_ssl.models import load_model
    from neuro_ssl.training.loop import resolve_device

    _common.refuse_same_path(args.manifest, args.out, "--out")
    if args.compare_run is not None and not args.checks:
        raise ConfigError("--compare-run is part of the sanity checks: add --checks")
    device = resolve_device(args.device)
    model, meta = load_model(_model_path(args.run))
    compare = _compare_model(args.compare_run, meta, device) if args.compare_run is not None else None
    manifest = read_manifest(args.manifest)
    options = SaliencyOptions(
        method=args.method, layer=args.layer, target=args.target, threshold=args.threshold,
        n_steps=args.n_steps, max_scans=args.max_scans, skip_bad=args.skip_bad, regions=args.regions,
        region_labels=args.region_labels, regions_column=args.regions_column, brain_mask=args.brain_mask,
        cache_dir=resolve_cache_dir(args.cache_dir), checks=args.checks, compare=compare, seed=args.seed,
    )
    result = explain_cohort(model.to(device), meta, manifest, args.out, options,
                            progress=lambda scans: _common.progress(scans, desc="saliency", unit="scan"))
    page = _render(args, result, meta)
    print(f"saliency ({args.method}{' at ' + result.layer if result.layer else ''}): "
          f"{len(result.summary)} scan(s) -> {result.summary_path}")
    for warning in result.warnings:
        print(f"warning: {warning}")
    empty = int(result.summary["peak_x_mm"].isna().sum())
    if empty and not (result.summary["constant_map"] == "true").all():
        print(f"note: {empty} map(s) are all zero: the explained class has no positive evidence at this layer "
              "(try an earlier --layer, e.g. encoder.net.layer3, or another --target)")
    if result.checks_path:
        print(f"sanity checks: {result.checks_path}")
        for check, sentence in result.checks.get("readings", {}).items():
            print(f"  {check}: {sentence}")
    from neuro_ssl.report.findings import read_saliency_flags

    for flag in read_saliency_flags(args.out):
        print(f"warning: {flag}")
    if result.skipped:
        print(f"skipped {len(result.skipped)} unusable scan(s): {args.out / 'skipped.csv'}")
    if result.group_mean:
        print(f"group mean map: {result.group_mean}")
    print(f"review page: {page}")
    return 0


def _model_path(run: Path) -> Path:
    return run / "model.pt" if run.is_dir() else run


def _compare_model(run: Path, meta: dict, device) -> tuple:
    """The second model for repeatability; refused unless it sees the same inputs and classes."""
    from neuro_ssl.models import load_model

    other, other_meta = load_model(_model_path(run))
    for key in ("preprocess", "task", "classes"):
        if other_meta.get(key) != meta.get(key):
            raise ConfigError(f"--compare-run {run}: its {key} ({other_meta.get(key)}) differs from --run's "
                              f"({meta.get(key)}); compare two trainings of one recipe with different seeds")
    return other.to(device), str(run)


def _render(args: argparse.Namespace, result, meta: dict) -> Path:
    """PNG montages for every scan, then the review page."""
    from neuro_ssl.data.io import load_volume
    from neuro_ssl.report.html import write_review_page
    from neuro_ssl.report.montage import write_montage

    rows = result.summary.to_dict("records")
    for row in _common.progress(rows, desc="montages", unit="scan"):
        png = args.out / "montages" / (Path(row["saliency"]).name.replace(".nii.gz", ".png"))
        name = " ".join(v for v in (row["subject_id"], row["session_id"]) if isinstance(v, str) and v)
        truth = row.get("true_label")
        truth = "" if truth is None or (isinstance(truth, float) and truth != truth) else f", true {truth}"
        image, affine = load_volume(row["image"])
        saliency, saliency_affine = load_volume(row["saliency"])
        row["montage"] = write_montage(image, saliency, affine, png, threshold=args.threshold,
                                       radiological=args.radiological, saliency_affine=saliency_affine,
                                       title=f"{name}: predicted {row['predicted']}{truth}")
    target = args.target or ("the predicted class" if meta.get("task", "classification") != "regression" else "the output")
    notes = [f"Model: {args.run} ({meta.get('arch', '?')}, {meta.get('task', 'classification')}"
             f"{', classes ' + ', '.join(map(str, meta['classes'])) if meta.get('classes') else ''}).",
             f"Method: {args.method}{' at layer ' + result.layer if result.layer else ''}, explaining {target}.",
             f"Coverage: share of brain voxels where the map exceeds {args.threshold:g} x its peak."]
    if meta.get("label") and "true_label" in result.summary and result.summary["true_label"].notna().any():
        notes.append(f"True label: the manifest's '{meta['label']}' column; wrong predictions are marked.")
    return write_review_page(args.out, rows, load_volume, title="Saliency review", notes=notes,
                             threshold=args.threshold, radiological=args.radiological, max_viewers=args.max_viewers,
                             warnings=result.warnings, checks=result.checks)
