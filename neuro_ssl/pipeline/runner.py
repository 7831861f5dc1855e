"""Run a pipeline's steps in order, skipping the current ones and resuming after a failure.

Each step is one ``neuro-ssl`` command, run in this process through the CLI entry point
(``launcher: inprocess``, the default: imports are paid once), in a fresh Python
(``launcher: subprocess``) or under ``torchrun --standalone --nproc_per_node N`` (``launcher:
torchrun``), or a runner builtin (``report``). The freshness rule is in :mod:`.stamps`.

Resume: a step whose last attempt failed (or was killed) with the same options and inputs, and
whose command has ``--resume`` and left ``<--out>/checkpoint.pt``, is rerun with ``--resume``.
A command that continues in its ``--out`` by itself (``CONTINUES_IN_OUT``: ``study``) is rerun
as is, its folder kept.
"""

from __future__ import annotations

import contextlib
import io
import shlex
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from neuro_ssl._utils.files import write_text
from neuro_ssl.errors import ConfigError, NeuroSSLError
from neuro_ssl.pipeline import stamps
from neuro_ssl.pipeline.spec import Pipeline, Step, _did_you_mean


class StepFailed(NeuroSSLError):
    """A step exited non-zero; rerunning the pipeline resumes at that step."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = max(1, int(exit_code))


@dataclass
class StepReport:
    name: str
    status: str            # ran | current | not selected | would run | would skip
    seconds: float = 0.0
    reason: str = ""


@dataclass
class PipelineReport:
    steps: list[StepReport] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(1 for s in self.steps if s.status == status)


def command_actions(command: str, args: list) -> dict:
    """``{"--flag": argparse.Action}`` of a CLI command (descending into subcommands by ``args``)."""
    import argparse

    from neuro_ssl.cli.main import build_parser

    parser = build_parser(command)
    for word in args:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or str(word) not in subs[0].choices:
            break
        parser = subs[0].choices[str(word)]
    return {opt: action for action in parser._actions for opt in action.option_strings}


def flag_of(key: str) -> str:
    return key if key.startswith("-") else "--" + key.replace("_", "-")


def build_argv(step: Step, actions: dict | None) -> list[str]:
    """Positional args, then ``--flag value`` per option (true -> bare flag, null/false -> left out)."""
    argv = [str(a) for a in step.args]
    for key, value in step.options.items():
        flag = flag_of(key)
        action = (actions or {}).get(flag)
        if value is None or value is False:
            continue
        if value is True and (action is None or action.nargs == 0):
            argv.append(flag)
            continue
        values = value if isinstance(value, list) else [value]
        many = action is not None and (action.nargs in ("+", "*") or (isinstance(action.nargs, int) and action.nargs > 1))
        argv += [flag, *map(str, values)] if many else [flag, ",".join(map(str, values))]
    return argv


def check_steps(pipeline: Pipeline, selected: set[str] | None = None) -> dict[str, dict | None]:
    """The selected steps' options exist for their commands, checked before anything runs.

    Returns the argparse actions per step (None for builtins and steps not selected).
    """
    from neuro_ssl.pipeline.builtins import BUILTINS, builtin_parameters

    actions_by_step: dict[str, dict | None] = {s.name: None for s in pipeline.steps}
    for step in pipeline.steps:
        if (selected is not None and step.name not in selected) or not step.enabled:
            continue
        where = f"{pipeline.path}: step '{step.name}'"
        if step.command in BUILTINS:
            known = builtin_parameters(step.command)
            for key in step.options:
                if key.replace("-", "_") not in known:
                    raise ConfigError(f"{where}: builtin '{step.command}' has no option '{key}'"
                                      f"{_did_you_mean(key.replace('-', '_'), known)}")
            if step.launcher != "inprocess":
                raise ConfigError(f"{where}: builtin '{step.command}' runs in process only")
            actions_by_step[step.name] = None
            continue
        try:
            actions = command_actions(step.command, step.args)
        except ModuleNotFoundError as exc:
            raise ConfigError(f"{where}: command '{step.command}' is not available in this installation ({exc})") from None
        for key in step.options:
            if flag_of(key) not in actions:
                raise ConfigError(f"{where}: neuro-ssl {step.command} has no option {flag_of(key)}"
                                  f"{_did_you_mean(flag_of(key), actions)}")
        actions_by_step[step.name] = actions
    return actions_by_step


def select_steps(pipeline: Pipeline, from_step: str | None, only: str | None) -> set[str]:
    names = [s.name for s in pipeline.steps]
    if from_step and only:
        raise ConfigError("use --from or --only, not both")

    def matching(word: str, flag: str) -> list[int]:
        hits = [i for i, s in enumerate(pipeline.steps) if word in (s.name, s.base)]
        if not hits:
            bases = list(dict.fromkeys([s.base for s in pipeline.steps] + names))
            raise ConfigError(f"{pipeline.path}: {flag} names unknown step '{word}'{_did_you_mean(word, bases)}; "
                              f"steps: {', '.join(dict.fromkeys(s.base for s in pipeline.steps))}")
        return hits

    if only:
        return {names[i] for i in matching(only, "--only")}
    if from_step:
        return set(names[min(matching(from_step, "--from")):])
    return set(names)


def dependencies(step: Step, earlier: list[Step]) -> list[str]:
    """Earlier steps whose outputs this step names (either path inside the other), plus ``needs:``."""
    mine = [stamps.absolute(p) for p in stamps.path_values(step)]
    deps = []
    for other in earlier:
        if step.name in (other.name,) or other.name in deps:
            continue
        named = any(n in (other.name, other.base) for n in step.needs)
        outs = stamps.own_outputs(other)
        if named or any(stamps.is_within(p, o) or stamps.is_within(o, p) for p in mine for o in outs):
            deps.append(other.name)
    return deps


def display(step: Step, argv: list[str]) -> str:
    from neuro_ssl.pipeline.builtins import BUILTINS

    if step.command in BUILTINS:
        return "(builtin) " + shlex.join([step.command, *argv])
    if step.launcher == "torchrun":
        head = ["torchrun", "--standalone", "--nproc_per_node", str(step.nproc), "-m", "neuro_ssl"]
    else:
        head = ["neuro-ssl"]
    return shlex.join(head + [step.command, *argv])


@dataclass
class _Run:
    """What one pass over the steps shares: selection, parsers, run ids so far, the report."""

    pipeline: Pipeline
    selected: set[str]
    forced: set[str]
    actions: dict[str, dict | None]
    dry_run: bool
    echo: Callable[[str], None]
    run_ids: dict[str, str | None] = field(default_factory=dict)
    would_rerun: set[str] = field(default_factory=set)
    report: PipelineReport = field(default_factory=PipelineReport)


def run_pipeline(pipeline: Pipeline, from_step: str | None = None, only: str | None = None,
                 force: bool = False, dry_run: bool = False,
                 echo: Callable[[str], None] | None = None) -> PipelineReport:
    """Run (or with ``dry_run`` only explain) the pipeline; raise :class:`StepFailed` on a failure."""
    echo = echo or (lambda line: print(line, flush=True))
    selected = select_steps(pipeline, from_step, only)
    run = _Run(pipeline, selected, selected if (force or from_step or only) else set(),
               check_steps(pipeline, selected), dry_run, echo)
    started = time.monotonic()
    for index, step in enumerate(pipeline.steps, start=1):
        _visit(run, index, step)
    report = run.report
    report.seconds = time.monotonic() - started
    verb = "would run" if dry_run else "ran"
    current = report.count("would skip" if dry_run else "current")
    echo(f"pipeline '{pipeline.name}': {report.count(verb)} step(s) {verb}, {current} current, in {report.seconds:.1f}s")
    return report


def _visit(run: _Run, index: int, step: Step) -> None:
    """Skip, explain or execute one step, recording its run id for the steps downstream."""
    pipeline, state_dir = run.pipeline, run.pipeline.state_dir
    prefix = f"[{index}/{len(pipeline.steps)}] {step.name}"
    earlier = pipeline.steps[: index - 1]
    dep_names = dependencies(step, earlier)
    inputs = _input_identities(step, earlier)
    dep_ids = {name: run.run_ids.get(name) for name in dep_names}
    stamp = stamps.read_stamp(state_dir, step.name)
    if step.name not in run.selected or not step.enabled:
        run.run_ids[step.name] = (stamp or {}).get("run_id") if step.enabled else None
        why = "not selected" if step.enabled else "disabled"
        run.echo(f"{prefix}: skipped ({why})")
        run.report.steps.append(StepReport(step.name, why))
        return
    reason = "forced" if step.name in run.forced else stamps.staleness(step, stamp, inputs, dep_ids)
    if reason is None and run.dry_run:
        rerun_deps = [d for d in dep_names if d in run.would_rerun]
        reason = f"upstream step '{rerun_deps[0]}' would rerun" if rerun_deps else None
    if reason is None:
        run.run_ids[step.name] = stamp["run_id"]
        run.echo(f"{prefix}: skipped (current)")
        run.report.steps.append(StepReport(step.name, "would skip" if run.dry_run else "current"))
        return
    argv = build_argv(step, run.actions[step.name])
    resuming = _can_resume(step, stamp, inputs, dep_ids, run.actions[step.name])
    argv += ["--resume"] if resuming else []
    if run.dry_run:
        run.would_rerun.add(step.name)
        run.run_ids[step.name] = (stamp or {}).get("run_id")
        run.echo(f"{prefix}: would run ({reason}{', resuming' if resuming else ''}): {display(step, argv)}")
        run.report.steps.append(StepReport(step.name, "would run", reason=reason))
        return
    seconds = _execute(pipeline, step, argv, inputs, dep_ids, prefix, reason, resuming, run.echo)
    run.run_ids[step.name] = stamps.read_stamp(state_dir, step.name)["run_id"]
    run.report.steps.append(StepReport(step.name, "ran", seconds, reason))


def _input_identities(step: Step, earlier: list[Step]) -> dict[str, list]:
    produced = [o for s in earlier for o in stamps.own_outputs(s)]
    return {
        key: stamps.identity(path, any(stamps.is_within(path, o) or stamps.is_within(o, path) for o in produced))
        for key, path in stamps.input_paths(step).items()
    }


def _can_resume(step: Step, stamp: dict | None, inputs: dict, dep_ids: dict, actions: dict | None) -> bool:
    """Same options and inputs as an attempt that did not finish, and a checkpoint it left."""
    if not (step.resume and actions and "--resume" in actions and stamp and step.options.get("out")):
        return False
    if stamp.get("status") not in ("running", "failed") or stamp.get("options_hash") != stamps.options_hash(step):
        return False
    if (stamp.get("inputs") or {}) != inputs or (stamp.get("deps") or {}) != dep_ids:
        return False
    return (stamps.absolute(step.options["out"]) / "checkpoint.pt").is_file()


def _execute(pipeline: Pipeline, step: Step, argv: list[str], inputs: dict, dep_ids: dict,
             prefix: str, reason: str, resuming: bool, echo) -> float:
    state_dir = pipeline.state_dir
    if not resuming and not _continues_itself(step):
        _clear_previous_run_folder(pipeline, step, stamps.read_stamp(state_dir, step.name), echo)
    stamps.write_stamp(state_dir, step, "running", inputs, dep_ids, argv=argv)
    echo(f"{prefix}: running ({reason}{', resuming from its checkpoint' if resuming else ''}): {display(step, argv)}")
    started = time.monotonic()
    code, captured, error = _launch(step, argv)
    seconds = time.monotonic() - started
    if step.stdout is not None and captured is not None:
        write_text(step.stdout, captured)
    missing = [str(p) for p in stamps.own_outputs(step) if not p.exists()]
    if code != 0 and step.allow_failure and not missing:
        echo(f"{prefix}: exit code {code}{': ' + error if error else ''} (allowed by allow_failure)")
        code = 0
    if code == 0 and missing:
        code, error = 1, f"finished but did not write {missing[0]}"
    if code != 0:
        stamps.write_stamp(state_dir, step, "failed", inputs, dep_ids, seconds, argv=argv)
        if captured and step.stdout is not None:
            sys.stdout.write(captured)
        detail = f": {error}" if error else f" with exit code {code}"
        raise StepFailed(f"{pipeline.path}: step '{step.name}' failed after {seconds:.1f}s{detail}; "
                         f"fix the cause and rerun to resume at this step", code)
    stamps.write_stamp(state_dir, step, "done", inputs, dep_ids, seconds, argv=argv)
    echo(f"{prefix}: done in {seconds:.1f}s")
    return seconds


def _continues_itself(step: Step) -> bool:
    """A command that continues the work in its own ``--out`` (``study``) keeps it on a rerun."""
    import importlib

    from neuro_ssl.cli.main import COMMANDS

    if step.command not in COMMANDS:
        return False
    return bool(getattr(importlib.import_module(COMMANDS[step.command][0]), "CONTINUES_IN_OUT", False))


def _clear_previous_run_folder(pipeline: Pipeline, step: Step, stamp: dict | None, echo) -> None:
    """Empty the ``--out`` folder an earlier attempt of this very step wrote, before a fresh rerun.

    Commands such as ``pretrain`` refuse a non-empty run folder (unless resuming), and stale
    files of an old run must not mix with the new one. Only a folder the stamp says this step
    wrote is touched, and never one holding the pipeline's state or another step's outputs.
    """
    import shutil

    out = step.options.get("out")
    if not stamp or not isinstance(out, str) or not stamps.absolute(out).is_dir():
        return
    folder = stamps.absolute(out)
    if not any(stamps.is_within(p, folder) for p in map(Path, stamp.get("outputs") or [])):
        return
    others = [o for s in pipeline.steps if s.name != step.name for o in stamps.own_outputs(s)]
    if stamps.is_within(stamps.absolute(pipeline.state_dir), folder) or any(stamps.is_within(o, folder) for o in others):
        return
    echo(f"    clearing {folder} (written by an earlier run of '{step.name}')")
    shutil.rmtree(folder)


def _launch(step: Step, argv: list[str]) -> tuple[int, str | None, str | None]:
    """Run one step; returns (exit code, captured stdout or None, one-line error or None)."""
    if step.launcher == "inprocess":
        return _launch_inprocess(step, argv)
    if step.launcher == "torchrun":
        head = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node", str(step.nproc), "-m", "neuro_ssl"]
    else:
        head = [sys.executable, "-m", "neuro_ssl"]
    capture = subprocess.PIPE if step.stdout is not None else None
    completed = subprocess.run(head + [step.command, *argv], stdout=capture, text=True)
    return completed.returncode, completed.stdout if capture else None, None


def _launch_inprocess(step: Step, argv: list[str]) -> tuple[int, str | None, str | None]:
    from neuro_ssl.pipeline.builtins import BUILTINS, run_builtin

    buffer = io.StringIO() if step.stdout is not None else None
    redirect = contextlib.redirect_stdout(buffer) if buffer is not None else contextlib.nullcontext()
    error = None
    try:
        with redirect:
            if step.command in BUILTINS:
                run_builtin(step.command, step.options)
                code = 0
            else:
                code = _call_command(step.command, argv)
    except KeyboardInterrupt:
        code, error = 130, "interrupted"
    except NeuroSSLError as exc:
        code, error = exc.exit_code, " ".join(str(exc).split())
    except Exception as exc:  # noqa: BLE001 - a bug in a command: keep its traceback, stop the pipeline
        traceback.print_exc()
        code, error = 1, f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    return code, buffer.getvalue() if buffer is not None else None, error


def _call_command(command: str, argv: list[str]) -> int:
    """The CLI's parse-and-run, minus its error printing: the runner reports errors itself."""
    from neuro_ssl.cli import _common
    from neuro_ssl.cli.main import build_parser

    parser = build_parser(command)
    try:
        args = _common.parse_with_config(parser, argv)
    except SystemExit as exc:  # argparse usage error: it already printed the usage line
        return exc.code if isinstance(exc.code, int) else 2
    return _common.run_parsed(args)
