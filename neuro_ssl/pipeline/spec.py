"""Pipeline YAML -> a list of concrete steps: plain data, variables substituted, ``foreach`` expanded.

A pipeline file is read with ``yaml.safe_load`` (no tags, no code, nothing evaluated). Its
shape (``docs/pipelines.md`` has the full reference)::

    name: demo
    vars: {out: demo_run, seed: 0}          # ${name} anywhere in a step; --set name=value wins
    presets: {tiny: {subjects: 16}}          # named groups of var overrides (--preset tiny)
    steps:
      - name: split
        command: split                       # a neuro-ssl command (or a runner builtin: report)
        args: ["${out}/cohort/manifest.csv"] # positional arguments
        options: {out: "${out}/splits", seed: "${seed}"}   # --out ... --seed ... (CLI spelling)
        outputs: ["${out}/splits/train.csv"] # what makes the step "done"

Every mistake is a one-line :class:`~neuro_ssl.errors.ConfigError` naming the file and the step.
"""

from __future__ import annotations

import difflib
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neuro_ssl.errors import ConfigError

TOP_KEYS = ("name", "description", "extends", "vars", "presets", "steps")
STEP_KEYS = (
    "name", "description", "command", "args", "options", "outputs", "inputs", "needs",
    "foreach", "launcher", "nproc", "stdout", "resume", "untracked", "when", "allow_failure",
)
#: options never read as inputs: ``--out`` is where a command writes, and a shared cache changes
#: all the time and says nothing about freshness
DEFAULT_UNTRACKED = ("out", "cache-dir")
LAUNCHERS = ("inprocess", "subprocess", "torchrun")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


@dataclass
class Step:
    """One concrete step, after substitution and ``foreach`` expansion."""

    name: str                       # unique, e.g. ``finetune_linear[5]``
    base: str                       # the YAML entry's name, e.g. ``finetune_linear``
    command: str
    args: list[Any] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    needs: list[str] = field(default_factory=list)
    launcher: str = "inprocess"
    nproc: int = 1
    stdout: str | None = None
    resume: bool = True
    enabled: bool = True            # ``when:``: false skips the step (e.g. synth when a manifest is given)
    allow_failure: bool = False     # a non-zero exit still counts as done (validate with --skip-bad)
    untracked: tuple[str, ...] = DEFAULT_UNTRACKED
    description: str = ""


@dataclass
class Pipeline:
    """A loaded pipeline: where it came from, its resolved variables and its steps in order."""

    path: Path
    name: str
    description: str
    vars: dict[str, Any]
    steps: list[Step]

    @property
    def state_dir(self) -> Path:
        """Where step stamps live: ``<out>/.neuro-ssl-pipeline`` (``./`` when no ``out`` var)."""
        return Path(str(self.vars.get("out", "."))) / ".neuro-ssl-pipeline"


def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def parse_set(items: list[str] | None, where: str = "--set") -> dict[str, Any]:
    """``["a=1", "b=x,y"]`` -> ``{"a": 1, "b": "x,y"}``; values read as YAML scalars/lists."""
    import yaml

    result: dict[str, Any] = {}
    for item in items or []:
        key, sep, text = str(item).partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{where} {item!r}: expected NAME=VALUE")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        result[key.strip()] = value
    return result


def load_pipeline(path: str | Path, overrides: dict[str, Any] | None = None,
                  preset: str | None = None, known_commands=None) -> Pipeline:
    """Read, check and expand a pipeline file. ``overrides`` (``--set``) beat presets beat vars.

    ``known_commands``: the command names a step may use (default: the CLI's commands and the
    runner builtins); an unknown one is an error at load time, before anything runs.
    """
    path = Path(path)
    data = _read_with_parents(path, ())
    variables = _resolve_vars(path, data.get("vars") or {}, _preset_vars(path, data, preset), overrides or {})
    if known_commands is None:
        known_commands = default_command_names()
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise ConfigError(f"{path}: 'steps:' must be a non-empty list")
    steps: list[Step] = []
    for position, raw in enumerate(raw_steps, start=1):
        steps.extend(_expand_step(path, position, raw, variables, known_commands))
    _check_unique_and_needs(path, steps)
    return Pipeline(path=path, name=str(data.get("name") or path.stem),
                    description=str(data.get("description") or ""), vars=variables, steps=steps)


def _read_raw(path: Path) -> dict:
    import yaml

    if not path.is_file():
        raise ConfigError(f"{path}: pipeline file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with 'steps:', got {type(data).__name__}")
    for key in data:
        if key not in TOP_KEYS:
            raise ConfigError(f"{path}: unknown top-level key '{key}'{_did_you_mean(key, TOP_KEYS)}")
    return data


def _read_with_parents(path: Path, chain: tuple) -> dict:
    """``extends: other.yaml`` (relative to this file): inherit its steps, vars and presets.

    This file's vars and presets override the parent's; its ``steps:``, when given, replace them.
    """
    data = _read_raw(path)
    parent_name = data.get("extends")
    if parent_name is None:
        return data
    parent_path = (path.parent / str(parent_name)).resolve()
    if parent_path in chain + (path.resolve(),):
        raise ConfigError(f"{path}: 'extends: {parent_name}' forms a cycle")
    parent = _read_with_parents(parent_path, chain + (path.resolve(),))
    for key in ("vars", "presets"):
        if data.get(key) is not None and not isinstance(data.get(key), dict):
            raise ConfigError(f"{path}: '{key}:' must be a mapping")
    merged = {**parent, **{k: v for k, v in data.items() if k not in ("extends", "vars", "presets")}}
    merged["vars"] = {**(parent.get("vars") or {}), **(data.get("vars") or {})}
    merged["presets"] = {**(parent.get("presets") or {}), **(data.get("presets") or {})}
    return merged


def default_command_names() -> tuple[str, ...]:
    from neuro_ssl.cli.main import COMMANDS
    from neuro_ssl.pipeline.builtins import BUILTINS

    return tuple(c for c in COMMANDS if c not in ("demo", "run")) + tuple(BUILTINS)


def _preset_vars(path: Path, data: dict, preset: str | None) -> dict[str, Any]:
    presets = data.get("presets") or {}
    if not isinstance(presets, dict):
        raise ConfigError(f"{path}: 'presets:' must map a preset name to var values")
    if preset is None:
        return {}
    if preset not in presets:
        choices = ", ".join(map(str, presets)) or "none defined"
        raise ConfigError(f"{path}: unknown preset '{preset}'{_did_you_mean(preset, presets)}; choices: {choices}")
    chosen = presets[preset] or {}
    if not isinstance(chosen, dict):
        raise ConfigError(f"{path}: preset '{preset}' must be a mapping of var: value")
    return dict(chosen)


def _resolve_vars(path: Path, declared: Any, preset: dict, overrides: dict) -> dict[str, Any]:
    """Merge vars < preset < --set (only declared names), then substitute vars inside vars."""
    if not isinstance(declared, dict):
        raise ConfigError(f"{path}: 'vars:' must be a mapping of name: value")
    merged = {str(k): v for k, v in declared.items()}
    for source, values in (("preset", preset), ("--set", overrides)):
        for key, value in values.items():
            if key not in merged:
                raise ConfigError(f"{path}: {source} names unknown var '{key}'{_did_you_mean(key, merged)}")
            merged[key] = value
    resolved: dict[str, Any] = {}
    for name in merged:
        resolved[name] = _resolve_one_var(path, name, merged, resolved, ())
    return resolved


def _resolve_one_var(path: Path, name: str, merged: dict, resolved: dict, chain: tuple) -> Any:
    if name in resolved:
        return resolved[name]
    if name in chain:
        raise ConfigError(f"{path}: vars refer to each other in a cycle: {' -> '.join(chain + (name,))}")
    lookup = {}
    for ref in _referenced(merged[name]):
        if ref not in merged:
            raise ConfigError(f"{path}: var '{name}' uses undefined var '{ref}'{_did_you_mean(ref, merged)}")
        lookup[ref] = _resolve_one_var(path, ref, merged, resolved, chain + (name,))
    value = substitute(merged[name], lookup, f"{path}: var '{name}'")
    resolved[name] = value
    return value


def _referenced(value: Any) -> set[str]:
    if isinstance(value, str):
        return set(_VAR.findall(value))
    if isinstance(value, list):
        return set().union(*(_referenced(v) for v in value)) if value else set()
    if isinstance(value, dict):
        return set().union(*(_referenced(v) for v in value.values())) if value else set()
    return set()


def substitute(value: Any, variables: dict[str, Any], where: str) -> Any:
    """Replace ``${name}``: a whole-string reference keeps the var's type (list, int, null)."""
    if isinstance(value, str):
        whole = _VAR.fullmatch(value)
        if whole:
            return _lookup(whole.group(1), variables, where)

        def text(match: re.Match) -> str:
            found = _lookup(match.group(1), variables, where)
            if isinstance(found, (list, tuple)):
                return ",".join(str(v) for v in found)
            return "" if found is None else str(found)

        return _VAR.sub(text, value)
    if isinstance(value, list):
        return [substitute(v, variables, where) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, variables, where) for k, v in value.items()}
    return value


def _lookup(name: str, variables: dict[str, Any], where: str) -> Any:
    if name not in variables:
        raise ConfigError(f"{where}: undefined variable '${{{name}}}'{_did_you_mean(name, variables)}")
    return variables[name]


def _expand_step(path: Path, position: int, raw: Any, variables: dict, known_commands) -> list[Step]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: step {position} must be a mapping with 'name:' and 'command:'")
    name = raw.get("name")
    label = f"{path}: step '{name}'" if name else f"{path}: step {position}"
    for key in raw:
        if key not in STEP_KEYS:
            raise ConfigError(f"{label}: unknown key '{key}'{_did_you_mean(key, STEP_KEYS)}")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"{label}: 'name:' must be a word (letters, digits, _ . -)")
    command = raw.get("command")
    if not isinstance(command, str) or not command:
        raise ConfigError(f"{label}: 'command:' is missing")
    if command not in known_commands:
        raise ConfigError(
            f"{label}: unknown command '{command}'{_did_you_mean(command, known_commands)}; "
            f"known: {', '.join(known_commands)}")
    combos = _foreach_combinations(label, raw.get("foreach"), variables)
    steps = []
    for combo in combos:
        parts = combo.pop("__suffix__", [])
        scope = {**variables, **combo}
        suffix = "[" + ",".join(str(v) for v in parts) + "]" if combo else ""
        steps.append(_build_step(label, name + suffix, name, command, raw, scope))
    return steps


def _foreach_combinations(label: str, foreach: Any, variables: dict) -> list[dict[str, Any]]:
    """Expand ``foreach`` into one var mapping per step instance.

    A mapping ``{budget: [5, 10], mode: [linear, full]}`` gives the cartesian product; a list of
    such mappings gives the products one after another (a scalar counts as a one-value list), so
    ``[{budget: [5, 10], labels: "${budget}"}, {budget: all, labels: null}]`` pairs each budget
    with its own option value. A value may use the item's other vars.
    """
    if foreach is None:
        return [{}]
    items = foreach if isinstance(foreach, list) else [foreach]
    combos: list[dict[str, Any]] = []
    for item in items:
        if not isinstance(item, dict) or not item:
            raise ConfigError(f"{label}: 'foreach:' must be a mapping var: [values] or a list of such mappings")
        names, lists = [], []
        for key, values in item.items():
            whole = _VAR.fullmatch(values) if isinstance(values, str) else None
            if whole and whole.group(1) not in item:  # a pipeline var holding the list
                values = substitute(values, variables, label)
            if isinstance(values, str) and "," in values and "${" not in values:
                values = [v.strip() for v in values.split(",") if v.strip()]
            values = values if isinstance(values, list) else [values]
            if not values:
                raise ConfigError(f"{label}: 'foreach: {key}' must not be an empty list")
            names.append(str(key))
            lists.append(values)
        for combo in itertools.product(*lists):
            raw = dict(zip(names, combo))
            literal = [(k, v) for k, v in raw.items() if v is not None and not _referenced(v)]
            combos.append({k: substitute(v, {**variables, **raw}, label) for k, v in raw.items()}
                          | {"__suffix__": literal})
    return _name_instances(combos)


def _name_instances(combos: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Name each instance by its literal values of the vars that differ between instances."""
    seen: dict[str, set[str]] = {}
    literal_everywhere = set.intersection(*({k for k, _ in c["__suffix__"]} for c in combos))
    for combo in combos:
        for key, value in combo.items():
            seen.setdefault(key, set()).add(repr(value))
    varying = {k for k, values in seen.items() if (len(values) > 1 or len(combos) == 1) and k in literal_everywhere}
    for combo in combos:
        combo["__suffix__"] = ["+".join(map(str, v)) if isinstance(v, list) else v
                               for k, v in combo["__suffix__"] if k in varying]
    return combos


def _build_step(label: str, name: str, base: str, command: str, raw: dict, scope: dict) -> Step:
    label = label.replace(f"step '{base}'", f"step '{name}'")
    args = substitute(raw.get("args") or [], scope, label)
    options = substitute(raw.get("options") or {}, scope, label)
    if not isinstance(args, list):
        args = [args]
    if not isinstance(options, dict):
        raise ConfigError(f"{label}: 'options:' must be a mapping of flag: value")
    for key, value in options.items():
        if isinstance(value, dict):
            raise ConfigError(f"{label}: option '{key}' cannot be a mapping")
    outputs = _path_list(label, "outputs", substitute(raw.get("outputs") or [], scope, label))
    inputs = _path_list(label, "inputs", substitute(raw.get("inputs") or [], scope, label))
    launcher = str(substitute(raw.get("launcher", "inprocess"), scope, label))
    if launcher not in LAUNCHERS:
        raise ConfigError(f"{label}: unknown launcher '{launcher}'{_did_you_mean(launcher, LAUNCHERS)}; "
                          f"choices: {', '.join(LAUNCHERS)}")
    nproc = substitute(raw.get("nproc", 1), scope, label)
    if not isinstance(nproc, int) or isinstance(nproc, bool) or nproc < 1:
        raise ConfigError(f"{label}: 'nproc:' must be a positive integer, got {nproc!r}")
    stdout = substitute(raw.get("stdout"), scope, label)
    needs = raw.get("needs") or []
    needs = [needs] if isinstance(needs, str) else needs
    untracked = raw.get("untracked") or []
    untracked = [untracked] if isinstance(untracked, str) else untracked
    if not isinstance(untracked, list):
        raise ConfigError(f"{label}: 'untracked:' must be a list of option names")
    if not outputs and stdout is None:
        raise ConfigError(f"{label}: declare 'outputs:' (files or folders the step writes) so it can be skipped when current")
    flags = {key: substitute(raw.get(key, default), scope, label) for key, default in (("when", True), ("allow_failure", False))}
    for key, value in flags.items():
        if not isinstance(value, bool):
            raise ConfigError(f"{label}: '{key}:' must be true or false, got {value!r}")
    return Step(
        enabled=flags["when"], allow_failure=flags["allow_failure"],
        name=name, base=base, command=command, args=list(args), options=dict(options),
        outputs=outputs, inputs=inputs, needs=[str(n) for n in needs], launcher=launcher, nproc=nproc,
        stdout=None if stdout is None else str(stdout), resume=bool(raw.get("resume", True)),
        untracked=DEFAULT_UNTRACKED + tuple(str(u).replace("_", "-") for u in untracked),
        description=str(raw.get("description") or ""),
    )


def _path_list(label: str, key: str, value: Any) -> list[str]:
    value = [value] if isinstance(value, str) else value
    if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
        raise ConfigError(f"{label}: '{key}:' must be a list of paths")
    return [str(v) for v in value]


def _check_unique_and_needs(path: Path, steps: list[Step]) -> None:
    seen: dict[str, Step] = {}
    for step in steps:
        if step.name in seen:
            raise ConfigError(f"{path}: step '{step.name}' is defined twice; step names must be unique")
        for need in step.needs:
            if not any(s.name == need or s.base == need for s in seen.values()):
                known = [s.name for s in seen.values()]
                raise ConfigError(f"{path}: step '{step.name}': needs unknown or later step '{need}'"
                                  f"{_did_you_mean(need, known)}")
        seen[step.name] = step
