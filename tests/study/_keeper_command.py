"""A fake neuro-ssl command that continues in its own --out, as ``study`` does (``CONTINUES_IN_OUT``).

Each call appends a line to OUT/calls.txt; --fail-unless FILE fails until FILE exists.
"""

from __future__ import annotations

import argparse
from pathlib import Path

CONTINUES_IN_OUT = True
KEEP_ON_FAILURE = ("calls.txt",)  # its progress marker, as study's stamps folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--fail-unless", type=Path, default=None)


def run(args: argparse.Namespace) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "calls.txt", "a") as fh:
        fh.write("call\n")
    if args.fail_unless is not None and not args.fail_unless.exists():
        from neuro_ssl.errors import ImageError

        raise ImageError(f"{args.fail_unless}: simulated stop half-way")
    (args.out / "done.txt").write_text("done")
    return 0
