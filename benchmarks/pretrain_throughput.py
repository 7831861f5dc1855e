"""Pretraining throughput: the model alone vs the full pipeline, side by side in one run.

(a) model: fwd + bwd + AdamW step (encoder + projection head + NT-Xent) on two views already in
    memory (on the device): the ceiling the data path has to keep up with;
(b) pipeline: the same model fed by the real data path: warm preprocessing cache -> two random
    MONAI views per scan (``TwoViewDataset``) in DataLoader worker processes -> device -> model.

Throughput counts scans per second (each scan = two views through the network). The cache is
filled before timing (deterministic preprocessing belongs to ``data_throughput.py``); both
phases time the same number of steps after the same warmup. CPU by default, the GPU when one is
present (``--amp bf16``, ``--channels-last`` apply to both phases). Prints a table, writes
``benchmarks/results/pretrain_throughput.csv`` and ends with ``ratio <pipeline/model>``: the
goal is >= 0.8, i.e. the data path never starves the model.

    python benchmarks/pretrain_throughput.py [--subjects 24] [--steps 20] [--workers 4] [--amp bf16]
    python benchmarks/pretrain_throughput.py --quick      # dry run, numbers mean nothing
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "pretrain_throughput.csv"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--manifest", type=Path, default=None, help="scans to use (default: a synthetic cohort)")
    p.add_argument("--subjects", type=int, default=24, help="synthetic cohort size (one T1w scan each)")
    p.add_argument("--voxel-mm", type=float, default=None, help="synthetic voxel size (default: realistic 1-1.5 mm)")
    p.add_argument("--spacing", type=float, default=2.0, help="model grid spacing, mm")
    p.add_argument("--shape", type=lambda s: tuple(int(v) for v in s.split(",")), default=(96, 112, 96))
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--steps", type=int, default=12, help="timed steps per phase")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per phase")
    p.add_argument("--workers", type=int, default=min(8, max(1, (os.cpu_count() or 2) - 1)))
    p.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--device", default="auto")
    p.add_argument("--work", type=Path, default=None, help="folder for the cohort and cache (default: temporary)")
    p.add_argument("--quick", action="store_true", help="dry run: tiny cohort, grid and model, 2 steps")
    args = p.parse_args(argv)
    if args.quick:
        args.subjects, args.voxel_mm, args.spacing, args.shape = 4, 4.0, 8.0, (24, 24, 24)
        args.arch, args.width, args.batch_size, args.steps, args.warmup = "resnet10", 0.25, 2, 2, 1
        args.workers = min(args.workers, 1)
    return args


def build_model(args, device):
    import torch

    from neuro_ssl.losses import NTXent
    from neuro_ssl.models import ContrastiveModel, ProjectionHead, build_encoder
    from neuro_ssl.training import loop

    torch.manual_seed(0)
    encoder = build_encoder(args.arch, 1, "batch", args.width)
    model = ContrastiveModel(encoder, ProjectionHead(encoder.out_features)).to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    optimizer = loop.build_optimizer(model, "adamw", 1e-4, 5e-5)
    scaler = loop.make_grad_scaler(args.amp, device)
    loss_fn = NTXent(0.1)
    memory = torch.channels_last_3d if args.channels_last else torch.contiguous_format

    def step(view1, view2):
        views = torch.cat([view1, view2]).to(device, non_blocking=True, memory_format=memory)
        with loop.autocast(args.amp, device):
            _, z = model(views)
        loss = loss_fn(*z.float().chunk(2))
        (scaler.scale(loss) if scaler else loss).backward()
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    return step


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_model(args, device, step) -> float:
    import torch

    shape = (args.batch_size, 1, *args.shape)
    views = [torch.randn(shape, device=device) for _ in range(2)]
    for _ in range(args.warmup):
        step(*views)
    _sync(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        step(*views)
    _sync(device)
    return args.steps * args.batch_size / (time.perf_counter() - start)


def time_pipeline(args, device, step, manifest) -> float:
    import torch

    from neuro_ssl.training import loop
    from neuro_ssl.training.config import PretrainConfig
    from neuro_ssl.training.pretrain_data import build_train_data

    cfg = PretrainConfig(loss="simclr", spacing_mm=(args.spacing,) * 3, shape=args.shape, batch_size=args.batch_size,
                         cache_dir=str(args.work / "cache"), skip_bad=True, workers=args.workers)
    data = build_train_data(manifest, cfg, log=lambda m: print(m, file=sys.stderr))  # skip_bad: fills the cache
    sampler = loop.EpochBatchSampler(data.n_items, args.batch_size, seed=0)
    loader = torch.utils.data.DataLoader(data.dataset, batch_sampler=sampler, num_workers=args.workers,
                                         pin_memory=device.type == "cuda", persistent_workers=args.workers > 0,
                                         prefetch_factor=4 if args.workers else None)
    batches = _endless(loader, sampler)
    for _ in range(args.warmup):
        b = next(batches)
        step(b["view1"], b["view2"])
    _sync(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        b = next(batches)
        step(b["view1"], b["view2"])
    _sync(device)
    return args.steps * args.batch_size / (time.perf_counter() - start)


def _endless(loader, sampler):
    epoch = 0
    while True:
        sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def peak_memory_mb(device) -> dict:
    import torch

    out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "peak_worker_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}
    if device.type == "cuda":
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        torch.cuda.reset_peak_memory_stats(device)
    return out


def cohort(args) -> "pd.DataFrame":
    from neuro_ssl.data.manifest import read_manifest

    if args.manifest is not None:
        return read_manifest(args.manifest)
    from neuro_ssl.data.synth import make_cohort

    path = make_cohort(args.work / "cohort", n_subjects=args.subjects, seed=0, voxel_mm=args.voxel_mm, visits=(1, 1))
    return read_manifest(path)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("NEURO_SSL_QUIET", "1")
    with tempfile.TemporaryDirectory(prefix="neuro-ssl-bench-") as tmp:
        args.work = args.work or Path(tmp)
        return run(args)


def run(args) -> int:
    import pandas as pd
    import torch

    from neuro_ssl._utils.files import write_csv
    from neuro_ssl.training import loop

    device = loop.resolve_device(args.device)
    loop.check_amp(args.amp, device)
    manifest = cohort(args)
    step = build_model(args, device)
    rows = []
    for phase, timer in (("model", lambda: time_model(args, device, step)),
                         ("pipeline", lambda: time_pipeline(args, device, step, manifest))):
        rate = timer()
        rows.append({"phase": phase, "scans_per_s": rate, "device": str(device), "arch": args.arch,
                     "width": args.width, "shape": "x".join(map(str, args.shape)), "batch_size": args.batch_size,
                     "workers": args.workers if phase == "pipeline" else 0, "amp": args.amp,
                     "channels_last": args.channels_last, "threads": torch.get_num_threads(), "quick": args.quick,
                     **peak_memory_mb(device)})
    table = pd.DataFrame(rows)
    ratio = rows[1]["scans_per_s"] / rows[0]["scans_per_s"]
    table["ratio_pipeline_over_model"] = ratio
    write_csv(RESULTS, table)
    print(table.drop(columns=["ratio_pipeline_over_model"]).to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print(f"results: {RESULTS}")
    print(f"ratio {ratio:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
