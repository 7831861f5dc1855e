"""``--classes`` names two or more classes in every command that takes it: a single class is no
classification (a fresh-clone user's ``study --classes AD`` ran a whole study of 'n/a' AUCs and
exited 0). Refused as usage (exit 2) before any file is read or written."""

from __future__ import annotations

import pytest

from neuro_ssl.cli.main import main

ARGV = {
    "study": ["study", "--manifest", "m.csv", "--out", "out"],
    "finetune": ["finetune", "--manifest", "m.csv", "--out", "out", "--mode", "scratch"],
    "audit": ["audit", "m.csv", "--out", "out", "--label", "diagnosis"],
    "evaluate-retrieval": ["evaluate-retrieval", "--run", "r", "--manifest", "m.csv", "--out", "out"],
}


@pytest.mark.parametrize("command", sorted(ARGV))
@pytest.mark.parametrize("value", ["AD", "AD,", " , "])
def test_one_class_is_a_usage_error(command, value, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main([*ARGV[command], "--classes", value]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "needs two or more classes" in last and last.startswith(f"neuro-ssl {command}: error:")
    assert not (tmp_path / "out").exists()


def test_two_classes_pass_the_option(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main([*ARGV["finetune"], "--classes", "CN,AD"]) == 1  # then the missing manifest: data
    assert "needs two or more classes" not in capsys.readouterr().err
