"""Run a study unit by unit: skip the current ones, resume a killed pretraining, show progress.

Each unit is stamped in ``DIR/.neuro-ssl-study/<unit>.json`` with the pipeline runner's
freshness rule (:func:`neuro_ssl.pipeline.stamps.staleness`): a unit is current when its stamp
says done, its outputs exist, its options hash is unchanged, the files it names are unchanged
and the units it depends on have not rerun. So rerunning the same command after a kill (or
with more ``--draws`` or another budget) does only the missing work; changing a pretraining
option reruns that pretraining and everything built on it. A pretraining killed mid-way
continues from its ``checkpoint.pt`` (exactly, see :mod:`neuro_ssl.training.pretrain`); any other
unfinished unit starts again from an empty folder.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Callable

from neuro_ssl._utils.files import write_yaml
from neuro_ssl.pipeline import stamps
from neuro_ssl.study.config import StudyConfig
from neuro_ssl.study.plan import Plan, make_plan
from neuro_ssl.study.units import Unit, build_units


def run_study(config: StudyConfig, manifest, splits, out, echo: Callable[[str], None] | None = None) -> dict:
    """Plan (checks, no files), then run every unit that is not current and write the tables.

    Returns ``{"plan": Plan, "ran": int, "current": int, "tables": {name: path}, "seconds": float}``.
    """
    from neuro_ssl.study.tables import write_tables

    echo = echo or (lambda line: print(line, flush=True))
    plan = make_plan(config, manifest, splits, out)
    for line in plan.budget_warnings():
        echo(f"warning: {line}")
    units = build_units(plan)
    started = time.monotonic()
    _start_folder(plan)
    ran = current = 0
    run_ids: dict[str, str] = {}
    bar = _progress(len(units))
    try:
        for index, unit in enumerate(units, start=1):
            line = _visit(plan, unit, run_ids)
            if line is None:
                current += 1
            else:
                ran += 1
                with bar.external_write_mode():
                    echo(f"[{index}/{len(units)}] {unit.name}: {line}")
            bar.update(1)
    finally:
        bar.close()
        tables = write_tables(plan, units)  # what is done so far, also when stopped
    return {"plan": plan, "ran": ran, "current": current, "tables": tables, "seconds": time.monotonic() - started}


def _start_folder(plan: Plan) -> None:
    """The study folder, its resolved options (study.yaml) and, when the study made it, the split."""
    from neuro_ssl.data.manifest import write_manifest

    plan.state_dir.mkdir(parents=True, exist_ok=True)
    if plan.new_split is not None:
        for name, part in plan.new_split.items():
            if len(part):
                write_manifest(part, plan.out / "splits" / f"{name}.csv")
    write_yaml(plan.out / "study.yaml", {**plan.config.to_dict(), "task": plan.spec.task,
                                         "classes_resolved": list(plan.spec.classes), "metric_resolved": plan.metric,
                                         "sources": dict(plan.sources)})
    from neuro_ssl._utils.files import write_csv

    write_csv(plan.out / "draws.csv", plan.draws)


def _visit(plan: Plan, unit: Unit, run_ids: dict[str, str]) -> str | None:
    """Run ``unit`` unless it is current; returns its one-line result (None when skipped)."""
    step = unit.step()
    stamp = stamps.read_stamp(plan.state_dir, unit.name)
    inputs = {key: stamps.identity(path, False) for key, path in stamps.input_paths(step).items()}
    deps = {name: run_ids.get(name) for name in unit.deps}
    reason = stamps.staleness(step, stamp, inputs, deps)
    if reason is None:
        run_ids[unit.name] = stamp["run_id"]
        return None
    resume = _can_resume(unit, step, stamp, inputs, deps)
    if not resume:
        unit.clear()
    stamps.write_stamp(plan.state_dir, step, "running", inputs, deps)
    started = time.monotonic()
    try:
        with _quiet(unit.kind != "pretrain"):
            result = unit.work(resume)
    except BaseException:
        stamps.write_stamp(plan.state_dir, step, "failed", inputs, deps, time.monotonic() - started)
        raise
    seconds = time.monotonic() - started
    missing = [str(p) for p in unit.outputs if not Path(p).exists()]
    if missing:  # a bug, not a user mistake: the unit returned without writing what it promised
        raise RuntimeError(f"study unit {unit.name} finished but did not write {missing[0]}")
    record = stamps.write_stamp(plan.state_dir, step, "done", inputs, deps, seconds)
    run_ids[unit.name] = record["run_id"]
    return f"{result} ({seconds:.1f} s{', resumed' if resume else ''})"


def _can_resume(unit: Unit, step, stamp: dict | None, inputs: dict, deps: dict) -> bool:
    """The runner's rule: same options and inputs as an attempt that did not finish, and its checkpoint."""
    if not (unit.resumable and stamp and stamp.get("status") in ("running", "failed")):
        return False
    if stamp.get("options_hash") != stamps.options_hash(step):
        return False
    if (stamp.get("inputs") or {}) != inputs or (stamp.get("deps") or {}) != deps:
        return False
    return (unit.folder / "checkpoint.pt").is_file()


def _progress(total: int):
    """One bar over the units on stderr (silent with NEURO_SSL_QUIET=1)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="study", unit="unit", file=sys.stderr, dynamic_ncols=True,
                mininterval=0.5, disable=os.environ.get("NEURO_SSL_QUIET") == "1")


@contextlib.contextmanager
def _quiet(enabled: bool):
    """Hush the per-scan bars of short units under the study's own bar (pretraining keeps its epochs)."""
    previous = os.environ.get("NEURO_SSL_QUIET")
    if enabled:
        os.environ["NEURO_SSL_QUIET"] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("NEURO_SSL_QUIET", None)
        else:
            os.environ["NEURO_SSL_QUIET"] = previous
