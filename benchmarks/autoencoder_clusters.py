"""Do clusters of the embeddings follow the diagnosis? Contrastive (V)AE vs SimCLR, y-Aware, supervised.

On a synthetic cohort (``neuro-ssl synth``; planted age and AD effects, CN / MCI / AD), split by
subject into train / test:

1. pretrain on the training scans, without labels: SimCLR (NT-Xent), y-Aware (age kernel),
   ae-contrastive and vae-contrastive (same network, grid, batch, epochs, seed);
2. a supervised reference: a classifier of CN / MCI / AD trained from scratch on the training
   scans (``finetune --mode scratch``), whose encoder is then embedded like the others;
3. a random-init encoder (same network) as the floor;
4. each encoder embeds the held-out test scans, as ``neuro-ssl embed`` does: encoder features h,
   and for the pretrained ones also the projection z = head(h) (``embed --projection``; for the
   autoencoders z is the latent code mu that the decoder reads); k-means with k = 3 (z-scored
   features, as ``neuro-ssl cluster``) against the diagnosis at the visit: ARI and NMI; for the
   autoencoders also the in-brain reconstruction MSE on the test scans (``neuro-ssl reconstruct``).

Prints a table, writes benchmarks/results/autoencoder_clusters.csv, and ends with a ``ratio``
line: NMI of ae-contrastive / NMI of SimCLR, measured side by side in this run. ``--quick`` is a
smoke run (tiny cohort and model); its numbers mean nothing.

    python benchmarks/autoencoder_clusters.py --subjects 80 --epochs 10
    python benchmarks/autoencoder_clusters.py --quick
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results"
PRETRAINED = (  # name, objective options
    ("SimCLR", {"loss": "simclr"}),
    ("y-Aware (age)", {"loss": "yaware", "meta": ["age"], "sigma": 5.0}),
    ("ae-contrastive", {"loss": "ae-contrastive"}),
    ("vae-contrastive", {"loss": "vae-contrastive", "kl_weight": 1e-3}),
)
QUICK = {"subjects": 16, "spacing": 8.0, "shape": (16, 16, 16), "width": 0.25, "epochs": 1, "finetune_epochs": 1,
         "batch_size": 4}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--subjects", type=int, default=80, help="synthetic subjects (about 40/30/30 %% CN/MCI/AD)")
    p.add_argument("--epochs", type=int, default=10, help="pretraining epochs")
    p.add_argument("--finetune-epochs", type=int, default=10, help="epochs of the supervised classifier")
    p.add_argument("--voxel-mm", type=float, default=4.0, help="voxel size of the synthetic scans")
    p.add_argument("--spacing", type=float, default=6.0, help="preprocessing spacing (mm)")
    p.add_argument("--shape", default="32,32,32", help="preprocessing grid")
    p.add_argument("--arch", default="resnet10")
    p.add_argument("--width", type=float, default=0.5)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--work", type=Path, default=RESULTS / "autoencoder_clusters_work", help="cohort and runs")
    p.add_argument("--out", type=Path, default=RESULTS / "autoencoder_clusters.csv")
    p.add_argument("--quick", action="store_true", help="tiny smoke run (numbers mean nothing)")
    args = p.parse_args(argv)
    args.shape = tuple(int(s) for s in str(args.shape).split(","))
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    return args


def log(message: str) -> None:
    print(f"[autoencoder_clusters] {message}", file=sys.stderr, flush=True)


def prepare_cohort(args) -> dict[str, pd.DataFrame]:
    """Synthetic cohort split 70/30 by subject, stratified by diagnosis."""
    from neuro_ssl.data.manifest import read_manifest
    from neuro_ssl.data.splits import make_splits
    from neuro_ssl.data.synth import make_cohort

    path = args.work / "cohort" / "manifest.csv"
    if not path.exists():
        make_cohort(args.work / "cohort", n_subjects=args.subjects, seed=args.seed, voxel_mm=args.voxel_mm)
    parts = make_splits(read_manifest(path), test_size=0.3, val_size=0.0, stratify="diagnosis", seed=args.seed)
    for name, part in parts.items():
        part.attrs["source"] = f"{name} split"
    return {"train": parts["train"], "test": parts["test"]}


def _common(args) -> dict:
    return {"arch": args.arch, "width": args.width, "spacing_mm": [args.spacing] * 3, "shape": list(args.shape),
            "batch_size": args.batch_size, "seed": args.seed, "device": args.device, "workers": args.workers,
            "cache_dir": str(args.work / "cache")}


def train_encoders(args, train: pd.DataFrame) -> dict[str, tuple[Path, float]]:
    """Every pretrained encoder and the supervised one: name -> (encoder or model path, seconds)."""
    from neuro_ssl.training.finetune import finetune
    from neuro_ssl.training.pretrain import pretrain

    runs = {}
    for name, extra in PRETRAINED:
        run = args.work / f"pretrain_{extra['loss']}"
        started = time.perf_counter()
        if not (run / "metrics.csv").exists() or len(pd.read_csv(run / "metrics.csv")) < args.epochs:
            pretrain({**extra, **_common(args), "epochs": args.epochs}, train, run, resume=run.exists())
        runs[name] = (run / "encoder.pt", time.perf_counter() - started)
        log(f"{name}: {runs[name][1]:.0f} s")
    run = args.work / "supervised"
    started = time.perf_counter()
    if not (run / "model.pt").exists():
        config = {**_common(args), "mode": "scratch", "label": "diagnosis", "classes": ("CN", "MCI", "AD"),
                  "epochs": args.finetune_epochs}
        finetune(config, train, run)
    runs["supervised (CN/MCI/AD, scratch)"] = (run / "model.pt", time.perf_counter() - started)
    return runs


def _network(name: str, path: Path, args, projection: bool):
    import torch

    from neuro_ssl.evaluation.embed import load_embedding_network
    from neuro_ssl.models import build_encoder

    if path.name == "model.pt":
        return load_embedding_network(run=path)
    encoder, meta = load_embedding_network(encoder_path=path, projection=projection)
    if name == "random init":
        torch.manual_seed(args.seed)
        encoder = build_encoder(encoder.arch, encoder.in_channels, encoder.norm, encoder.width).eval()
    return encoder, meta


def score(args, name: str, path: Path, seconds: float, test: pd.DataFrame) -> dict:
    """k-means (k = 3) of the test embeddings (h, and z when there is a head) against diagnosis;
    reconstruction MSE for the autoencoders."""
    from neuro_ssl.evaluation.cluster import cluster_embeddings
    from neuro_ssl.evaluation.embed import compute_embeddings
    from neuro_ssl.training.loop import resolve_device

    device = str(resolve_device(args.device))
    row = {"method": name, "n_scans": 0, "n_subjects": int(test["subject_id"].nunique()),
           "train_seconds": round(seconds, 1), "recon_mse": float("nan")}
    with_head = path.name == "encoder.pt" and name != "random init"
    for key, projection in (("h", False), ("z", True)) if with_head else (("h", False),):
        network, meta = _network(name, path, args, projection)
        embeddings = compute_embeddings(network, meta, test, cache_dir=str(args.work / "cache"), device=device)
        _, metrics = cluster_embeddings(embeddings, test, k=3, against="diagnosis", seed=args.seed)
        row.update({f"ari_{key}": metrics["ari"], f"nmi_{key}": metrics["nmi"], "n_scans": metrics["n_labelled"]})
    if (path.parent / "decoder.pt").exists() and name != "random init":
        from neuro_ssl.evaluation.reconstruct import load_autoencoder, reconstruct_manifest

        encoder, decoder, ae_meta = load_autoencoder(path)
        table = reconstruct_manifest(encoder, decoder, ae_meta, test, args.work / f"recon_{path.parent.name}",
                                     cache_dir=str(args.work / "cache"), device=device)
        row["recon_mse"] = float(table["mse"].mean())
    return row


def main(argv=None) -> int:
    import os

    from neuro_ssl._utils.files import write_csv

    args = parse_args(argv)
    os.environ.setdefault("NEURO_SSL_QUIET", "1")
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    parts = prepare_cohort(args)
    log(", ".join(f"{k}: {len(v)} scans / {v['subject_id'].nunique()} subjects" for k, v in parts.items()))
    runs = train_encoders(args, parts["train"])
    runs = {"random init": (runs["SimCLR"][0], 0.0), **runs}
    rows = [score(args, name, path, seconds, parts["test"]) for name, (path, seconds) in runs.items()]
    results = pd.DataFrame(rows)
    results["quick"] = bool(args.quick)
    write_csv(args.out, results)
    print(f"\nk-means (k = 3) of held-out test embeddings vs diagnosis (CN / MCI / AD); "
          f"{rows[0]['n_scans']} scans, {rows[0]['n_subjects']} subjects")
    print(results.drop(columns="quick").to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"\n{args.out} ({time.perf_counter() - started:.0f} s)")
    by = results.set_index("method")["nmi_h"]
    print(f"ratio {by['ae-contrastive'] / max(by['SimCLR'], 1e-12):.3f} (NMI of h, ae-contrastive / SimCLR)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
