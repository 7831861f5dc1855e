"""Pretraining on a GPU: fp32 vs bf16 vs + channels-last vs + torch.compile, ResNet-18 and ResNet-50.

One command prints the whole table. For each architecture and variant it builds the product's
``Pretrainer`` (driven from the outside: its own model, loss, optimizer, AMP, channels-last and
compile settings, DataLoader and optimizer step) on synthetic scans preprocessed to 128^3 at
1.5 mm, batch 32 (64 volumes a step), and measures:

- scans/s of the full pipeline (warm cache -> two random views per scan in DataLoader workers ->
  device -> ``Pretrainer._optimizer_step``), after untimed warm-up steps (compilation included);
- data-loader wait fraction: time spent waiting for the next batch / wall time of the timed steps;
- model-alone scans/s: the same optimizer step on views already on the device (the ceiling);
- peak device memory (``torch.cuda.max_memory_allocated``; on the CPU the process's peak RSS,
  which only grows);
- FLOPs per step, counted once per architecture by ``torch.utils.flop_counter.FlopCounterMode``
  over one eager fp32 step (forward + backward; the same for every variant), and the achieved
  TFLOP/s of the pipeline and of the model alone against the GPU's dense bf16 peak (a table of
  known GPUs below, or ``--peak-tflops``).

Prints a table, writes ``benchmarks/results/gpu_pretrain.csv`` and ends with ``ratio`` lines:
each variant's pipeline scans/s over fp32's, and pipeline over model alone (1.0: the data path
keeps up; lower: it starves the device). ``--quick`` runs a tiny CPU version (smoke test); its
numbers mean nothing.

    python benchmarks/gpu_pretrain.py                       # CUDA: the whole table
    python benchmarks/gpu_pretrain.py --archs resnet18 --variants fp32,bf16
    python benchmarks/gpu_pretrain.py --quick --device cpu  # smoke run on a CPU
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "gpu_pretrain.csv"
VARIANTS = {  # name -> (amp, channels_last, compile)
    "fp32": ("none", False, False),
    "bf16": ("bf16", False, False),
    "bf16+cl": ("bf16", True, False),
    "bf16+cl+compile": ("bf16", True, True),
}
#: dense (no sparsity) bf16 tensor-core peaks, TFLOP/s, from the vendors' data sheets (SXM parts)
PEAK_BF16_TFLOPS = {"H200": 989.4, "GH200": 989.4, "H100": 989.4, "A100": 312.0, "L40S": 362.1, "L4": 121.0,
                    "A10G": 70.0, "A10": 125.0, "RTX 4090": 165.2, "B200": 2250.0}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--archs", default="resnet18,resnet50")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"any of {', '.join(VARIANTS)}")
    p.add_argument("--spacing", type=float, default=1.5, help="model grid spacing, mm")
    p.add_argument("--shape", type=lambda s: tuple(int(v) for v in s.split(",")), default=(128, 128, 128))
    p.add_argument("--batch-size", type=int, default=32, help="scans per step (two views each)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per phase")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per phase (compilation happens here)")
    p.add_argument("--workers", type=int, default=min(16, max(1, (os.cpu_count() or 2) - 1)))
    p.add_argument("--manifest", type=Path, default=None, help="scans to use (default: a synthetic cohort)")
    p.add_argument("--subjects", type=int, default=None, help="synthetic scans (default: 2 x batch size)")
    p.add_argument("--voxel-mm", type=float, default=None, help="synthetic voxel size (default: realistic 1-1.5 mm)")
    p.add_argument("--device", default="auto")
    p.add_argument("--peak-tflops", type=float, default=None, help="the device's dense bf16 peak (default: by name)")
    p.add_argument("--work", type=Path, default=None, help="folder for cohort, cache and runs (default: temporary)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--quick", action="store_true", help="tiny CPU-sized smoke run; numbers mean nothing")
    args = p.parse_args(argv)
    if args.quick:
        args.archs, args.variants, args.spacing, args.shape = "resnet10", "fp32,bf16+cl", 12.0, (16, 16, 16)
        args.batch_size, args.steps, args.warmup, args.workers, args.voxel_mm = 2, 1, 1, 1, 8.0
        args.width = 0.125
    else:
        args.width = 1.0
    args.archs = [a.strip() for a in args.archs.split(",")]
    args.variants = [v.strip() for v in args.variants.split(",")]
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    args.subjects = args.subjects or 2 * args.batch_size
    return args


def log(message: str) -> None:
    print(f"[gpu_pretrain] {message}", file=sys.stderr, flush=True)


def peak_tflops(args, device) -> float | None:
    if args.peak_tflops:
        return args.peak_tflops
    if device.type != "cuda":
        return None
    import torch

    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_BF16_TFLOPS.items():
        if key.lower() in name.lower():
            return value
    return None


def config(args, arch: str, variant: str):
    from neuro_ssl.training.config import PretrainConfig

    amp, channels_last, compiled = VARIANTS[variant]
    return PretrainConfig(loss="simclr", arch=arch, width=args.width, spacing_mm=(args.spacing,) * 3,
                          shape=args.shape, batch_size=args.batch_size, epochs=1000, workers=args.workers,
                          device=args.device, cache_dir=str(args.work / "cache"), amp=amp,
                          channels_last=channels_last, compile=compiled, skip_bad=True).validate()


def build_trainer(args, manifest, arch: str, variant: str):
    """The product's Pretrainer with its model, optimizer and loader built, nothing written."""
    from neuro_ssl.training import loop
    from neuro_ssl.training.pretrain import Pretrainer
    from neuro_ssl.training.pretrain_data import build_train_data

    cfg = config(args, arch, variant)
    trainer = Pretrainer(cfg, args.work / f"run_{arch}_{variant}", loop.DistInfo(), resume=False)
    data = build_train_data(manifest, cfg, trainer.info, log=lambda m: None)
    trainer._build(data)
    return trainer, data


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _batches(trainer):
    epoch = 0
    while True:
        trainer.sampler.set_epoch(epoch)
        yield from trainer.loader
        epoch += 1


def time_pipeline(args, trainer, data) -> tuple[float, float]:
    """(scans/s, data-wait fraction) over the timed steps of the real loader + optimizer step."""
    batches = _batches(trainer)
    trainer.net.train()
    for _ in range(args.warmup):
        trainer._optimizer_step([next(batches)], data)
    _sync(trainer.device)
    wait, start = 0.0, time.perf_counter()
    for _ in range(args.steps):
        fetch = time.perf_counter()
        batch = next(batches)
        wait += time.perf_counter() - fetch
        trainer._optimizer_step([batch], data)
    _sync(trainer.device)
    seconds = time.perf_counter() - start
    return args.steps * args.batch_size / seconds, wait / seconds


def synthetic_batch(args, trainer, data, step: int) -> dict:
    """Two views of seeded noise on the device (seed = step: every run times the same batches; an
    unseeded draw made the quick CPU run end in a non-finite bf16 loss now and then)."""
    import torch

    shape = (args.batch_size, 1, *args.shape)
    generator = torch.Generator(device=trainer.device).manual_seed(step)
    batch = {name: torch.randn(shape, device=trainer.device, generator=generator) for name in ("view1", "view2")}
    for column in data.y_columns:
        batch[column] = torch.zeros(args.batch_size, dtype=torch.float64)
    return batch


def time_model(args, trainer, data) -> float:
    """Scans/s of the same optimizer step on views drawn on the device (fresh noise each step: a
    repeated batch is memorized until the loss underflows)."""
    for step in range(args.warmup):
        trainer._optimizer_step([synthetic_batch(args, trainer, data, step)], data)
    _sync(trainer.device)
    start = time.perf_counter()
    for step in range(args.warmup, args.warmup + args.steps):
        trainer._optimizer_step([synthetic_batch(args, trainer, data, step)], data)
    _sync(trainer.device)
    return args.steps * args.batch_size / (time.perf_counter() - start)


def flops_per_step(args, manifest, arch: str) -> float:
    """FLOPs of one eager fp32 optimizer step (forward + backward), by FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    trainer, data = build_trainer(args, manifest, arch, "fp32")
    batch = synthetic_batch(args, trainer, data, 0)
    with FlopCounterMode(display=False) as counter:
        trainer._optimizer_step([batch], data)
    return float(counter.get_total_flops())


def peak_memory_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_variant(args, manifest, arch: str, variant: str, flops: float, peak) -> dict:
    import torch

    row = {"arch": arch, "variant": variant, "shape": "x".join(map(str, args.shape)), "spacing_mm": args.spacing,
           "batch_size": args.batch_size, "workers": args.workers, "tflop_per_step": flops / 1e12}
    try:
        trainer, data = build_trainer(args, manifest, arch, variant)
        row["device"] = str(trainer.device)
        if trainer.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(trainer.device)
        rate, wait = time_pipeline(args, trainer, data)
        model_rate = time_model(args, trainer, data)
        row.update(scans_per_s=rate, data_wait_fraction=wait, model_alone_scans_per_s=model_rate,
                   peak_mem_mb=peak_memory_mb(trainer.device))
        for key, scans in (("tflops", rate), ("model_alone_tflops", model_rate)):
            row[key] = flops * scans / args.batch_size / 1e12
        if peak:
            row["mfu"], row["model_alone_mfu"] = row["tflops"] / peak, row["model_alone_tflops"] / peak
        del trainer
    except torch.cuda.OutOfMemoryError as exc:
        row["error"] = f"out of memory: {str(exc).splitlines()[0]}"
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return row


def cohort(args):
    from neuro_ssl.data.manifest import read_manifest
    from neuro_ssl.data.synth import make_cohort

    if args.manifest is not None:
        return read_manifest(args.manifest)
    path = make_cohort(args.work / "cohort", n_subjects=args.subjects, seed=0, voxel_mm=args.voxel_mm,
                       visits=(1, 1), jobs=min(16, os.cpu_count() or 1))
    manifest = read_manifest(path)
    manifest.attrs["source"] = str(path)
    return manifest


def ratio_lines(table) -> list[str]:
    lines = []
    for arch, group in table.groupby("arch", sort=False):
        ok = group[group["scans_per_s"].notna()] if "scans_per_s" in group else group.iloc[0:0]
        base = ok[ok["variant"] == "fp32"]
        for _, row in ok.iterrows():
            if not base.empty and row["variant"] != "fp32":
                ratio = row["scans_per_s"] / float(base["scans_per_s"].iloc[0])
                lines.append(f"ratio {arch} {row['variant']} / fp32 {ratio:.2f} (pipeline scans/s)")
        if not ok.empty:
            best = ok.loc[ok["scans_per_s"].idxmax()]
            lines.append(f"ratio {arch} pipeline / model alone {best['scans_per_s'] / best['model_alone_scans_per_s']:.2f}"
                         f" ({best['variant']}; data wait {best['data_wait_fraction']:.0%} of the step time)")
    return lines


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("NEURO_SSL_QUIET", "1")
    with tempfile.TemporaryDirectory(prefix="neuro-ssl-gpu-bench-") as tmp:
        args.work = args.work or Path(tmp)
        return run(args)


def run(args) -> int:
    import pandas as pd

    from neuro_ssl._utils.files import write_csv
    from neuro_ssl.training.loop import resolve_device

    device = resolve_device(args.device)
    if device.type != "cuda" and not args.quick:
        log("no CUDA device: this runs on the CPU at the full size and takes very long (use --quick to smoke-test)")
    peak = peak_tflops(args, device)
    started = time.perf_counter()
    manifest = cohort(args)
    log(f"cohort of {len(manifest)} scans ready ({time.perf_counter() - started:.0f} s)")
    rows = []
    for arch in args.archs:
        flops = flops_per_step(args, manifest, arch)
        for variant in args.variants:
            log(f"{arch} {variant}")
            rows.append({**run_variant(args, manifest, arch, variant, flops, peak), "peak_bf16_tflops": peak})
    table = pd.DataFrame(rows)
    table["quick"] = args.quick
    write_csv(args.out, table)
    shown = [c for c in ("arch", "variant", "scans_per_s", "model_alone_scans_per_s", "data_wait_fraction",
                         "peak_mem_mb", "tflop_per_step", "tflops", "model_alone_tflops", "mfu", "error") if c in table]
    with pd.option_context("display.width", 200):
        print(table[shown].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(f"device {device}; dense bf16 peak {peak if peak else 'unknown (pass --peak-tflops)'} TFLOP/s; "
          f"results: {args.out} ({time.perf_counter() - started:.0f} s)")
    for line in ratio_lines(table):
        print(line)
    return 0 if "error" not in table or table["error"].isna().all() else 1


if __name__ == "__main__":
    raise SystemExit(main())
