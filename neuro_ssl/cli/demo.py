"""The whole chain on a synthetic cohort, in minutes on a CPU.

synth -> validate -> split -> y-Aware pretraining (age) -> fine-tuning (linear probe and full)
-> evaluate -> embed + cluster -> Grad-CAM saliency -> report.html. Every file lands under
--out; running again skips the steps that are already done and resumes an interrupted run.
The steps are neuro_ssl/pipeline/demo.yaml (the same as pipelines/demo.yaml).

sizes: tiny (about a minute, for tests), small, default (under 10 minutes on 2 CPU cores).
With --manifest the same chain runs on your cohort instead of a synthetic one (it needs age
and a CN/AD diagnosis); --skip-bad then reports unusable rows and carries on without them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from neuro_ssl.cli import _common

#: a failed demo keeps its folder once the pipeline has started (step stamps: the next run resumes)
KEEP_ON_FAILURE = (".neuro-ssl-pipeline", "checkpoint.pt")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("demo_run"), help="run folder")
    parser.add_argument("--size", choices=("tiny", "small", "default"), default="default",
                        help="cohort and model size")
    _common.add_seed(parser)
    parser.add_argument("--manifest", type=Path, default=None,
                        help="run on this manifest (any dialect) instead of a synthetic cohort")
    parser.add_argument("--skip-bad", action="store_true",
                        help="validation errors do not stop the run; later steps skip unusable scans")
    parser.add_argument("--force", action="store_true", help="rerun every step, even those already done")
    parser.add_argument("--dry-run", action="store_true", help="print the steps and their commands; run nothing")


def run(args: argparse.Namespace) -> int:
    from neuro_ssl.errors import ManifestError
    from neuro_ssl.pipeline.demo import run_demo

    if args.manifest is not None and not args.manifest.is_file():
        raise ManifestError(f"--manifest {args.manifest}: file not found")
    cohort = f"manifest {args.manifest}" if args.manifest else "a synthetic cohort"
    print(f"neuro-ssl demo: size {args.size}, seed {args.seed}, {cohort}, writing to {args.out.resolve()}", flush=True)
    report_path, _ = run_demo(args.out, args.size, args.seed, force=args.force, dry_run=args.dry_run,
                              manifest=args.manifest, skip_bad=args.skip_bad)
    if not args.dry_run:
        print(f"Report: {report_path}", flush=True)
    return 0
