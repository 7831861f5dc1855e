"""Every option of every command explains itself and shows its real default, as it is typed
(issue 12, point 7: ``--no-class-weights ... (default: True)``, no default for ``--arch`` and
``--epochs``, ``(2.0, 2.0, 2.0)`` for ``--spacing``)."""

from __future__ import annotations

import argparse
import re

import pytest

from neuro_ssl.cli import _common
from neuro_ssl.cli.main import COMMANDS, build_parser


def _parsers(parser: argparse.ArgumentParser, name: str):
    """``(name, parser)`` for a command and every sub-command below it."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {sub_name}")


ALL = [(name, parser) for command in COMMANDS for name, parser in _parsers(build_parser(command), command)]
OPTIONS = [pytest.param(parser, action, id=f"{name} {action.option_strings[-1]}")
           for name, parser in ALL for action in parser._actions
           if action.option_strings and not isinstance(action, (argparse._HelpAction, argparse._VersionAction))]


def _printed_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The option's help exactly as ``--help`` prints it, joined onto one line."""
    text = parser.format_help()
    flag = action.option_strings[-1]
    block = re.search(rf"^  (?:-\w, )?{re.escape(flag)}\b.*?(?=^  \S|^\S|\Z)", text, flags=re.M | re.S)
    assert block, f"{flag} not found in --help"
    body = block.group(0)[len("  "):]
    body = body[len(parser._get_formatter()._format_action_invocation(action)):]
    return " ".join(body.split())


def test_every_command_uses_the_truthful_formatter():
    for name, parser in ALL:
        assert parser.formatter_class is _common.HelpFormatter, name


@pytest.mark.parametrize(("parser", "action"), OPTIONS)
def test_option_help(parser, action):
    printed = _printed_help(parser, action)
    words = re.sub(r"\(default: [^)]*\)", "", printed).strip()
    assert len(words) >= 8, f"{action.option_strings[-1]} does not say what it does: {printed!r}"
    assert "(default: True)" not in printed and "(default: False)" not in printed, printed
    assert not re.search(r"\(default: [(\[]", printed), f"a Python tuple/list as default: {printed!r}"
    flag = action.nargs == 0
    shown = re.findall(r"\(default: ([^)]*)\)", printed)
    if flag or action.required:
        assert not shown, f"{action.option_strings[-1]} is a flag or required; a default misleads: {printed!r}"
        return
    own = " ".join((action.help or "").split())
    if "default" in own.lower():  # the text says the default in words ('--k ... (default: best silhouette)')
        assert printed == own, f"a second default appended: {printed!r}"
        return
    assert len(shown) == 1, f"no default shown: {printed!r}"
    assert shown[0] == _common.format_default(action.default)
    if action.default not in (None, (), [], {}) and callable(action.type) and not isinstance(action.default, dict):
        typed = action.type(shown[0])  # typing the printed default gives the real default
        assert typed == action.default or typed == type(typed)(action.default), (shown[0], action.default)


def test_the_cases_of_the_issue():
    finetune = build_parser("finetune").format_help()
    assert "(default: True)" not in finetune and "--no-class-weights" in finetune
    pretrain = " ".join(build_parser("pretrain").format_help().split())
    for expected in ("--arch {resnet10,resnet18,resnet34,resnet50,densenet121} ", "(default: resnet18)",
                     "(default: 100)", "(default: 0.0003)", "(default: 0.1)", "(default: 2,2,2)",
                     "(default: 96,112,96)"):
        assert expected in pretrain, expected
    assert "(2.0, 2.0, 2.0)" not in pretrain


def test_format_default_is_how_the_option_is_typed():
    assert _common.format_default((2.0, 2.0, 2.0)) == "2,2,2"
    assert _common.format_default((96, 112, 96)) == "96,112,96"
    assert _common.format_default(("T1w",)) == "T1w"
    assert _common.format_default(1e-3) == "0.001" and _common.format_default(5e-5) == "5e-05"
    assert _common.format_default(None) == "none" and _common.format_default(()) == "none"
    assert _common.float_tuple(3)(_common.format_default((1.5, 2.0, 2.0))) == (1.5, 2.0, 2.0)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_percent_sign_prints_as_one(command):
    """argparse %-formats help texts; a text that escaped its % and then got a default appended
    was escaped twice and printed '20%% test' (study --splits)."""
    text = build_parser(command).format_help()
    assert "%%" not in text and "%(" not in text
    if command == "study":
        assert "20% test" in " ".join(text.split())
