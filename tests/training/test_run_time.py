"""The run's expected time, printed once after the first few optimizer steps (issue 12, point 7)."""

from __future__ import annotations

import pytest

from neuro_ssl.training.run_time import RunTimeEstimate, format_duration


class Clock:
    def __init__(self, step_s: float):
        self.now, self.step_s = 0.0, step_s

    def tick(self) -> None:
        self.now += self.step_s

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _not_quiet(monkeypatch):
    monkeypatch.delenv("NEURO_SSL_QUIET", raising=False)


def _run(total: int, step_s: float, device: str = "cpu", done: int = 0, first_step_s: float = 30.0) -> list[str]:
    said, clock = [], Clock(step_s)
    estimate = RunTimeEstimate(total, done, device, said.append, clock=clock)
    clock.now += first_step_s - step_s  # the first step pays for warm-up and is not timed
    for _ in range(total - done):
        clock.tick()
        estimate.step()
    return said


def test_a_long_cpu_run_is_announced_with_what_shortens_it():
    said = _run(total=6000, step_s=1.3)
    assert len(said) == 2
    # 30 s for the first step + 3 timed steps, then 5996 more at 1.3 s: 30 + 5999 * 1.3 = 7828.7 s
    assert said[0].startswith("about 2 h 10 min for this run (6000 optimizer steps at 1.3 s each")
    assert said[1].startswith("that is long for a CPU: a coarser --spacing") and "--arch resnet10" in said[1]


def test_a_gpu_or_a_short_run_gets_no_warning_and_a_tiny_run_no_estimate():
    assert len(_run(total=6000, step_s=1.3, device="cuda")) == 1
    assert _run(total=200, step_s=0.5)[0].startswith("about 2 min for this run (200 optimizer steps")
    assert _run(total=4, step_s=100.0) == []  # nothing left to estimate after the timed steps


def test_a_resumed_run_counts_only_what_is_left():
    said = _run(total=1000, step_s=2.0, done=900, first_step_s=2.0)
    assert said[0].startswith("about 3 min for this run (100 optimizer steps at 2 s each"), said


def test_quiet_means_quiet(monkeypatch):
    monkeypatch.setenv("NEURO_SSL_QUIET", "1")
    assert _run(total=6000, step_s=1.3) == []


@pytest.mark.parametrize(("seconds", "text"), [(42, "42 s"), (720, "12 min"), (7800, "2 h 10 min"),
                                                (7200, "2 h"), (3.2 * 86400, "3.2 days")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text
