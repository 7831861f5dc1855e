"""Progress on stderr: a live tqdm bar in a terminal, a few plain lines everywhere else.

A tqdm bar redraws itself with carriage returns; in a log file, a CI job or ``2> run.log`` that
is thousands of partial lines on one physical line. When the stream is not a terminal,
:class:`LogLines` writes one complete line each time another ``every_pct`` percent is done or
``every_s`` seconds have passed (when the total is unknown: per ``every_s`` only), never more
often than every ``min_s`` seconds, and a last line at the end. ``NEURO_SSL_QUIET=1`` silences both.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable, Iterable, TextIO

EVERY_PCT = 10
EVERY_S = 60.0
MIN_S = 5.0


def progress(iterable: Iterable | None = None, *, total: int | None = None, desc: str | None = None,
             unit: str = "it", initial: int = 0, enabled: bool = True, file: TextIO | None = None,
             every_pct: float = EVERY_PCT, every_s: float = EVERY_S, min_s: float = MIN_S,
             clock: Callable[[], float] = time.monotonic, **tqdm_options: Any):
    """A progress object over ``iterable`` (or updated by hand): ``update(n)``, ``set_postfix(**values)``,
    ``close()``, iteration and ``with`` work the same whichever kind is returned."""
    file = sys.stderr if file is None else file
    enabled = enabled and os.environ.get("NEURO_SSL_QUIET") != "1"
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    if enabled and _is_terminal(file):
        from tqdm.auto import tqdm

        options = {"dynamic_ncols": True, "mininterval": 0.5, **tqdm_options}
        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, file=file, **options)
    return LogLines(iterable, total=total, desc=desc, unit=unit, initial=initial, file=file, enabled=enabled,
                    every_pct=every_pct, every_s=every_s, min_s=min_s, clock=clock)


def _is_terminal(file) -> bool:
    try:
        return bool(file.isatty())
    except (AttributeError, ValueError):  # closed or wrapped streams
        return False


class LogLines:
    """Progress as whole lines: ``desc: 30/100 step (30 %), 0:12 elapsed, ~0:28 left, loss=0.41``."""

    def __init__(self, iterable: Iterable | None = None, *, total: int | None = None, desc: str | None = None,
                 unit: str = "it", initial: int = 0, file: TextIO | None = None, enabled: bool = True,
                 every_pct: float = EVERY_PCT, every_s: float = EVERY_S, min_s: float = MIN_S,
                 clock: Callable[[], float] = time.monotonic):
        self.min_s = min_s
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.n = self.start_n = self.shown_n = int(initial)
        self.file, self.enabled, self.every_pct, self.every_s, self.clock = file, enabled, every_pct, every_s, clock
        self.postfix = ""
        self.started = self.last_line = clock()
        self.closed = False

    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> "LogLines":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return int(self.total or 0)

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **values: Any) -> None:
        values = {**dict(ordered_dict or {}), **values}
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc

    def update(self, n: int = 1) -> None:
        self.n += int(n)
        now = self.clock()
        if self.total and self.n >= self.total:
            self._line(now)  # the last line comes at once, not at close()
        elif now - self.last_line >= self.every_s or (
                now - self.last_line >= self.min_s and self._bucket(self.n) > self._bucket(self.shown_n)):
            self._line(now)

    def close(self) -> None:
        if not self.closed and self.n != self.shown_n:
            self._line(self.clock())
        self.closed = True

    def _bucket(self, n: int) -> int:
        if not self.total:
            return 0
        return int(100 * n / self.total // self.every_pct)

    def _line(self, now: float) -> None:
        self.shown_n, self.last_line = self.n, now
        if not self.enabled:
            return
        elapsed = now - self.started
        parts = [f"{self.n}/{self.total} {self.unit}" if self.total else f"{self.n} {self.unit}"]
        if self.total:
            parts[0] += f" ({100 * self.n / self.total:.0f} %)"
        parts.append(f"{_clock(elapsed)} elapsed")
        done = self.n - self.start_n
        if self.total and 0 < done and self.n < self.total:
            parts.append(f"~{_clock(elapsed / done * (self.total - self.n))} left")
        if self.postfix:
            parts.append(self.postfix)
        prefix = f"{self.desc}: " if self.desc else ""
        print(prefix + ", ".join(parts), file=self.file, flush=True)


def _clock(seconds: float) -> str:
    """``0:42``, ``12:05``, ``3:04:10``."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
