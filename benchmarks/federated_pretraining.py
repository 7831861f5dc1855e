"""Federated vs centralized vs single-site pretraining at equal total epochs: age-probe MAE.

On a synthetic cohort (``neuro-ssl synth``; three of its sites kept), split by subject into
train / test:

1. centralized: y-Aware (age) pretraining on every training scan of the three sites, T epochs;
2. federated: the same, but each site keeps its scans: ``neuro-ssl federate`` (Flower simulation,
   FedAvg weighted by scan count), T rounds x 1 local epoch;
3. single-site: the same pretraining on one site's training scans only, T epochs (each site in turn);
4. a random-init encoder as the floor.

Each encoder embeds the train and test scans (frozen); a ridge regression fitted on the train
embeddings predicts age on the test subjects: MAE in years with a 95% subject-bootstrap CI.
Prints the table, writes benchmarks/results/federated_pretraining.csv and ends with the ratios
federated / centralized and single-site / centralized. ``--quick`` is a smoke run.

    python benchmarks/federated_pretraining.py --subjects 120 --epochs 12
    python benchmarks/federated_pretraining.py --quick
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results"
QUICK = {"subjects": 24, "epochs": 2, "batch_size": 4, "width": 0.25, "n_boot": 100}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--subjects", type=int, default=120, help="synthetic subjects (before dropping the fourth site)")
    p.add_argument("--drop-site", default="941", help="the synthetic site left out (three sites remain)")
    p.add_argument("--epochs", type=int, default=12, help="total epochs T (federated: T rounds x 1 local epoch)")
    p.add_argument("--arch", default="resnet10")
    p.add_argument("--width", type=float, default=0.5)
    p.add_argument("--spacing", type=float, default=6.0)
    p.add_argument("--shape", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", type=Path, default=RESULTS / "federated_pretraining_work", help="cohort and runs")
    p.add_argument("--out", type=Path, default=RESULTS / "federated_pretraining.csv")
    p.add_argument("--quick", action="store_true", help="tiny smoke run (numbers mean nothing)")
    args = p.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    return args


def log(message: str) -> None:
    print(f"[federated_pretraining] {message}", file=sys.stderr, flush=True)


def prepare(args) -> dict:
    """Cohort (three sites), subject split 70/30 stratified by site, train manifest written for the sites."""
    from neuro_ssl.data.manifest import read_manifest, write_manifest
    from neuro_ssl.data.splits import make_splits
    from neuro_ssl.data.synth import make_cohort

    path = args.work / "cohort" / "manifest.csv"
    if not path.exists():
        make_cohort(args.work / "cohort", n_subjects=args.subjects, seed=args.seed, voxel_mm=4.0)
    df = read_manifest(path)
    df = df[(df["modality"] == "T1w") & (df["site"] != args.drop_site)]
    parts = make_splits(df, test_size=0.3, val_size=0.0, stratify="site", seed=args.seed)
    train_path = write_manifest(parts["train"], args.work / "train.csv")
    return {"train": parts["train"], "test": parts["test"], "train_path": train_path,
            "sites": sorted(parts["train"]["site"].unique())}


def _pretrain_config(args, epochs: int) -> dict:
    return {"loss": "yaware", "meta": ["age"], "sigma": 5.0, "arch": args.arch, "width": args.width,
            "spacing_mm": [args.spacing] * 3, "shape": [args.shape] * 3, "batch_size": args.batch_size,
            "epochs": epochs, "seed": args.seed, "workers": 0, "device": "cpu", "cache_dir": str(args.work / "cache")}


def pretrain_all(args, data: dict) -> dict[str, tuple[Path, float]]:
    """name -> (encoder.pt, seconds); runs already finished are reused."""
    from neuro_ssl.federated.config import FederatedConfig
    from neuro_ssl.federated.coordinator import federate
    from neuro_ssl.training.config import PretrainConfig
    from neuro_ssl.training.pretrain import pretrain

    runs: dict[str, tuple[Path, float]] = {}

    def timed(name, fn, run):
        if not (run / "encoder.pt").exists():
            started = time.perf_counter()
            fn(run)
            runs[name] = (run / "encoder.pt", time.perf_counter() - started)
            log(f"{name}: {runs[name][1]:.0f} s")
        else:
            runs[name] = (run / "encoder.pt", float("nan"))

    timed("centralized (3 sites pooled)", lambda run: pretrain(_pretrain_config(args, args.epochs), data["train"], run),
          args.work / "centralized")
    fed = FederatedConfig(rounds=args.epochs, local_epochs=1, site_column="site",
                          pretrain=PretrainConfig.from_dict(_pretrain_config(args, args.epochs)))
    timed("federated (3 sites, FedAvg)", lambda run: federate(fed, data["train_path"], run), args.work / "federated")
    for site in data["sites"]:
        rows = data["train"][data["train"]["site"] == site]
        timed(f"single site {site}", lambda run, rows=rows: pretrain(_pretrain_config(args, args.epochs), rows, run),
              args.work / f"single_{site}")
    return runs


def age_mae(args, data: dict, runs: dict) -> list[dict]:
    """Ridge on frozen embeddings (fit on train, scored on test), MAE with a subject-bootstrap CI."""
    import torch
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from neuro_ssl.evaluation.bootstrap import bootstrap_ci
    from neuro_ssl.evaluation.embed import compute_embeddings
    from neuro_ssl.evaluation.metrics import mae
    from neuro_ssl.models import build_encoder, load_encoder

    rows = []
    first = next(iter(runs.values()))[0]
    for name, (path, seconds) in [*runs.items(), ("random init", (first, float("nan")))]:
        encoder, meta = load_encoder(path)
        if name == "random init":
            torch.manual_seed(args.seed)
            encoder = build_encoder(encoder.arch, encoder.in_channels, encoder.norm, encoder.width).eval()
        emb = {k: compute_embeddings(encoder, meta, data[k], cache_dir=str(args.work / "cache")) for k in ("train", "test")}
        age = {k: _ages(data[k], emb[k]) for k in emb}
        feats = {k: emb[k].filter(regex=r"^f\d+$").to_numpy() for k in emb}
        model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 5, 15))).fit(feats["train"], age["train"])
        ci = bootstrap_ci(mae, age["test"], model.predict(feats["test"]), groups=emb["test"]["subject_id"].to_numpy(),
                          n_boot=args.n_boot, seed=args.seed)
        rows.append({"encoder": name, "age_mae_years": ci.value, "ci_low": ci.ci_low, "ci_high": ci.ci_high,
                     "pretrain_seconds": round(seconds, 1), "n_test_scans": len(age["test"]),
                     "n_test_subjects": emb["test"]["subject_id"].nunique()})
    return rows


def _ages(part: pd.DataFrame, emb: pd.DataFrame) -> np.ndarray:
    keys = part[["subject_id", "session_id", "age"]].astype(str).drop_duplicates(["subject_id", "session_id"])
    return emb[["subject_id", "session_id"]].merge(keys, on=["subject_id", "session_id"], how="left")["age"].to_numpy(float)


def main(argv=None) -> int:
    from neuro_ssl._utils.files import write_csv

    args = parse_args(argv)
    os.environ.setdefault("NEURO_SSL_QUIET", "1")
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    data = prepare(args)
    per_site = data["train"].groupby("site").size().to_dict()
    log(f"train {len(data['train'])} scans / {data['train']['subject_id'].nunique()} subjects {per_site}; "
        f"test {len(data['test'])} scans / {data['test']['subject_id'].nunique()} subjects")
    results = pd.DataFrame(age_mae(args, data, pretrain_all(args, data)))
    results["quick"] = bool(args.quick)
    write_csv(args.out, results)
    print(f"\nAge MAE (years) of ridge on frozen embeddings, train -> test [95% CI]; T = {args.epochs} epochs")
    for _, r in results.iterrows():
        print(f"  {r['encoder']:<30} {r['age_mae_years']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]"
              f"   pretraining {r['pretrain_seconds']} s")
    value = results.set_index("encoder")["age_mae_years"]
    single = value[[i for i in value.index if i.startswith("single site")]].mean()
    print(f"\n{args.out} ({time.perf_counter() - started:.0f} s)")
    print(f"ratio {value['federated (3 sites, FedAvg)'] / value['centralized (3 sites pooled)']:.3f} "
          f"(federated / centralized age MAE)")
    print(f"ratio {single / value['centralized (3 sites pooled)']:.3f} (single-site mean / centralized age MAE)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
