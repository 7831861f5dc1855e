"""Deterministic preprocessing throughput: plain MONAI Dataset vs the neuro-ssl disk cache.

Builds a synthetic cohort (``neuro_ssl.data.synth.make_cohort``) at 1 mm and at 1.5 mm voxels,
then, for the same files and the same transforms (``build_preprocess`` with the default
``PreprocessConfig``: 2 mm, 96 x 112 x 96, z-score), measures file -> model-ready tensor:

- plain:  ``monai.data.Dataset`` running the chain on the .nii.gz every epoch;
- cached cold: ``ManifestDataset`` with an empty cache (first epoch: preprocess + write);
- cached warm: the same with the cache filled (what every later epoch and command sees);
- cached warm, mtime keys: the same, keyed on path + size + mtime (``content_hash=False``)
  instead of a SHA-256 of each file's bytes (the default), in a cache of its own filled by an
  untimed first pass: what content keys cost (each file is hashed once per worker process).

Each phase runs in its own subprocess, so its peak memory (the process's high-water mark, and
the largest DataLoader worker's) is its own. Augmentation is left out on purpose: it belongs to
``pretrain_throughput.py``. Prints a table, writes ``benchmarks/results/data_throughput.csv``,
and ends with ``ratio <cached/plain>``: warm-cache volumes/s over plain volumes/s, summed over
both voxel sizes (total volumes / total seconds of each pipeline), then
``ratio content_hash <warm/warm mtime>``: the same for content keys over mtime keys (1.0 = free).

    python benchmarks/data_throughput.py [--subjects 20] [--epochs 3] [--workers 2] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "data_throughput.csv"
VOXEL_SIZES_MM = (1.0, 1.5)
PHASES = ("plain", "cached_cold", "cached_warm", "cached_warm_mtime")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--subjects", type=int, default=20, help="volumes per cohort (one visit each)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs timed for plain and warm phases")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    parser.add_argument("--quick", action="store_true", help="dry run: 2 subjects, 1 epoch")
    parser.add_argument("--work", type=Path, default=None, help="folder for cohorts and cache (default: temporary)")
    parser.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)  # internal: one phase in a subprocess
    parser.add_argument("--manifest", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.subjects, args.epochs = 2, 1
    return args


# ----- cohort -----

def make_cohort(out: Path, subjects: int, voxel_mm: float) -> Path:
    """The synthetic cohort at ``voxel_mm``; a plain ellipsoid phantom if synth is unavailable."""
    try:
        from neuro_ssl.data.synth import make_cohort as synth
    except ImportError:
        return _phantom_cohort(out, subjects, voxel_mm)
    return synth(out, n_subjects=subjects, seed=0, voxel_mm=voxel_mm, visits=(1, 1))


def _phantom_cohort(out: Path, subjects: int, voxel_mm: float) -> Path:
    import nibabel as nib
    import numpy as np

    shape = tuple(int(round(s / voxel_mm)) for s in (182, 218, 182))
    affine = np.diag([-voxel_mm, voxel_mm, voxel_mm, 1.0])
    affine[:3, 3] = [90.0, -126.0, -72.0]
    (out / "images").mkdir(parents=True, exist_ok=True)
    grid = np.indices(shape, dtype=np.float32) - (np.array(shape, dtype=np.float32)[:, None, None, None] - 1) / 2
    radius = np.sqrt(sum((g / (0.35 * s)) ** 2 for g, s in zip(grid, shape)))
    lines = ["subject_id,session_id,image,modality,age"]
    for i in range(subjects):
        rng = np.random.default_rng(i)
        data = 500 * (radius < 1) + rng.normal(20, 5, shape)
        path = out / "images" / f"sub-{i:03d}.nii.gz"
        nib.save(nib.Nifti1Image(data.astype(np.float32), affine), str(path))
        lines.append(f"sub-{i:03d},bl,images/{path.name},T1w,{60 + i % 30}")
    (out / "manifest.csv").write_text("\n".join(lines) + "\n")
    return out / "manifest.csv"


# ----- one phase, in its own process -----

def _as_plain_item(data: dict) -> dict:
    return {"image": data["image"].as_tensor()}


def run_phase(args) -> None:
    import resource

    import torch
    from monai.data import Dataset
    from monai.transforms import Compose

    from neuro_ssl.data.datasets import ManifestDataset
    from neuro_ssl.data.manifest import read_manifest
    from neuro_ssl.data.transforms import PreprocessConfig, build_preprocess

    config = PreprocessConfig()
    manifest = read_manifest(args.manifest)
    if args.phase == "plain":
        dataset = Dataset([{"image": p} for p in manifest["image"]],
                          transform=Compose([build_preprocess(config), _as_plain_item]))
    else:
        cache = args.cache.with_name(args.cache.name + "_mtime") if args.phase == "cached_warm_mtime" else args.cache
        dataset = ManifestDataset(manifest, config, cache_dir=cache, columns=())
        if args.phase == "cached_warm_mtime":
            dataset.cache.content_hash = False
            for i in range(len(dataset)):  # untimed fill of its own cache
                dataset.preprocessed(i)
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=args.workers,
                                         persistent_workers=args.workers > 0)
    epochs = 1 if args.phase == "cached_cold" else args.epochs
    volumes, start = 0, time.perf_counter()
    for _ in range(epochs):
        for batch in loader:
            volumes += int(batch["image"].shape[0])
    seconds = time.perf_counter() - start
    main_mb = _own_peak_mb()
    del loader  # joins the workers, so their peak shows in RUSAGE_CHILDREN
    workers_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    args.json.write_text(json.dumps({"volumes": volumes, "seconds": seconds, "peak_rss_mb": main_mb,
                                     "worker_peak_rss_mb": workers_mb}))


def _own_peak_mb() -> float:
    """This process's peak resident memory. ``ru_maxrss`` survives ``exec`` on Linux (it would
    report the parent's peak), so the kernel's per-process high-water mark is read first."""
    import resource

    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(phase: str, manifest: Path, cache: Path, args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "phase.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--phase", phase, "--manifest", str(manifest),
               "--cache", str(cache), "--json", str(out), "--epochs", str(args.epochs), "--workers", str(args.workers)]
        subprocess.run(cmd, check=True)
        return json.loads(out.read_text())


# ----- the whole benchmark -----

def main(argv=None) -> int:
    args = parse_args(argv)
    if args.phase:
        run_phase(args)
        return 0
    import pandas as pd

    from neuro_ssl._utils.files import write_csv

    work = args.work or Path(tempfile.mkdtemp(prefix="neuro-ssl-bench-"))
    rows = []
    try:
        for voxel_mm in VOXEL_SIZES_MM:
            start = time.perf_counter()
            manifest = make_cohort(work / f"cohort_{voxel_mm:g}mm", args.subjects, voxel_mm)
            print(f"cohort at {voxel_mm:g} mm: {args.subjects} volumes in {time.perf_counter() - start:.0f} s",
                  file=sys.stderr)
            cache = work / f"cache_{voxel_mm:g}mm"
            shutil.rmtree(cache, ignore_errors=True)
            shutil.rmtree(cache.with_name(cache.name + "_mtime"), ignore_errors=True)
            for phase in PHASES:
                result = measure(phase, manifest, cache, args)
                rows.append({"voxel_mm": voxel_mm, "phase": phase, **result,
                             "volumes_per_s": result["volumes"] / result["seconds"],
                             "workers": args.workers, "cpus": os.cpu_count()})
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    table = pd.DataFrame(rows)
    write_csv(RESULTS, table.round(4))
    print(table[["voxel_mm", "phase", "volumes", "seconds", "volumes_per_s", "peak_rss_mb", "worker_peak_rss_mb"]]
          .to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    totals = table.groupby("phase")[["volumes", "seconds"]].sum()
    rate = totals["volumes"] / totals["seconds"]
    print(f"ratio {rate['cached_warm'] / rate['plain']:.2f}")
    print(f"ratio content_hash {rate['cached_warm'] / rate['cached_warm_mtime']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
