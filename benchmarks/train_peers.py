"""Contrastive training steps: neuro-ssl's whole pipeline against a plain MONAI-tutorial loop, one run.

Same synthetic scans (``neuro_ssl.data.synth.make_cohort``, one visit per subject, realistic
1-1.5 mm voxels), same grid, same batch, same two views per scan, same DataLoader workers, same
network (MONAI's 3D ResNet with a stride-2 stem and the 512-128 projection MLP), fp32, at
2 mm 96x112x96 and at 4 mm 48x56x48:

- neuro-ssl: ``neuro_ssl.training.pretrain.pretrain`` itself, the product's code path: scans
  screened and preprocessed once into the disk cache, ``TwoViewDataset`` (its full augmentation
  chain, reseeded per (epoch, scan, view)) in DataLoader workers, ``EpochBatchSampler``,
  encoder + head, NT-Xent, AdamW with warmup-cosine, metrics and TensorBoard logging. It runs
  1 + ``--epochs`` epochs; its scans/s is the Pretrainer's own per-epoch figure (scans in the
  epoch / seconds from the epoch's first fetch to its last optimizer step; checkpoint writes
  after the epoch are not in it) over the timed epochs, i.e. all but the first.
- MONAI tutorial: ``CacheDataset`` (LoadImaged, EnsureChannelFirstd, Orientationd RAS,
  Spacingd, ResizeWithPadOrCropd, NormalizeIntensityd over the brain, cached in memory), then
  ``CopyItemsd`` and, on each copy, its own ``RandFlipd`` / ``RandAffined`` /
  ``RandGaussianNoised``; ``monai.data.DataLoader``; the two views through the network one after
  the other as the MONAI self-supervised tutorial does; ``ContrastiveLoss``; AdamW. The same
  epochs, timed the same way.

A "data only" row per pipeline gives its views/s without the network (one worker-fed epoch), to
tell augmentation cost from model cost. Prints a table, writes
``benchmarks/results/train_peers.csv`` and ends with ``ratio`` lines: neuro-ssl scans/s / MONAI
scans/s per grid (> 1: neuro-ssl faster).

    python benchmarks/train_peers.py [--batch-size 4] [--steps 3] [--epochs 2] [--workers 2]
    python benchmarks/train_peers.py --quick       # dry run: tiny grids and model
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "train_peers.csv"
GRIDS = ((2.0, (96, 112, 96)), (4.0, (48, 56, 48)))
QUICK_GRIDS = ((8.0, (24, 28, 24)), (12.0, (16, 20, 16)))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--batch-size", type=int, default=4, help="scans per step (two views each)")
    p.add_argument("--steps", type=int, default=3, help="steps per epoch (the cohort has batch x steps scans)")
    p.add_argument("--epochs", type=int, default=2, help="timed epochs, after one untimed warm-up epoch")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of both pipelines")
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--device", default="auto")
    p.add_argument("--voxel-mm", type=float, default=None, help="synthetic voxel size (default: realistic 1-1.5 mm)")
    p.add_argument("--grids", default=None, help="SPACING:XxYxZ,... (default: 2:96x112x96,4:48x56x48)")
    p.add_argument("--work", type=Path, default=None, help="folder for the cohort, cache and runs (default: temporary)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--quick", action="store_true", help="dry run: tiny grids and model, 2 scans a step")
    args = p.parse_args(argv)
    args.grids = _grids(args.grids) if args.grids else GRIDS
    if args.quick:
        args.grids, args.voxel_mm, args.arch, args.width = QUICK_GRIDS, 6.0, "resnet10", 0.25
        args.batch_size, args.steps, args.epochs, args.workers = 2, 2, 1, min(args.workers, 1)
    return args


def _grids(text: str):
    grids = []
    for item in text.split(","):
        spacing, shape = item.split(":")
        grids.append((float(spacing), tuple(int(v) for v in shape.lower().split("x"))))
    return tuple(grids)


def log(message: str) -> None:
    print(f"[train_peers] {message}", file=sys.stderr, flush=True)


# ---- neuro-ssl --------------------------------------------------------------------------------

def neuro_config(args, spacing: float, shape) -> dict:
    return {"loss": "simclr", "arch": args.arch, "width": args.width, "spacing_mm": [spacing] * 3,
            "shape": list(shape), "batch_size": args.batch_size, "epochs": 1 + args.epochs,
            "workers": args.workers, "device": args.device, "cache_dir": str(args.work / "cache"),
            "warmup_epochs": 0, "seed": 0}


def time_neuro_ssl(args, manifest, spacing: float, shape, run_dir: Path) -> float:
    """Scans/s of the timed epochs of a real ``pretrain`` run, as the Pretrainer measures them."""
    import pandas as pd

    from neuro_ssl.training.pretrain import pretrain

    pretrain(neuro_config(args, spacing, shape), manifest, run_dir)
    epochs = pd.read_csv(run_dir / "metrics.csv").iloc[1:]
    seconds = (args.batch_size * args.steps / epochs["volumes_per_s"]).sum()
    return args.batch_size * args.steps * len(epochs) / seconds


def neuro_ssl_views_per_s(args, manifest, spacing: float, shape) -> float:
    """Views/s of the product's data path alone (cache -> TwoViewDataset in workers), one epoch."""
    import torch

    from neuro_ssl.training import loop
    from neuro_ssl.training.config import PretrainConfig
    from neuro_ssl.training.pretrain_data import build_train_data

    cfg = PretrainConfig.from_dict(neuro_config(args, spacing, shape))
    data = build_train_data(manifest, cfg, log=lambda m: None)
    sampler = loop.EpochBatchSampler(data.n_items, args.batch_size, seed=0)
    loader = torch.utils.data.DataLoader(data.dataset, batch_sampler=sampler, num_workers=args.workers,
                                         prefetch_factor=4 if args.workers else None)
    return _views_per_s(loader, ("view1", "view2"))


# ---- the MONAI tutorial loop -------------------------------------------------------------------

def monai_dataset(files: list[dict], spacing: float, shape):
    """CacheDataset: the deterministic chain cached in memory, then two randomly augmented copies."""
    import math

    import numpy as np
    from monai.data import CacheDataset
    from monai.transforms import (
        Compose, CopyItemsd, EnsureChannelFirstd, LoadImaged, NormalizeIntensityd, Orientationd,
        RandAffined, RandFlipd, RandGaussianNoised, ResizeWithPadOrCropd, Spacingd,
    )

    def augment(key):
        return [RandFlipd(keys=key, prob=0.5, spatial_axis=0),
                RandAffined(keys=key, prob=0.5, rotate_range=[math.radians(5)] * 3, scale_range=[0.05] * 3,
                            mode="bilinear", padding_mode="border"),
                RandGaussianNoised(keys=key, prob=0.5, std=0.05)]

    chain = Compose([
        LoadImaged(keys="image", image_only=True, dtype=np.float32),
        EnsureChannelFirstd(keys="image"),
        Orientationd(keys="image", axcodes="RAS", labels=None),
        Spacingd(keys="image", pixdim=(spacing,) * 3, mode="bilinear"),
        ResizeWithPadOrCropd(keys="image", spatial_size=shape),
        NormalizeIntensityd(keys="image", nonzero=True),
        CopyItemsd(keys="image", times=1, names="image_2"),
        *augment("image"), *augment("image_2"),
    ])
    return CacheDataset(files, transform=chain, cache_rate=1.0, num_workers=None, progress=False)


def monai_loader(args, dataset):
    from monai.data import DataLoader

    return DataLoader(dataset, batch_size=args.batch_size, shuffle=True, drop_last=True,
                      num_workers=args.workers, persistent_workers=args.workers > 0)


def monai_model(args, device):
    import torch
    from monai.networks.nets import resnet

    torch.manual_seed(0)
    backbone = getattr(resnet, args.arch)(spatial_dims=3, n_input_channels=1, conv1_t_stride=2,
                                          feed_forward=False, widen_factor=args.width)
    features = int(512 * args.width) * (4 if args.arch == "resnet50" else 1)
    head = torch.nn.Sequential(torch.nn.Linear(features, 512, bias=False), torch.nn.BatchNorm1d(512),
                               torch.nn.ReLU(inplace=True), torch.nn.Linear(512, 128))
    return torch.nn.Sequential(backbone, head).to(device)


def time_monai(args, dataset, device) -> float:
    """Scans/s of the timed epochs of the tutorial loop (the first epoch is the warm-up)."""
    import torch
    from monai.losses import ContrastiveLoss

    model = monai_model(args, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = ContrastiveLoss(temperature=0.1)
    loader = monai_loader(args, dataset)
    seconds = 0.0
    for epoch in range(1 + args.epochs):
        start = time.perf_counter()
        model.train()
        for batch in loader:
            z1 = model(batch["image"].to(device))
            z2 = model(batch["image_2"].to(device))
            loss = loss_fn(z1, z2)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            float(loss.detach())  # the tutorial logs each step's loss (and it syncs a GPU)
        if epoch:
            seconds += time.perf_counter() - start
    return args.batch_size * args.steps * args.epochs / seconds


def _views_per_s(loader, keys) -> float:
    start, views = time.perf_counter(), 0
    for batch in loader:
        views += sum(batch[k].shape[0] for k in keys)
    return views / (time.perf_counter() - start)


# ---- run --------------------------------------------------------------------------------------

def cohort(args):
    from neuro_ssl.data.manifest import read_manifest
    from neuro_ssl.data.synth import make_cohort

    n = args.batch_size * args.steps
    path = make_cohort(args.work / "cohort", n_subjects=n, seed=0, voxel_mm=args.voxel_mm, visits=(1, 1))
    manifest = read_manifest(path)
    manifest = manifest[manifest["modality"].astype(str).str.upper() == "T1W"].head(n)
    manifest.attrs["source"] = str(path)
    if len(manifest) < n:
        raise SystemExit(f"train_peers: the synthetic cohort has {len(manifest)} T1w scans, {n} needed")
    return manifest


def run_grid(args, manifest, spacing: float, shape, device) -> list[dict]:
    label = f"{spacing:g} mm {'x'.join(map(str, shape))}"
    common = {"grid": label, "batch_size": args.batch_size, "steps_per_epoch": args.steps,
              "timed_epochs": args.epochs, "workers": args.workers, "arch": args.arch, "width": args.width,
              "device": str(device), "quick": args.quick}
    run_dir = args.work / f"neuro_ssl_{spacing:g}mm"
    log(f"{label}: neuro-ssl pretrain ({1 + args.epochs} epochs of {args.steps} steps)")
    neuro = time_neuro_ssl(args, manifest, spacing, shape, run_dir)
    neuro_views = neuro_ssl_views_per_s(args, manifest, spacing, shape)
    log(f"{label}: MONAI tutorial loop")
    files = [{"image": str(p)} for p in manifest["image"]]
    dataset = monai_dataset(files, spacing, shape)
    monai = time_monai(args, dataset, device)
    monai_views = _views_per_s(monai_loader(args, dataset), ("image", "image_2"))
    return [{**common, "pipeline": "neuro-ssl pretrain", "scans_per_s": neuro, "data_only_views_per_s": neuro_views},
            {**common, "pipeline": "MONAI tutorial loop", "scans_per_s": monai, "data_only_views_per_s": monai_views}]


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("NEURO_SSL_QUIET", "1")
    with tempfile.TemporaryDirectory(prefix="neuro-ssl-train-peers-") as tmp:
        args.work = args.work or Path(tmp)
        return run(args)


def run(args) -> int:
    import pandas as pd
    import torch

    from neuro_ssl._utils.files import write_csv
    from neuro_ssl.training.loop import resolve_device

    device = resolve_device(args.device)
    started = time.perf_counter()
    manifest = cohort(args)
    rows = []
    for spacing, shape in args.grids:
        rows += run_grid(args, manifest, spacing, shape, device)
    table = pd.DataFrame(rows)
    table["threads"] = torch.get_num_threads()
    write_csv(args.out, table)
    shown = ["grid", "pipeline", "scans_per_s", "data_only_views_per_s"]
    print(table[shown].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"results: {args.out} ({time.perf_counter() - started:.0f} s)")
    for grid, group in table.groupby("grid", sort=False):
        neuro, monai = group["scans_per_s"].iloc[0], group["scans_per_s"].iloc[1]
        print(f"ratio {grid.replace(' ', '_')} {neuro / monai:.3f} (neuro-ssl {neuro:.3f} scans/s / "
              f"MONAI tutorial {monai:.3f} scans/s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
