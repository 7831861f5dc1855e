"""A stopped study step in a pipeline is rerun in its own folder, not cleared (it continues itself)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from neuro_ssl.cli import main as cli_main
from neuro_ssl.pipeline import load_pipeline, run_pipeline
from neuro_ssl.pipeline.runner import StepFailed, _continues_itself
from neuro_ssl.pipeline.spec import Step

HERE = Path(__file__).resolve().parent


def test_runner_keeps_the_folder_of_a_command_that_continues_itself(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(HERE))
    monkeypatch.setitem(cli_main.COMMANDS, "keeper", ("_keeper_command", "continues in its --out"))
    marker = tmp_path / "marker"
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent(f"""\
        vars: {{out: {tmp_path}/run}}
        steps:
          - name: keep
            command: keeper
            options: {{out: "${{out}}/study", fail-unless: {marker}}}
            outputs: ["${{out}}/study/done.txt"]
            untracked: [fail-unless]
        """))
    lines: list[str] = []
    try:
        run_pipeline(load_pipeline(path), echo=lines.append)
        raise AssertionError("the first attempt should fail")
    except StepFailed:
        pass
    marker.write_text("go")
    run_pipeline(load_pipeline(path), echo=lines.append)
    assert (tmp_path / "run/study/calls.txt").read_text().splitlines() == ["call", "call"]  # kept, then continued
    assert not any("clearing" in line for line in lines)
    assert _continues_itself(Step(name="s", base="s", command="study"))
    assert not _continues_itself(Step(name="p", base="p", command="pretrain"))
