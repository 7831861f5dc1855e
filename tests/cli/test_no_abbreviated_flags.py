"""No command takes an abbreviation of a flag as the flag itself.

argparse's default ``allow_abbrev`` reads ``--work 4`` as ``--workers 4``: a typo or a stale
script keeps running with a meaning its author did not write, and adding a flag later
(``--work-dir``) would turn the same line into an "ambiguous option" error. Every parser of the
CLI (commands and ``manifest`` sub-commands) and of ``benchmarks/`` refuses them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from neuro_ssl.cli.main import COMMANDS, build_parser, main

REPO = Path(__file__).resolve().parents[2]


def _leaf_parsers(parser: argparse.ArgumentParser):
    """The parser itself, or every parser below its sub-command actions."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield parser
        return
    for action in subs:
        for child in dict.fromkeys(action.choices.values()):
            yield from _leaf_parsers(child)


def _long_flag(parser: argparse.ArgumentParser) -> str:
    """The longest ``--flag`` of the parser that takes a value (its prefix is then unambiguous)."""
    flags = [s for a in parser._actions if a.nargs != 0 and a.dest not in ("help", "config")
             for s in a.option_strings if s.startswith("--")]
    return max(flags, key=len)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_refuses_an_abbreviated_flag(command):
    for leaf in _leaf_parsers(build_parser(command)):
        flag = _long_flag(leaf)
        prefix = flag[: max(4, len(flag) - 3)]
        for action in leaf._actions:     # only the abbreviation is under test, not the required options
            action.required = False
        for group in leaf._mutually_exclusive_groups:
            group.required = False
        known, extras = leaf.parse_known_args([prefix, "1"])
        assert prefix in extras, f"{leaf.prog}: {prefix} was taken for {flag}"


def test_the_cli_says_the_abbreviation_is_not_an_option(capsys):
    assert main(["split", "m.csv", "--out", "o", "--test-siz", "0.2"]) == 2
    assert "unrecognized arguments: --test-siz" in capsys.readouterr().err


@pytest.mark.parametrize("script", sorted(p.name for p in (REPO / "benchmarks").glob("*.py")
                                          if "ArgumentParser(" in p.read_text()))
def test_benchmark_scripts_refuse_abbreviations(script):
    text = (REPO / "benchmarks" / script).read_text()
    assert text.count("ArgumentParser(") == text.count("allow_abbrev=False"), script
