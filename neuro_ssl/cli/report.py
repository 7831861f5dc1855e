"""One self-contained HTML report of runs made by hand: name the folders, it finds what is in them.

Each RUN_OR_DIR is a run or output folder of any neuro-ssl command (pretrain, finetune, evaluate,
saliency, audit, cluster, study, split, a synth cohort, a pipeline or demo folder) or a folder of
them (searched one level down). The page shows key figures first, and before them what looks
wrong: a classifier that predicts one class for every scan, an AUC whose interval includes 0.5
or that is not above the shortcut baseline, an online probe that got worse over pretraining,
saliency below chance in the planted region, failed saliency checks. Figures are embedded;
files are linked relative to the page (its figures also go to report_files/ beside it).

examples:
  neuro-ssl report --out report.html runs/yaware runs/ad_cn results/ad_cn results/saliency
  neuro-ssl report --out demo_run/report_by_hand.html demo_run --title "demo, seed 0"
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", type=Path, nargs="+", metavar="RUN_OR_DIR",
                        help="run or output folders (or a manifest / embeddings.csv file)")
    parser.add_argument("--out", type=Path, required=True, metavar="report.html", help="the HTML page to write")
    parser.add_argument("--title", default="neuro-ssl report", help="the page's title")


def run(args: argparse.Namespace) -> int:
    from neuro_ssl.errors import ConfigError
    from neuro_ssl.report.discover import find_outputs
    from neuro_ssl.report.run_report import write_run_report

    if args.out.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"--out {args.out}: name the page with .html (e.g. --out report.html)")
    if args.out.is_dir():
        raise ConfigError(f"--out {args.out} is a folder; name the page file (e.g. {args.out / 'report.html'})")
    found = find_outputs(args.paths)
    arguments = found.report_arguments()
    cohort = arguments["cohort"]
    table = None
    if cohort is not None:
        from neuro_ssl.data.manifest import read_manifest

        table = read_manifest(cohort)
    flags: list[str] = []
    page = write_run_report(args.out, title=args.title, cohort_table=table, file_index=False, flags_out=flags,
                            **arguments)
    for line in found.summary():
        print(f"found {line}")
    for flag in flags:
        print(f"warning: {flag}")
    print(f"report: {page}")
    return 0
