"""Run a pipeline YAML: each step is a neuro-ssl command with its options.

Steps whose outputs are current (same options, same inputs, upstream steps not rerun) are
skipped; after a failure, running again starts at the first step that is not current, and a
pretraining step that left a checkpoint continues with --resume. See docs/pipelines.md.

examples:
  neuro-ssl run pipelines/demo.yaml --preset tiny --set out=/tmp/demo
  neuro-ssl run pipelines/adni_ad_vs_cn.yaml --set images=/data/ADNI csv=/data/ADNIMERGE.csv --dry-run
  neuro-ssl run pipelines/adni_ad_vs_cn.yaml --from finetune_full
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pipeline", type=Path, help="pipeline YAML file (see pipelines/)")
    parser.add_argument("--set", dest="set_vars", action="append", nargs="+", default=[], metavar="NAME=VALUE",
                        help="override a var of the pipeline (repeatable; values read as YAML, e.g. budgets=[5,10])")
    parser.add_argument("--preset", default=None, help="a named group of var values defined under 'presets:'")
    parser.add_argument("--from", dest="from_step", default=None, metavar="STEP",
                        help="rerun STEP and every step after it (earlier steps are left as they are)")
    parser.add_argument("--only", default=None, metavar="STEP", help="rerun just STEP (all its foreach instances)")
    parser.add_argument("--force", action="store_true", help="rerun every selected step even when current")
    parser.add_argument("--dry-run", action="store_true",
                        help="print what would run and why, with each command line; run nothing")
    parser.add_argument("--list", action="store_true", help="list the steps (after foreach expansion) and exit")


def run(args: argparse.Namespace) -> int:
    from neuro_ssl.pipeline import load_pipeline, parse_set, run_pipeline

    overrides = parse_set([item for group in args.set_vars for item in group])
    pipeline = load_pipeline(args.pipeline, overrides=overrides, preset=args.preset)
    if args.list:
        for step in pipeline.steps:
            print(f"{step.name}: neuro-ssl {step.command}" + (f"  # {step.description}" if step.description else ""))
        return 0
    run_pipeline(pipeline, from_step=args.from_step, only=args.only, force=args.force, dry_run=args.dry_run)
    return 0
