"""Does the classifier look at the brain, and at the right place? Audit, Grad-CAM localization, sanity checks.

On a synthetic cohort whose planted AD effect is known voxel for voxel (``neuro-ssl synth``;
by default the disease acts in the medial temporal lobes only), split by subject:

1. ``neuro-ssl audit`` of the training split with the default preprocessing (background masked)
   and with ``--no-mask-background`` (the 0.1 behaviour): how well the background level and the
   other trivial summaries predict AD vs CN;
2. for each preprocessing, an AD vs CN classifier trained from scratch (``finetune --mode
   scratch``), scored on the held-out test subjects (``evaluate``: AUC and the shortcut baseline);
3. Grad-CAM of the held-out AD scans (target AD) at each ResNet stage: mean share of the map
   inside each scan's planted region (``truth_region``, the union of the planted effects, and
   ``truth_medial_temporal``) against chance (region volume / brain volume);
4. ``saliency --checks`` at the best stage of the masked model: cascading randomization, deletion
   and localization.

Everything runs through the CLI, as a user would. Prints a table, writes
benchmarks/results/saliency_localization.csv and ends with a ``ratio`` line: gain over chance
of the masked model's best stage / the unmasked model's best stage.

    python benchmarks/saliency_localization.py --cohort COHORT        # an existing synth cohort
    python benchmarks/saliency_localization.py --subjects 100          # makes one (minutes)
    python benchmarks/saliency_localization.py --quick                 # smoke run; numbers mean nothing
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results"
LAYERS = ("encoder.net.layer1", "encoder.net.layer2", "encoder.net.layer3")
QUICK = {"subjects": 16, "voxel_mm": 8.0, "spacing": 8.0, "shape": "24,24,24", "epochs": 2, "n_boot": 50}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cohort", type=Path, default=None, help="an existing synth cohort folder (else one is made)")
    p.add_argument("--subjects", type=int, default=100)
    p.add_argument("--voxel-mm", type=float, default=None, help="synth voxel size (default: each site's own)")
    p.add_argument("--spacing", type=float, default=4.0)
    p.add_argument("--shape", default="48,48,48")
    p.add_argument("--arch", default="resnet10")
    p.add_argument("--width", type=float, default=0.5)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", type=Path, default=RESULTS / "saliency_localization_work")
    p.add_argument("--out", type=Path, default=RESULTS / "saliency_localization.csv")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    return args


def log(message: str) -> None:
    print(f"[saliency_localization] {message}", file=sys.stderr, flush=True)


def cli(*argv) -> None:
    from neuro_ssl.cli.main import main

    code = main([str(a) for a in argv])
    if code != 0:
        raise SystemExit(f"neuro-ssl {' '.join(map(str, argv[:1]))} failed with exit {code}")


def prepare(args) -> tuple[Path, Path, Path]:
    """The cohort's manifest, the split folder, and a manifest of the held-out AD T1w scans."""
    work = args.work
    if args.cohort is None:
        args.cohort = work / "cohort"
        if not (args.cohort / "manifest.csv").exists():
            synth = ["synth", args.cohort, "--subjects", args.subjects, "--seed", args.seed]
            cli(*synth, *(["--voxel-mm", args.voxel_mm] if args.voxel_mm else []))
    manifest = args.cohort / "manifest.csv"
    splits = work / "splits"
    if not (splits / "test.csv").exists():
        cli("split", manifest, "--out", splits, "--stratify", "diagnosis", "--seed", args.seed)
    from neuro_ssl.data.manifest import read_manifest, write_manifest

    test = read_manifest(splits / "test.csv")
    ad = test[(test["diagnosis"] == "AD") & (test["modality"] == "T1w")]
    write_manifest(ad, work / "test_ad.csv")
    return manifest, splits, work / "test_ad.csv"


def preprocessing_flags(args, masked: bool) -> list:
    return ["--spacing", args.spacing, "--shape", args.shape] + ([] if masked else ["--no-mask-background"])


def audit(args, splits: Path, masked: bool) -> pd.DataFrame:
    out = args.work / ("audit" if masked else "audit_unmasked")
    cli("audit", splits / "train.csv", "--out", out, "--label", "diagnosis", "--classes", "CN,AD",
        "--n-boot", args.n_boot, "--seed", args.seed, *preprocessing_flags(args, masked))
    return pd.read_csv(out / "audit.csv").set_index("feature")


def train_and_score(args, splits: Path, masked: bool) -> tuple[Path, dict]:
    run = args.work / ("scratch" if masked else "scratch_unmasked")
    if not (run / "model.pt").exists():
        cli("finetune", "--manifest", splits / "train.csv", "--val-manifest", splits / "val.csv", "--out", run,
            "--mode", "scratch", "--label", "diagnosis", "--classes", "CN,AD", "--arch", args.arch,
            "--width", args.width, "--epochs", args.epochs, "--batch-size", args.batch_size, "--lr", args.lr,
            "--patience", max(5, args.epochs // 3), "--seed", args.seed, *preprocessing_flags(args, masked))
    cli("evaluate", "--run", run, "--manifest", splits / "test.csv", "--out", run / "test",
        "--n-boot", args.n_boot, "--seed", args.seed)
    return run, json.loads((run / "test" / "metrics.json").read_text())


def localization(args, run: Path, test_ad: Path, layer: str, checks: bool = False) -> dict:
    out = run / f"saliency_{layer.split('.')[-1]}{'_checks' if checks else ''}"
    cli("saliency", "--run", run, "--manifest", test_ad, "--out", out, "--target", "AD", "--layer", layer,
        "--regions-column", "truth_region", "--max-viewers", 0, "--seed", args.seed, *(["--checks"] if checks else []))
    summary = pd.read_csv(out / "summary.csv")
    regions = pd.read_csv(out / "regions.csv").set_index("region")
    row = {"layer": layer.split(".")[-1], "scans": len(summary),
           "share_union": regions.loc["truth_region", "mean_share"],
           "chance_union": regions.loc["truth_region", "chance_share"],
           "gain_union": regions.loc["truth_region", "ratio_to_chance"]}
    if checks:
        row["checks"] = json.loads((out / "checks.json").read_text())
    return row


def main(argv=None) -> int:
    args = parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    manifest, splits, test_ad = prepare(args)
    rows = []
    best = {}
    for masked in (True, False):
        name = "masked (default)" if masked else "unmasked (--no-mask-background)"
        table = audit(args, splits, masked)
        log(f"audit, {name}: background_level AUC {table.loc['background_level', 'auc']:.3f}")
        run, metrics = train_and_score(args, splits, masked)
        for layer in LAYERS:
            row = localization(args, run, test_ad, layer)
            row.update({"preprocessing": name, "test_auc": metrics["auc"]["value"],
                        "shortcut_baseline_auc": metrics["shortcut_baseline_auc"]["value"],
                        "audit_background_auc": table.loc["background_level", "auc"],
                        "audit_all_image_auc": table.loc["all_image_summaries", "auc"]})
            rows.append(row)
        best[masked] = max((r for r in rows if r["preprocessing"] == name), key=lambda r: r["gain_union"])
    layer = "encoder.net." + best[True]["layer"]
    checked = localization(args, args.work / "scratch", test_ad, layer, checks=True)
    results = pd.DataFrame(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results.to_csv(args.out, index=False)
    print(results[["preprocessing", "layer", "test_auc", "shortcut_baseline_auc", "audit_background_auc",
                   "share_union", "chance_union", "gain_union"]].to_string(index=False, float_format="%.3f"))
    randomization = checked["checks"]["randomization"]
    print("randomization (masked, " + best[True]["layer"] + "): " +
          ", ".join(f"{r['stage']} spearman {r['spearman']:.2f} ssim {r['ssim']:.2f}" for r in randomization))
    deletion = checked["checks"]["deletion"]
    print("deletion: " + ", ".join(f"top {k}% {v['salient_drop']:.3f} vs random {v['random_drop']:.3f}"
                                    for k, v in deletion.items()))
    print(f"wall time {time.perf_counter() - started:.0f} s")
    print(f"ratio {best[True]['gain_union'] / best[False]['gain_union']:.2f}  "
          f"(gain over chance in the planted region, best stage: masked / unmasked)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
