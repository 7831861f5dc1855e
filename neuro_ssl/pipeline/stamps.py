"""When is a step current? Stamps, input identities and the freshness rule.

After a step succeeds the runner writes ``<out>/.neuro-ssl-pipeline/<step>.json`` atomically.
A step is **current** (skipped) when all of these hold:

1. its stamp exists and says ``done``;
2. every declared output exists;
3. the stamp's options hash equals the hash of the step as now resolved (command, positional
   arguments, options, launcher, nproc): a changed option or ``--set`` value reruns it;
4. every input it names (a path in its arguments, options or ``inputs:`` that exists, is not
   one of its own outputs nor inside or around one, and is not the value of ``--out``,
   ``--cache-dir`` or another ``untracked:`` option) has the same identity as recorded: size + mtime (ns) for a file, and
   for a folder not written by an earlier step the count, total size and newest mtime of the
   files inside it;
5. every step it depends on (an earlier step whose outputs it names, or one in ``needs:``) has
   the same run id as recorded, i.e. it has not rerun since.

Rule 5 makes a rerun flow downstream. Files referenced *inside* an input (the images a manifest
lists) are not inspected: change the manifest, or rerun with ``--from``/``--force``.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from neuro_ssl._utils.files import write_json

FORMAT = "neuro-ssl-pipeline-stamp/1"


def options_hash(step) -> str:
    """A stable hash of what the step does (not of where or when it ran)."""
    payload = {
        "command": step.command, "args": step.args, "options": step.options,
        "launcher": step.launcher, "nproc": step.nproc, "stdout": step.stdout,
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def absolute(path: str | os.PathLike) -> Path:
    return Path(os.path.abspath(os.path.expanduser(str(path))))


def is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def path_values(step) -> list[str]:
    """Every string in the step's arguments, options and ``inputs:`` (list items one by one)."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str) and value and not value.startswith("-"):
            found.append(value)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)

    walk(step.args)
    for key, value in step.options.items():
        if str(key).lstrip("-").replace("_", "-") not in step.untracked:
            walk(value)
    walk(step.inputs)
    return found


def own_outputs(step) -> list[Path]:
    outs = [absolute(p) for p in step.outputs]
    if step.stdout:
        outs.append(absolute(step.stdout))
    return outs


def input_paths(step) -> dict[str, Path]:
    """Existing paths the step names, except its outputs and folders inside or around them."""
    outputs = own_outputs(step)
    result: dict[str, Path] = {}
    for text in path_values(step):
        path = absolute(text)
        if any(is_within(path, out) or is_within(out, path) for out in outputs):
            continue
        if path.exists():
            result[str(path)] = path
    return result


def identity(path: Path, produced_by_earlier_step: bool) -> list:
    """``[size, mtime_ns]`` for a file; a folder summary (or just "folder" when a step made it)."""
    try:
        if path.is_file():
            st = path.stat()
            return [st.st_size, st.st_mtime_ns]
        if path.is_dir():
            if produced_by_earlier_step:
                return ["folder"]  # covered by that step's run id (rule 5)
            return ["folder", *_folder_summary(path)]
    except OSError:
        pass
    return ["missing"]


def _folder_summary(folder: Path) -> list[int]:
    count = total = newest = 0
    for root, _, files in os.walk(folder):
        for name in files:
            if name.startswith(".tmp-"):
                continue
            try:
                st = os.stat(os.path.join(root, name))
            except OSError:
                continue
            count += 1
            total += st.st_size
            newest = max(newest, st.st_mtime_ns)
    return [count, total, newest]


def stamp_path(state_dir: Path, step_name: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "._-[]," else "_" for c in step_name)
    return Path(state_dir) / f"{safe}.json"


def read_stamp(state_dir: Path, step_name: str) -> dict | None:
    path = stamp_path(state_dir, step_name)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == FORMAT else None


def write_stamp(state_dir: Path, step, status: str, inputs: dict, deps: dict, seconds: float = 0.0,
                argv: list[str] | None = None) -> dict:
    record = {
        "format": FORMAT, "step": step.name, "status": status, "command": step.command,
        "argv": argv or [], "options_hash": options_hash(step), "inputs": inputs, "deps": deps,
        "outputs": [str(p) for p in own_outputs(step)], "run_id": uuid.uuid4().hex,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"), "seconds": round(seconds, 3),
    }
    write_json(stamp_path(state_dir, step.name), record)
    return record


def staleness(step, stamp: dict | None, inputs: dict, deps: dict) -> str | None:
    """Why the step must run (a short reason), or None when it is current."""
    if stamp is None:
        return "never run"
    if stamp.get("status") != "done":
        return f"last attempt {stamp.get('status', 'unfinished')}"
    for out in own_outputs(step):
        if not out.exists():
            return f"output missing: {out}"
    if stamp.get("options_hash") != options_hash(step):
        return "options changed"
    recorded_deps = stamp.get("deps") or {}
    for name in sorted(set(recorded_deps) | set(deps)):
        if recorded_deps.get(name) != deps.get(name):
            return f"upstream step '{name}' reran"
    recorded = stamp.get("inputs") or {}
    for key in sorted(set(recorded) | set(inputs)):
        if recorded.get(key) != inputs.get(key):
            return f"input changed: {key}"
    return None
