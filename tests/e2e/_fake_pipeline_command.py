"""A fake neuro-ssl command for the runner tests: joins text files into DIR/result.txt, logs each call.

--fail-unless FILE makes it fail (after leaving DIR/checkpoint.pt) until FILE exists, the way a
pretraining run dies half-way and can be resumed.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="folder to write result.txt into")
    parser.add_argument("--inputs", default="", help="comma-separated files whose text is appended")
    parser.add_argument("--text", default="", help="text written first")
    parser.add_argument("--log", type=Path, required=True, help="one line appended per call")
    parser.add_argument("--fail-unless", type=Path, default=None)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--tags", nargs="+", default=[])


def run(args: argparse.Namespace) -> int:
    with open(args.log, "a") as fh:
        fh.write(f"{args.out.name} resume={args.resume} tags={','.join(args.tags)}\n")
    if args.out.is_dir() and any(args.out.iterdir()) and not args.resume:
        from neuro_ssl.errors import ConfigError

        raise ConfigError(f"{args.out}: run folder is not empty (like pretrain without --resume)")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.fail_unless is not None and not args.fail_unless.exists():
        (args.out / "checkpoint.pt").write_text("half done")
        from neuro_ssl.errors import ImageError

        raise ImageError(f"{args.fail_unless}: simulated failure half-way")
    parts = [args.text] + [Path(p).read_text() for p in args.inputs.split(",") if p]
    (args.out / "result.txt").write_text("|".join(parts))
    print(f"wrote {args.out / 'result.txt'}")
    return 0
