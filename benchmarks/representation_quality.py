"""Does pretraining pay off? Label-efficiency curves on a synthetic cohort, with honest intervals.

A thin caller of ``pipelines/label_efficiency.yaml`` (synth -> validate -> split -> ``neuro-ssl
study`` -> report): every option below is one of that pipeline's vars (``--set``), left at the
pipeline's value unless given. Prints the study's summary (test AUC, mean +- sd over draws, per
method x mode x budget), the label-free table, and ``ratio`` lines: each pretrained method's mean
over scratch's, same mode and budget, measured side by side in this run. Copies summary.csv to
benchmarks/results/representation_quality.csv. ``--quick`` is the pipeline's smoke preset (its
numbers mean nothing). An interrupted run continues where it stopped when started again.

    python benchmarks/representation_quality.py --quick
    python benchmarks/representation_quality.py --subjects 100 --draws 5 --pretrain-epochs 12
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PIPELINE = HERE.parent / "pipelines" / "label_efficiency.yaml"
RESULTS = HERE / "results"
#: flag -> pipeline var (the flag's value is passed as ``--set var=value``)
VARS = {"subjects": "subjects", "voxel_mm": "voxel_mm", "methods": "methods", "modes": "modes",
        "budgets": "budgets", "draws": "draws", "pretrain_epochs": "pretrain_epochs",
        "finetune_epochs": "finetune_epochs", "arch": "arch", "width": "width", "spacing": "spacing",
        "shape": "shape", "batch_size": "batch", "n_boot": "n_boot", "workers": "workers", "seed": "seed"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)  # --work must not pass for --workers
    for flag in VARS:
        p.add_argument("--" + flag.replace("_", "-"), default=None, help=f"pipeline var '{VARS[flag]}'")
    p.add_argument("--out", type=Path, default=RESULTS / "representation_quality_work", help="the run folder")
    p.add_argument("--quick", action="store_true", help="the pipeline's 'quick' preset (a smoke run)")
    return p.parse_args(argv)


def ratio_lines(summary) -> list[str]:
    """``ratio`` of each pretrained method's mean to scratch's, same mode and budget."""
    lines = []
    scratch = summary[summary["method"] == "scratch"].set_index(["mode", "budget"])["mean"]
    for _, row in summary[summary["method"] != "scratch"].iterrows():
        base = scratch.get((row["mode"], row["budget"]))
        if base is not None and base == base and base != 0:
            lines.append(f"ratio {row['metric']} {row['method']}/scratch ({row['mode']}, {row['budget']}): "
                         f"{row['mean'] / base:.3f}")
    return lines


def main(argv=None) -> int:
    import pandas as pd

    from neuro_ssl._utils.files import write_csv
    from neuro_ssl.pipeline import load_pipeline, parse_set, run_pipeline
    from neuro_ssl.study.tables import format_summary

    args = parse_args(argv)
    os.environ.setdefault("NEURO_SSL_QUIET", "1")
    given = [f"{var}={getattr(args, flag)}" for flag, var in VARS.items() if getattr(args, flag) is not None]
    pipeline = load_pipeline(PIPELINE, overrides={**parse_set(given), "out": str(args.out)},
                             preset="quick" if args.quick else None)
    started = time.perf_counter()
    run_pipeline(pipeline)
    study = args.out / "study"
    summary = pd.read_csv(study / "summary.csv", dtype={"budget": str})
    print(format_summary(study / "summary.csv", study / "label_free.csv"))
    print("\n".join(ratio_lines(summary)))
    write_csv(RESULTS / "representation_quality.csv", summary.assign(quick=bool(args.quick)))
    print(f"{study} ({time.perf_counter() - started:.0f} s this run; curves: {study / 'curves.png'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
