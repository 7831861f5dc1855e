"""Contrastive losses against the peers a user would pick instead, side by side in one run.

For NT-Xent, y-Aware and SupCon: forward + backward time and peak memory of neuro-ssl's loss and
of its peers (benchmarks/peers.py says which definitions are equal and why):

    NT-Xent   neuro-ssl NTXent        vs lightly NTXentLoss, MONAI ContrastiveLoss
    SupCon    neuro-ssl SupCon        vs pytorch-metric-learning SupConLoss (lightly has no released SupConLoss)
    y-Aware   neuro-ssl YAwareInfoNCE vs the published code's way: covariates to the CPU,
              scikit-learn rbf_kernel every step, weights back to the device

on random (B, 128) projections of both views (float32 or bfloat16, requiring grad), ages
uniform in 50-90 years (sigma 5), three classes for SupCon, T = 0.1. Before any timing, each
peer's value and input gradients are compared with the neuro-ssl loss of the same definition on
the same tensors; a mismatch stops the run. Timing: one warm-up call, then repetitions taken in
turn across the implementations (so a noisy machine slows all alike); ``ms`` is the fastest call
(as ``timeit`` advises: the least disturbed one, robust on a shared machine), ``median_ms`` is kept too.

Peak memory, taken during the warm-up call: on CUDA ``torch.cuda.max_memory_allocated`` minus
what was allocated before it. On the CPU torch keeps no such counter, so that call runs under
``torch.profiler`` with ``profile_memory=True``: the peak of the running sum of its allocation
and free events (torch's CPU allocator), plus the tracemalloc peak of the same call (numpy and
Python objects: the published y-Aware kernel lives there). Inputs allocated beforehand are not
counted. MONAI's loss builds a (2B, 2B, D) tensor; batches where that tensor alone would exceed
``--monai-max-gib`` are left out (marked "skipped").

Prints a table, writes benchmarks/results/loss_peers.csv and ends with ``ratio`` lines:
neuro-ssl speed / best peer speed (= best peer time / neuro-ssl time; > 1: neuro-ssl is faster),
per loss, dtype and batch size, then the geometric mean per loss.

    python benchmarks/loss_peers.py [--batch-sizes 16,64,256,1024,4096] [--dtypes float32,bfloat16]
    python benchmarks/loss_peers.py --quick      # dry run: B 16 and 64, numbers mean little
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

RESULTS = Path(__file__).resolve().parent / "results" / "loss_peers.csv"
TEMPERATURE, SIGMA_YEARS, DIM = 0.1, 5.0, 128
#: |peer - neuro-ssl| / |neuro-ssl| allowed for equal definitions, on the value and on the gradient
TOLERANCE = {"float32": 1e-4, "bfloat16": 5e-2, "float64": 1e-9}


@dataclass
class Impl:
    loss: str                 # ntxent | supcon | yaware
    name: str
    make: Callable            # () -> callable(z1, z2[, y])
    needs: str = ""           # "" | "y" | "labels"
    peer: bool = False
    same_as: str = ""         # the neuro-ssl implementation with the same definition (checked)
    max_batch: Callable | None = None  # (batch, dtype) -> reason to skip, or None


def implementations(args) -> list[Impl]:
    import peers
    from neuro_ssl.losses import NTXent, SupCon, YAwareInfoNCE

    T, s = TEMPERATURE, SIGMA_YEARS
    return [
        Impl("ntxent", "neuro-ssl NTXent", lambda: NTXent(T)),
        Impl("ntxent", "lightly NTXentLoss", lambda: peers.make_lightly_ntxent(T), peer=True,
             same_as="neuro-ssl NTXent"),
        Impl("ntxent", "MONAI ContrastiveLoss", lambda: peers.make_monai_contrastive(T), peer=True,
             same_as="neuro-ssl NTXent", max_batch=lambda b, dt: _monai_too_big(b, dt, args.monai_max_gib)),
        Impl("supcon", "neuro-ssl SupCon", lambda: SupCon(T), needs="labels"),
        Impl("supcon", "pml SupConLoss", lambda: peers.make_pml_supcon(T), needs="labels", peer=True,
             same_as="neuro-ssl SupCon"),
        Impl("yaware", "neuro-ssl YAwareInfoNCE", lambda: YAwareInfoNCE(s, T), needs="y"),
        Impl("yaware", "neuro-ssl YAwareInfoNCE reference_compat", lambda: YAwareInfoNCE(s, T, reference_compat=True),
             needs="y"),
        Impl("yaware", "published y-Aware (sklearn kernel)", lambda: peers.make_published_yaware(s, T), needs="y",
             peer=True, same_as="neuro-ssl YAwareInfoNCE reference_compat"),
    ]


def _monai_too_big(batch: int, dtype: str, max_gib: float) -> str | None:
    gib = (2 * batch) ** 2 * DIM * (2 if dtype == "bfloat16" else 4) / 2**30
    return f"its (2B, 2B, D) tensor needs {gib:.1f} GiB > --monai-max-gib {max_gib:g}" if gib > max_gib else None


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--batch-sizes", default="16,64,256,1024,4096", help="scans per batch (2B embeddings)")
    p.add_argument("--dtypes", default="float32,bfloat16", help="dtype of the projections")
    p.add_argument("--losses", default="ntxent,supcon,yaware")
    p.add_argument("--device", default="auto")
    p.add_argument("--min-seconds", type=float, default=1.0, help="timed seconds per implementation and size (at least 3 calls)")
    p.add_argument("--max-reps", type=int, default=30)
    p.add_argument("--monai-max-gib", type=float, default=0.5,
                   help="leave MONAI out where its (2B, 2B, D) tensor alone exceeds this")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory pass")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--quick", action="store_true", help="dry run: B 16 and 64, few repetitions")
    args = p.parse_args(argv)
    if args.quick:
        args.batch_sizes, args.min_seconds, args.max_reps = "16,64", 0.05, 3
    args.batch_sizes = [int(b) for b in str(args.batch_sizes).split(",")]
    args.dtypes = [d.strip() for d in args.dtypes.split(",")]
    args.losses = [name.strip() for name in args.losses.split(",")]
    return args


# ---- inputs, calls, checks ------------------------------------------------------------------

def make_inputs(batch: int, dtype, device, seed: int) -> dict:
    import torch

    g = torch.Generator().manual_seed(seed + batch)
    z1, z2 = (torch.randn(batch, DIM, generator=g).to(device=device, dtype=dtype) for _ in range(2))
    y = (50 + 40 * torch.rand(batch, generator=g, dtype=torch.float64)).to(device)
    labels = torch.randint(0, 3, (batch,), generator=g).to(device=device, dtype=torch.float64)
    labels[:2] = torch.tensor([0.0, 1.0])  # at least two classes (see peers.py on SupConLoss)
    return {"z1": z1.requires_grad_(), "z2": z2.requires_grad_(), "y": y, "labels": labels}


def call(fn, impl: Impl, inputs: dict):
    """One forward + backward; returns the loss value (detached)."""
    inputs["z1"].grad = inputs["z2"].grad = None
    extra = (inputs[impl.needs],) if impl.needs else ()
    loss = fn(inputs["z1"], inputs["z2"], *extra)
    loss.backward()
    return loss.detach()


def rel_diff(a, b) -> float:
    import torch

    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def check_equal(impl: Impl, values: dict, grads: dict, dtype: str, batch: int) -> float:
    """Relative gap (value and gradients) of a peer to the neuro-ssl loss of the same definition."""
    ref = impl.same_as
    gap = max(rel_diff(values[impl.name], values[ref]),
              rel_diff(grads[impl.name][0], grads[ref][0]), rel_diff(grads[impl.name][1], grads[ref][1]))
    if not gap <= TOLERANCE[dtype]:
        raise SystemExit(f"loss_peers: {impl.name} differs from {ref} by {gap:.2e} (relative) at B={batch} "
                         f"{dtype}, tolerance {TOLERANCE[dtype]:g}: the definitions are not equal")
    return gap


# ---- time and memory ------------------------------------------------------------------------

def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def first_call(fn, impl: Impl, inputs: dict, device, memory: bool):
    """The warm-up call: (loss value, seconds, peak MB or None). With ``memory`` it is the measured
    call (see the module docstring); its time, used only to size the repetitions, includes the
    profiler's overhead then."""
    import torch

    start = time.perf_counter()
    if not memory:
        value = call(fn, impl, inputs)
        _sync(device)
        return value, time.perf_counter() - start, None
    if device.type == "cuda":
        _sync(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        value = call(fn, impl, inputs)
        _sync(device)
        return value, time.perf_counter() - start, (torch.cuda.max_memory_allocated(device) - before) / 2**20
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        tracemalloc.start()
        value = call(fn, impl, inputs)
        numpy_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    seconds = time.perf_counter() - start
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return value, seconds, (peak + numpy_peak) / 2**20


def time_group(impls: list[Impl], fns: dict, inputs: dict, args, device, warm_s: dict) -> dict[str, list[float]]:
    """Seconds of each call per implementation; repetitions alternate between the implementations."""
    reps = max(3, min(args.max_reps, math.ceil(args.min_seconds / max(max(warm_s.values()), 1e-6))))
    samples = {impl.name: [] for impl in impls}
    for _ in range(reps):
        for impl in impls:
            _sync(device)
            start = time.perf_counter()
            call(fns[impl.name], impl, inputs)
            _sync(device)
            samples[impl.name].append(time.perf_counter() - start)
    return samples


def run_size(impls: list[Impl], batch: int, dtype_name: str, args, device) -> list[dict]:
    import torch

    dtype = getattr(torch, dtype_name)
    inputs = make_inputs(batch, dtype, device, args.seed)
    rows, active, fns, values, grads, warm_s, peaks = [], [], {}, {}, {}, {}, {}
    for impl in impls:
        reason = impl.max_batch(batch, dtype_name) if impl.max_batch else None
        row = {"loss": impl.loss, "implementation": impl.name, "peer": impl.peer, "batch": batch,
               "dtype": dtype_name, "device": str(device), "same_as": impl.same_as, "skipped": reason or ""}
        rows.append(row)
        if reason:
            continue
        fns[impl.name] = fn = impl.make()
        values[impl.name], warm_s[impl.name], peaks[impl.name] = first_call(fn, impl, inputs, device, not args.no_memory)
        grads[impl.name] = (inputs["z1"].grad.clone(), inputs["z2"].grad.clone())
        active.append(impl)
    for impl, row in zip(impls, rows):
        if impl in active:
            row["value"] = float(values[impl.name])
            if impl.same_as:
                row["rel_gap_to_same_definition"] = check_equal(impl, values, grads, dtype_name, batch)
    seconds = time_group(active, fns, inputs, args, device, warm_s)
    for impl, row in zip(impls, rows):
        if impl in active:
            row["ms"] = 1e3 * min(seconds[impl.name])
            row["median_ms"] = 1e3 * statistics.median(seconds[impl.name])
            row["reps"] = len(seconds[impl.name])
            if peaks[impl.name] is not None:
                row["peak_mb"] = peaks[impl.name]
    return rows


# ---- report ---------------------------------------------------------------------------------

def ratio_lines(table) -> list[str]:
    """neuro-ssl speed / best peer speed per (loss, dtype, batch), then a geometric mean per loss."""
    lines, per_loss = [], {}
    ours = {"ntxent": "neuro-ssl NTXent", "supcon": "neuro-ssl SupCon", "yaware": "neuro-ssl YAwareInfoNCE"}
    for (loss, dtype, batch), group in table.groupby(["loss", "dtype", "batch"], sort=False):
        timed = group[group["skipped"] == ""]
        mine = timed[timed["implementation"] == ours[loss]]
        peers = timed[timed["peer"]]
        if mine.empty or peers.empty:
            continue
        best = peers.loc[peers["ms"].idxmin()]
        ratio = best["ms"] / float(mine["ms"].iloc[0])
        per_loss.setdefault(loss, []).append(ratio)
        memory = ""
        if "peak_mb" in group:
            memory = f"; peak memory neuro-ssl / that peer {float(mine['peak_mb'].iloc[0]) / max(best['peak_mb'], 1e-9):.2f}"
        lines.append(f"ratio {loss} {dtype} B={batch} {ratio:.2f} (best peer {best['implementation']} "
                     f"{best['ms']:.2f} ms, neuro-ssl {float(mine['ms'].iloc[0]):.2f} ms{memory})")
    for loss, ratios in per_loss.items():
        geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
        lines.append(f"ratio {loss} geometric mean {geo:.2f} over {len(ratios)} sizes x dtypes (> 1: neuro-ssl faster)")
    return lines


def main(argv=None) -> int:
    import pandas as pd
    import torch

    from neuro_ssl._utils.files import write_csv
    from neuro_ssl.training.loop import resolve_device

    args = parse_args(argv)
    device = resolve_device(args.device)
    impls = [impl for impl in implementations(args) if impl.loss in args.losses]
    rows = []
    for loss in args.losses:
        group = [impl for impl in impls if impl.loss == loss]
        for dtype in args.dtypes:
            for batch in args.batch_sizes:
                rows += run_size(group, batch, dtype, args, device)
                print(f"[loss_peers] {loss} {dtype} B={batch} done", file=sys.stderr, flush=True)
                table = pd.DataFrame(rows).assign(threads=torch.get_num_threads(), quick=args.quick)
                write_csv(args.out, table)  # after every size: an interrupted run keeps what it measured
    shown = [c for c in ("loss", "dtype", "batch", "implementation", "ms", "peak_mb", "rel_gap_to_same_definition",
                         "skipped") if c in table]
    with pd.option_context("display.width", 200, "display.max_colwidth", 60):
        print(table[shown].astype(object).where(table[shown].notna(), "").to_string(
            index=False, float_format=lambda v: f"{v:.3g}"))
    print(f"results: {args.out}")
    for line in ratio_lines(table):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
