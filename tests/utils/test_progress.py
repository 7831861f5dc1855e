"""Progress in a log is a few whole lines, not a flood of carriage returns (issue 12, point 8)."""

from __future__ import annotations

import io

import pytest

from neuro_ssl._utils.progress import LogLines, progress


class Clock:
    def __init__(self, step: float):
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _not_quiet(monkeypatch):
    monkeypatch.delenv("NEURO_SSL_QUIET", raising=False)


def test_a_log_gets_one_line_per_ten_percent():
    log = io.StringIO()
    bar = progress(total=200, desc="epoch 1/3", unit="step", file=log, clock=Clock(1.0))
    for _ in range(200):
        bar.update(1)
        bar.set_postfix(loss="0.5")
    bar.close()
    text = log.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 10, lines
    assert lines[0].startswith("epoch 1/3: 20/200 step (10 %), ") and lines[0].endswith("loss=0.5")
    assert lines[-1].startswith("epoch 1/3: 200/200 step (100 %), 3:") and "left" not in lines[-1]


def test_fast_steps_are_not_logged_more_often_than_every_few_seconds():
    log = io.StringIO()
    for _ in progress(range(1000), desc="scans", file=log, clock=Clock(0.001)):
        pass
    assert log.getvalue().splitlines() == ["scans: 1000/1000 it (100 %), 0:01 elapsed"]


def test_without_a_total_a_line_per_minute():
    log = io.StringIO()
    bar = progress(desc="reading", unit="image", file=log, clock=Clock(30.0))
    for _ in range(6):
        bar.update(1)
    bar.close()
    lines = log.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == ["reading: 2 image", "reading: 4 image", "reading: 6 image"]


def test_a_terminal_gets_a_live_bar_and_quiet_means_quiet(monkeypatch):
    from tqdm.auto import tqdm

    bar = progress(range(3), desc="x", file=Terminal())
    assert isinstance(bar, tqdm)
    bar.close()
    monkeypatch.setenv("NEURO_SSL_QUIET", "1")
    log = io.StringIO()
    assert list(progress(range(5), desc="x", file=log)) == list(range(5))
    assert log.getvalue() == "" and isinstance(progress(file=log), LogLines)


def test_the_training_and_inference_bars_use_it(capsys):
    import os

    from neuro_ssl.evaluation.inference import _progress
    from neuro_ssl.training.loop import progress_bar

    os.environ.pop("NEURO_SSL_QUIET", None)
    for bar in (progress_bar(4, "epoch 1/1"), _progress(4, "evaluate")):
        for _ in range(4):
            bar.update(1)
        bar.close()
    err = capsys.readouterr().err  # pytest's capture is not a terminal
    assert err.splitlines()[0].startswith("epoch 1/1: 4/4 step (100 %)")
    assert err.splitlines()[1].startswith("evaluate: 4/4 scan (100 %)") and "\r" not in err
