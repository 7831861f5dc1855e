"""The pipeline runner with fast fake steps: skip-if-current, invalidation, resume, dry run, errors."""

from __future__ import annotations

import json
import os
import textwrap
import time
from pathlib import Path

import pytest

from neuro_ssl.cli import main as cli_main
from neuro_ssl.errors import ConfigError
from neuro_ssl.pipeline import StepFailed, load_pipeline, run_pipeline
from neuro_ssl.pipeline.runner import build_argv, command_actions

HERE = Path(__file__).resolve().parent

CHAIN = """\
name: chain
vars:
  out: {out}
  source: {source}
  text: hello
  log: {log}
  marker: {marker}
steps:
  - name: a
    command: fake
    options: {{out: "${{out}}/a", inputs: "${{source}}", text: "${{text}}", log: "${{log}}"}}
    outputs: ["${{out}}/a/result.txt"]
    untracked: [log]
  - name: b
    command: fake
    options: {{out: "${{out}}/b", inputs: "${{out}}/a/result.txt", text: B, log: "${{log}}", fail-unless: "${{marker}}"}}
    outputs: ["${{out}}/b/result.txt"]
    untracked: [log, fail-unless]
  - name: c
    command: fake
    options: {{out: "${{out}}/c", inputs: ["${{out}}/b/result.txt"], text: C, log: "${{log}}"}}
    outputs: ["${{out}}/c/result.txt"]
    untracked: [log]
"""


@pytest.fixture()
def fake_command(monkeypatch):
    """Register ``neuro-ssl fake`` (tests/e2e/_fake_pipeline_command.py) for this test."""
    monkeypatch.syspath_prepend(str(HERE))
    monkeypatch.setitem(cli_main.COMMANDS, "fake", ("_fake_pipeline_command", "fake step for runner tests"))


@pytest.fixture()
def chain(tmp_path, fake_command):
    source = tmp_path / "source.txt"
    source.write_text("S")
    marker = tmp_path / "marker"
    marker.write_text("present")
    path = tmp_path / "chain.yaml"
    path.write_text(CHAIN.format(out=tmp_path / "out", source=source, log=tmp_path / "log.txt", marker=marker))
    return path


def _log(tmp_path: Path) -> list[str]:
    log = tmp_path / "log.txt"
    return log.read_text().splitlines() if log.exists() else []


def _run(path, lines=None, **kwargs):
    pipeline = load_pipeline(path, overrides=kwargs.pop("overrides", None))
    sink = lines if lines is not None else []
    return run_pipeline(pipeline, echo=sink.append, **kwargs)


def test_first_run_runs_all_then_everything_is_current(chain, tmp_path):
    lines: list[str] = []
    report = _run(chain, lines)
    assert [s.status for s in report.steps] == ["ran"] * 3
    assert (tmp_path / "out/c/result.txt").read_text() == "C|B|hello|S"
    assert any("[1/3] a: running (never run)" in line for line in lines)
    assert any(line.startswith("[3/3] c: done in ") and line.endswith("s") for line in lines)
    stamp = json.loads((tmp_path / "out/.neuro-ssl-pipeline/b.json").read_text())
    assert stamp["status"] == "done" and stamp["deps"] == {"a": json.loads(
        (tmp_path / "out/.neuro-ssl-pipeline/a.json").read_text())["run_id"]}
    lines.clear()
    report = _run(chain, lines)
    assert [s.status for s in report.steps] == ["current"] * 3
    assert lines[:3] == ["[1/3] a: skipped (current)", "[2/3] b: skipped (current)", "[3/3] c: skipped (current)"]
    assert len(_log(tmp_path)) == 3


def test_changed_option_reruns_that_step_and_downstream_only(chain, tmp_path):
    _run(chain)
    report = _run(chain, overrides={"text": "bye"})
    assert [s.status for s in report.steps] == ["ran", "ran", "ran"]
    assert report.steps[0].reason == "options changed"
    assert report.steps[1].reason == "upstream step 'a' reran"
    assert (tmp_path / "out/c/result.txt").read_text() == "C|B|bye|S"
    # back to the first text: options changed again for a, so everything reruns once more
    assert [s.status for s in _run(chain).steps] == ["ran"] * 3
    assert [s.status for s in _run(chain).steps] == ["current"] * 3


def test_changed_input_file_reruns_from_the_step_that_reads_it(chain, tmp_path):
    _run(chain)
    source = tmp_path / "source.txt"
    source.write_text("S2-longer")
    report = _run(chain)
    assert report.steps[0].reason == f"input changed: {source}"
    assert [s.status for s in report.steps] == ["ran"] * 3
    assert (tmp_path / "out/c/result.txt").read_text().endswith("S2-longer")


def test_same_size_edit_is_seen_through_mtime(chain, tmp_path):
    _run(chain)
    produced = tmp_path / "out/b/result.txt"
    stat = produced.stat()
    produced.write_text("X" * stat.st_size)  # same size, hand-edited
    os.utime(produced, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    report = _run(chain)
    assert [s.status for s in report.steps] == ["current", "current", "ran"]
    assert report.steps[2].reason == f"input changed: {produced}"


def test_missing_output_reruns_only_that_step_and_downstream(chain, tmp_path):
    _run(chain)
    (tmp_path / "out/b/result.txt").unlink()
    report = _run(chain)
    assert [s.status for s in report.steps] == ["current", "ran", "ran"]
    assert report.steps[1].reason.startswith("output missing: ")


def test_failure_stops_the_pipeline_and_rerun_resumes_with_checkpoint(chain, tmp_path):
    (tmp_path / "marker").unlink()
    with pytest.raises(StepFailed, match=r"step 'b' failed .*simulated failure half-way.*rerun to resume"):
        _run(chain)
    stamp = json.loads((tmp_path / "out/.neuro-ssl-pipeline/b.json").read_text())
    assert stamp["status"] == "failed"
    assert not (tmp_path / "out/c").exists()
    assert (tmp_path / "out/b/checkpoint.pt").exists()
    (tmp_path / "marker").write_text("fixed")
    lines: list[str] = []
    report = _run(chain, lines)
    assert [s.status for s in report.steps] == ["current", "ran", "ran"]
    assert report.steps[1].reason == "last attempt failed"
    assert any("resuming from its checkpoint" in line and "--resume" in line for line in lines)
    assert _log(tmp_path) == ["a resume=False tags=", "b resume=False tags=", "b resume=True tags=", "c resume=False tags="]


def test_no_resume_when_the_options_changed_since_the_failure(chain, tmp_path):
    (tmp_path / "marker").unlink()
    with pytest.raises(StepFailed):
        _run(chain)
    (tmp_path / "marker").write_text("fixed")
    _run(chain, overrides={"text": "other"})
    assert "b resume=False tags=" in _log(tmp_path)[-2]


def test_killed_run_left_running_stamp_and_resumes(chain, tmp_path):
    """A kill -9 leaves the stamp at 'running': the next run treats it like a failure."""
    (tmp_path / "marker").unlink()
    with pytest.raises(StepFailed):
        _run(chain)
    stamp_file = tmp_path / "out/.neuro-ssl-pipeline/b.json"
    stamp = json.loads(stamp_file.read_text())
    stamp["status"] = "running"
    stamp_file.write_text(json.dumps(stamp))
    (tmp_path / "marker").write_text("fixed")
    report = _run(chain)
    assert report.steps[1].reason == "last attempt running"
    assert _log(tmp_path)[-2] == "b resume=True tags="


def test_rerun_clears_the_folder_its_own_earlier_run_wrote_and_nothing_else(chain, tmp_path):
    _run(chain)
    (tmp_path / "out/b/stale.txt").write_text("from the old run")
    _run(chain, overrides={"text": "new"})  # b reruns: its old folder is emptied first
    assert not (tmp_path / "out/b/stale.txt").exists()
    assert (tmp_path / "out/b/result.txt").read_text() == "B|new|S"
    # a folder no stamp accounts for is the user's: left alone, and the command refuses it
    (tmp_path / "out/.neuro-ssl-pipeline/c.json").unlink()
    (tmp_path / "out/c/mine.txt").write_text("keep me")
    with pytest.raises(StepFailed, match="run folder is not empty"):
        _run(chain)
    assert (tmp_path / "out/c/mine.txt").read_text() == "keep me"


def test_dry_run_runs_nothing_and_explains(chain, tmp_path):
    lines: list[str] = []
    report = _run(chain, lines, dry_run=True)
    assert [s.status for s in report.steps] == ["would run"] * 3
    assert not (tmp_path / "out/a").exists() and not _log(tmp_path)
    assert any(f"neuro-ssl fake --out {tmp_path}/out/a" in line for line in lines)
    _run(chain)
    (tmp_path / "source.txt").write_text("changed!")
    lines.clear()
    report = _run(chain, lines, dry_run=True)
    assert [s.status for s in report.steps] == ["would run"] * 3
    assert report.steps[1].reason == "upstream step 'a' would rerun"
    assert len(_log(tmp_path)) == 3
    assert lines[-1].startswith("pipeline 'chain': 3 step(s) would run, 0 current")


def test_from_and_only_force_the_selected_steps(chain, tmp_path):
    _run(chain)
    report = _run(chain, from_step="b")
    assert [s.status for s in report.steps] == ["not selected", "ran", "ran"]
    report = _run(chain, only="a")
    assert [s.status for s in report.steps] == ["ran", "not selected", "not selected"]
    # a reran, so b and c are stale now
    assert [s.status for s in _run(chain).steps] == ["current", "ran", "ran"]
    report = _run(chain, force=True)
    assert [s.status for s in report.steps] == ["ran"] * 3


def test_foreach_expands_and_null_options_are_left_out(tmp_path, fake_command):
    path = tmp_path / "foreach.yaml"
    path.write_text(textwrap.dedent(f"""\
        vars: {{out: {tmp_path}/out, log: {tmp_path}/log.txt, budgets: [5, 10]}}
        steps:
          - name: grid
            command: fake
            foreach: {{budget: "${{budgets}}", mode: [linear, full]}}
            options: {{out: "${{out}}/g_${{mode}}_${{budget}}", text: "${{budget}}", log: "${{log}}"}}
            outputs: ["${{out}}/g_${{mode}}_${{budget}}/result.txt"]
            untracked: [log]
          - name: pick
            command: fake
            foreach:
              - {{name: [five, six], tags: [[x, y]], text: "${{name}}-${{out}}"}}
              - {{name: all, tags: null, text: all}}
            options: {{out: "${{out}}/p_${{name}}", log: "${{log}}", tags: "${{tags}}", text: "${{text}}"}}
            outputs: ["${{out}}/p_${{name}}/result.txt"]
            untracked: [log]
        """))
    pipeline = load_pipeline(path, overrides={"budgets": [5, 10, 25]})
    names = [s.name for s in pipeline.steps]
    assert names[:2] == ["grid[5,linear]", "grid[5,full]"] and len(names) == 9
    pick = [s for s in pipeline.steps if s.base == "pick"]
    assert [s.name for s in pick] == ["pick[five]", "pick[six]", "pick[all]"]
    assert pick[1].options["text"] == f"six-{tmp_path}/out"
    actions = command_actions("fake", [])
    assert build_argv(pick[0], actions)[-5:-2] == ["--tags", "x", "y"]
    assert "--tags" not in build_argv(pick[2], actions)
    run_pipeline(pipeline, echo=lambda _: None)
    assert (tmp_path / "out/g_full_25/result.txt").read_text() == "25"
    assert "p_five resume=False tags=x,y" in _log(tmp_path)
    report = run_pipeline(load_pipeline(path, overrides={"budgets": [5, 10, 25]}), only="grid", echo=lambda _: None)
    assert [s.status for s in report.steps].count("ran") == 6


def test_stdout_is_captured_into_a_file(tmp_path, fake_command):
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent(f"""\
        vars: {{out: {tmp_path}/out}}
        steps:
          - name: talk
            command: fake
            options: {{out: "${{out}}/t", log: {tmp_path}/log.txt}}
            stdout: "${{out}}/talk.txt"
        """))
    run_pipeline(load_pipeline(path), echo=lambda _: None)
    assert (tmp_path / "out/talk.txt").read_text() == f"wrote {tmp_path}/out/t/result.txt\n"


def test_torchrun_launcher_command_line(tmp_path, fake_command):
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent(f"""\
        vars: {{out: {tmp_path}/out, gpus: 4}}
        steps:
          - name: pretrain
            command: fake
            launcher: torchrun
            nproc: "${{gpus}}"
            options: {{out: "${{out}}/p", log: {tmp_path}/log.txt}}
            outputs: ["${{out}}/p/result.txt"]
        """))
    lines: list[str] = []
    run_pipeline(load_pipeline(path, overrides={"gpus": 2}), dry_run=True, echo=lines.append)
    assert f"torchrun --standalone --nproc_per_node 2 -m neuro_ssl fake --out {tmp_path}/out/p" in lines[0]


# ----- YAML mistakes: one line, naming the file and the step -----

GOOD_STEP = "  - name: a\n    command: fake\n    options: {out: X, log: L}\n    outputs: [X/result.txt]\n"


@pytest.mark.parametrize("text, message", [
    ("steps:\n  - name: a\n    command: fake\n    optoins: {out: X}\n    outputs: [X]\n",
     "step 'a': unknown key 'optoins' (did you mean 'options'?)"),
    ("steps:\n  - name: a\n    command: pretrian\n    outputs: [X]\n",
     "step 'a': unknown command 'pretrian'"),
    ("steps:\n  - name: a\n    command: fake\n    options: {out: X, log: L, seeed: 1}\n    outputs: [X]\n",
     "step 'a': neuro-ssl fake has no option --seeed"),
    ("steps:\n  - name: a\n    command: fake\n    options: {out: '${outt}', log: L}\n    outputs: [X]\n",
     "step 'a': undefined variable '${outt}'"),
    ("vars: {out: X}\nsteps:\n  - name: a\n    command: fake\n    options: {out: X, log: L}\n",
     "step 'a': declare 'outputs:'"),
    ("stepz: []\n", "unknown top-level key 'stepz' (did you mean 'steps'?)"),
    ("steps: [\n", "not valid YAML"),
    ("steps:\n" + GOOD_STEP + GOOD_STEP, "step 'a' is defined twice"),
    ("steps:\n  - name: a\n    command: fake\n    launcher: mpirun\n    options: {out: X, log: L}\n    outputs: [X]\n",
     "step 'a': unknown launcher 'mpirun'"),
    ("steps:\n  - name: b\n    command: fake\n    needs: [a]\n    options: {out: X, log: L}\n    outputs: [X]\n",
     "step 'b': needs unknown or later step 'a'"),
])
def test_yaml_mistakes_are_one_line_errors(tmp_path, fake_command, capsys, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    code = cli_main.main(["run", str(path)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0, err
    assert err.startswith(f"neuro-ssl run: error: {path}")
    assert message in err


def test_unknown_set_var_preset_and_step_names(chain, capsys):
    assert cli_main.main(["run", str(chain), "--set", "txet=1"]) == 2
    assert "--set names unknown var 'txet' (did you mean 'text'?)" in capsys.readouterr().err
    assert cli_main.main(["run", str(chain), "--preset", "huge"]) == 2
    assert "unknown preset 'huge'" in capsys.readouterr().err
    assert cli_main.main(["run", str(chain), "--from", "bb"]) == 2
    assert "--from names unknown step 'bb' (did you mean 'b'?)" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="--set 'oops': expected NAME=VALUE"):
        from neuro_ssl.pipeline import parse_set
        parse_set(["oops"])


def test_cli_failure_exit_code_and_message(chain, tmp_path, capsys):
    (tmp_path / "marker").unlink()
    code = cli_main.main(["run", str(chain)])
    captured = capsys.readouterr()
    assert code == 1
    last = captured.err.strip().splitlines()[-1]
    assert last.startswith("neuro-ssl run: error: ") and "step 'b' failed" in last
    assert "[1/3] a: done in" in captured.out


def test_vars_may_use_vars_and_cycles_are_reported(tmp_path, fake_command):
    path = tmp_path / "v.yaml"
    path.write_text("vars: {root: R, out: '${root}/x', n: '${m}', m: '${n}'}\nsteps:\n" + GOOD_STEP)
    with pytest.raises(ConfigError, match="cycle: n -> m -> n"):
        load_pipeline(path)
    path.write_text("vars: {root: R, out: '${root}/x'}\nsteps:\n" + GOOD_STEP)
    assert load_pipeline(path, overrides={"root": "Q"}).vars["out"] == "Q/x"


def test_stamps_are_written_atomically_and_timed(chain, tmp_path):
    before = time.time()
    _run(chain)
    state = tmp_path / "out/.neuro-ssl-pipeline"
    assert sorted(p.name for p in state.iterdir()) == ["a.json", "b.json", "c.json"]
    stamp = json.loads((state / "c.json").read_text())
    assert stamp["seconds"] >= 0 and stamp["argv"][:2] == ["--out", f"{tmp_path}/out/c"]
    assert (state / "c.json").stat().st_mtime >= before - 1


def test_when_false_disables_a_step_and_allow_failure_accepts_an_exit_code(tmp_path, fake_command):
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent(f"""\
        vars: {{out: {tmp_path}/out, use_a: true, lenient: false}}
        steps:
          - name: a
            command: fake
            when: "${{use_a}}"
            options: {{out: "${{out}}/a", log: {tmp_path}/log.txt}}
            outputs: ["${{out}}/a/result.txt"]
          - name: b
            command: fake
            allow_failure: "${{lenient}}"
            options: {{out: "${{out}}/b", log: {tmp_path}/log.txt, fail-unless: {tmp_path}/never}}
            untracked: [log]
            stdout: "${{out}}/b.txt"
        """))
    lines: list[str] = []
    with pytest.raises(StepFailed):
        run_pipeline(load_pipeline(path, overrides={"use_a": False}), echo=lines.append)
    assert lines[0] == "[1/2] a: skipped (disabled)" and not (tmp_path / "out/a").exists()
    lines.clear()
    report = run_pipeline(load_pipeline(path, overrides={"use_a": False, "lenient": True}), echo=lines.append)
    assert [s.status for s in report.steps] == ["disabled", "ran"]
    assert any("exit code 1" in line and "allowed by allow_failure" in line for line in lines), lines
    assert json.loads((tmp_path / "out/.neuro-ssl-pipeline/b.json").read_text())["status"] == "done"
    path.write_text(path.read_text().replace('when: "${use_a}"', "when: maybe"))
    with pytest.raises(ConfigError, match="step 'a': 'when:' must be true or false"):
        load_pipeline(path)
