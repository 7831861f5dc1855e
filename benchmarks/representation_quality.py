"""How much do contrastive encoders help with few labels? AD vs CN AUC at 5/10/25 labels per class.

On a synthetic cohort (``neuro-ssl synth``; planted age and AD effects), split by subject into
train / val / test:

1. pretrain SimCLR (NT-Xent) and y-Aware (age kernel) encoders on the training scans (no labels);
2. fine-tune AD vs CN at each label budget (subjects per class, seeded, nested) with
   scratch / SimCLR+linear / y-Aware+linear / y-Aware+full, early stopping on val;
3. evaluate on the held-out test subjects: AUC with a 95% subject-bootstrap CI;
4. age MAE of a ridge regression on frozen embeddings (train -> test) for a random-init,
   the SimCLR and the y-Aware encoder.

Prints a table and writes benchmarks/results/representation_quality.csv (long format: one row
per method x budget x metric). ``--quick`` is a smoke run (tiny cohort and model, budgets 2,4);
its numbers mean nothing.

    python benchmarks/representation_quality.py --subjects 160 --epochs 30
    python benchmarks/representation_quality.py --quick
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results"
METHODS = (  # name, encoder run, fine-tuning mode (scratch: that encoder's network, random weights)
    ("scratch", "simclr", "scratch"),
    ("simclr+linear", "simclr", "linear"),
    ("yaware+linear", "yaware", "linear"),
    ("yaware+full", "yaware", "full"),
)
QUICK = {"subjects": 24, "voxel_mm": 6.0, "spacing": 8.0, "shape": (24, 28, 24), "arch": "resnet10", "width": 0.5,
         "epochs": 1, "finetune_epochs": 2, "budgets": (2, 4), "n_boot": 100, "batch_size": 8}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--subjects", type=int, default=160, help="synthetic subjects (about 30%% AD)")
    p.add_argument("--epochs", type=int, default=30, help="pretraining epochs")
    p.add_argument("--finetune-epochs", type=int, default=30)
    p.add_argument("--budgets", default="5,10,25", help="labelled subjects per class")
    p.add_argument("--voxel-mm", type=float, default=4.0, help="voxel size of the synthetic scans")
    p.add_argument("--spacing", type=float, default=4.0, help="preprocessing spacing (mm)")
    p.add_argument("--shape", default="40,48,40", help="preprocessing grid")
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--work", type=Path, default=RESULTS / "representation_quality_work", help="cohort and runs")
    p.add_argument("--out", type=Path, default=RESULTS / "representation_quality.csv")
    p.add_argument("--quick", action="store_true", help="tiny smoke run (numbers mean nothing)")
    args = p.parse_args(argv)
    args.budgets = tuple(int(b) for b in args.budgets.split(","))
    args.shape = tuple(int(s) for s in str(args.shape).split(","))
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    return args


def log(message: str) -> None:
    print(f"[representation_quality] {message}", file=sys.stderr, flush=True)


def prepare_cohort(args) -> dict[str, pd.DataFrame]:
    """Synthetic cohort, split 55/15/30 by subject, stratified by diagnosis."""
    from neuro_ssl.data.manifest import read_manifest
    from neuro_ssl.data.splits import make_splits
    from neuro_ssl.data.synth import make_cohort

    path = make_cohort(args.work / "cohort", n_subjects=args.subjects, seed=args.seed, voxel_mm=args.voxel_mm)
    parts = make_splits(read_manifest(path), test_size=0.3, val_size=0.15, stratify="diagnosis", seed=args.seed)
    for name, part in parts.items():
        part.attrs["source"] = f"{name} split"
    return parts


def pretrain_encoders(args, train: pd.DataFrame) -> dict[str, Path]:
    """SimCLR and y-Aware encoders on the training scans; an interrupted pretraining resumes."""
    from neuro_ssl.training.pretrain import pretrain

    encoders = {}
    for name, extra in (("simclr", {"loss": "simclr"}), ("yaware", {"loss": "yaware", "meta": ["age"], "sigma": 5.0})):
        run = args.work / f"pretrain_{name}"
        if not (run / "encoder.pt").exists():
            config = {**extra, "arch": args.arch, "width": args.width, "spacing_mm": [args.spacing] * 3,
                      "shape": list(args.shape), "epochs": args.epochs, "batch_size": args.batch_size,
                      "seed": args.seed, "device": args.device, "workers": args.workers,
                      "cache_dir": str(args.work / "cache")}
            started = time.perf_counter()
            pretrain(config, train, run, resume=run.exists())
            log(f"pretrained {name} in {time.perf_counter() - started:.0f} s")
        encoders[name] = run / "encoder.pt"
    return encoders


def finetune_and_evaluate(args, parts, encoders, method, encoder, mode, budget) -> list[dict]:
    from neuro_ssl.evaluation.evaluate import evaluate_run
    from neuro_ssl.training.finetune import finetune

    run = args.work / f"ft_{method}_{budget}"
    config = {"mode": mode, "encoder": str(encoders[encoder]), "label": "diagnosis", "classes": ("CN", "AD"),
              "labels_per_class": budget, "epochs": args.finetune_epochs, "batch_size": min(args.batch_size, 8),
              "patience": 10, "seed": args.seed, "device": args.device, "workers": args.workers,
              "cache_dir": str(args.work / "cache")}
    started = time.perf_counter()
    summary = finetune(config, parts["train"], run, val_df=parts["val"])
    metrics = evaluate_run(run, parts["test"], run / "test", n_boot=args.n_boot, seed=args.seed,
                           cache_dir=str(args.work / "cache"), device=_device(args.device))
    seconds = time.perf_counter() - started
    drawn = ",".join(f"{c}:{n}" for c, n in summary["label_budget"].items())
    return [{"method": method, "labels_per_class": budget, "metric": name, **metrics[name],
             "n_test_scans": metrics["n"], "n_test_subjects": metrics["n_subjects"], "subjects_drawn": drawn,
             "best_epoch": summary["best_epoch"], "seconds": round(seconds, 1)}
            for name in ("auc", "balanced_accuracy")]


def ridge_age_mae(args, parts, encoders) -> list[dict]:
    """Age MAE (years) of ridge on frozen embeddings, fitted on train, scored on test with a subject CI."""
    import torch
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from neuro_ssl.evaluation.bootstrap import bootstrap_ci
    from neuro_ssl.evaluation.embed import compute_embeddings
    from neuro_ssl.evaluation.metrics import mae
    from neuro_ssl.models import build_encoder, load_encoder

    rows = []
    for name in ("random", "simclr", "yaware"):
        encoder, meta = load_encoder(encoders["simclr" if name == "random" else name])
        if name == "random":
            torch.manual_seed(args.seed)
            encoder = build_encoder(encoder.arch, encoder.in_channels, encoder.norm, encoder.width).eval()
        emb = {k: compute_embeddings(encoder, meta, parts[k], cache_dir=str(args.work / "cache"),
                                     device=_device(args.device)) for k in ("train", "test")}
        age = {k: _ages(parts[k], emb[k]) for k in emb}
        feats = {k: emb[k].filter(regex=r"^f\d+$").to_numpy() for k in emb}
        model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 5, 15))).fit(feats["train"], age["train"])
        predicted = model.predict(feats["test"])
        ci = bootstrap_ci(mae, age["test"], predicted, groups=emb["test"]["subject_id"].to_numpy(),
                          n_boot=args.n_boot, seed=args.seed)
        rows.append({"method": f"{name} encoder + ridge", "labels_per_class": np.nan, "metric": "age_mae_years",
                     "value": ci.value, "ci_low": ci.ci_low, "ci_high": ci.ci_high,
                     "n_test_scans": len(predicted), "n_test_subjects": emb["test"]["subject_id"].nunique()})
    return rows


def _ages(part: pd.DataFrame, emb: pd.DataFrame) -> np.ndarray:
    """Age of each embedded scan, joined on (subject_id, session_id)."""
    keys = part[["subject_id", "session_id", "age"]].astype({"subject_id": str, "session_id": str})
    joined = emb[["subject_id", "session_id"]].merge(keys.drop_duplicates(["subject_id", "session_id"]),
                                                     on=["subject_id", "session_id"], how="left")
    return joined["age"].to_numpy(float)


def _device(name: str) -> str:
    from neuro_ssl.training.loop import resolve_device

    return str(resolve_device(name))


def print_table(results: pd.DataFrame) -> None:
    auc = results[results["metric"] == "auc"].copy()
    auc["cell"] = [f"{v:.3f} [{lo:.3f}, {hi:.3f}]" for v, lo, hi in zip(auc["value"], auc["ci_low"], auc["ci_high"])]
    table = auc.pivot(index="method", columns="labels_per_class", values="cell")
    table = table.reindex([m for m, _, _ in METHODS])
    table.columns = [f"{c} labels/class" for c in table.columns]
    print("\nAD vs CN, test AUC [95% CI, subject bootstrap]")
    print(table.to_string())
    age = results[results["metric"] == "age_mae_years"]
    print("\nAge MAE (years) of ridge on frozen embeddings [95% CI]")
    for _, row in age.iterrows():
        print(f"  {row['method']:<26} {row['value']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]")


def main(argv=None) -> int:
    import os

    from neuro_ssl._utils.files import write_csv

    args = parse_args(argv)
    os.environ.setdefault("NEURO_SSL_QUIET", "1")
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    parts = prepare_cohort(args)
    log(", ".join(f"{k}: {len(v)} scans / {v['subject_id'].nunique()} subjects" for k, v in parts.items()))
    encoders = pretrain_encoders(args, parts["train"])
    rows = []
    for budget in args.budgets:
        for method, encoder, mode in METHODS:
            rows += finetune_and_evaluate(args, parts, encoders, method, encoder, mode, budget)
            log(f"{method} at {budget} labels/class: AUC {rows[-2]['value']:.3f}")
    rows += ridge_age_mae(args, parts, encoders)
    results = pd.DataFrame(rows)
    results["labels_per_class"] = results["labels_per_class"].astype("Int64")
    results["quick"] = bool(args.quick)
    write_csv(args.out, results)
    print_table(results)
    print(f"\n{args.out} ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
