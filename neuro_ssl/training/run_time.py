"""How long will this run take? One line after the first few optimizer steps.

The defaults (resnet18, 96x112x96 voxels at 2 mm, 100 epochs) take days on a CPU, and nothing
said so until the user had waited an hour. :class:`RunTimeEstimate` times a few optimizer steps
after the first (which pays for warm-up: allocator, DataLoader start, first cache reads), then
prints the expected total once, and says plainly when a CPU run would exceed an hour, with the
options that shrink it. Validation, online probes and checkpoints come on top of the estimate.
"""

from __future__ import annotations

import os
import time
from typing import Callable

#: optimizer steps timed after the first one before the estimate is printed
TIMED_STEPS = 3
LONG_ON_CPU_S = 3600.0
SHRINK_HINT = ("a coarser --spacing (e.g. 3), a smaller --shape (e.g. 64,80,64), --arch resnet10 --width 0.5, "
               "fewer --epochs, or a GPU (--device cuda)")


class RunTimeEstimate:
    """Call :meth:`step` after every optimizer step; it prints (through ``say``) once.

    ``total_steps``: optimizer steps of the whole run; ``done_steps``: those already done before
    this process started (a resumed run). ``device_type``: ``"cpu"`` turns on the long-run warning.
    """

    def __init__(self, total_steps: int, done_steps: int, device_type: str, say: Callable[[str], None],
                 extra: str = "checkpoints", timed_steps: int = TIMED_STEPS,
                 clock: Callable[[], float] = time.perf_counter):
        self.total, self.done, self.device_type, self.say = int(total_steps), int(done_steps), device_type, say
        self.extra, self.timed_steps, self.clock = extra, int(timed_steps), clock
        self.started = clock()
        self.steps_here = 0
        self.timer_start: float | None = None
        self.finished = os.environ.get("NEURO_SSL_QUIET") == "1" or self.total - self.done <= self.timed_steps + 1

    def step(self) -> None:
        if self.finished:
            return
        self.steps_here += 1
        now = self.clock()
        if self.steps_here == 1:
            self.timer_start = now
            return
        timed = self.steps_here - 1
        if timed < self.timed_steps:
            return
        self.finished = True
        per_step = (now - self.timer_start) / timed
        remaining = (self.total - self.done - self.steps_here) * per_step
        total = (now - self.started) + remaining
        self.say(f"about {format_duration(total)} for this run ({self.total - self.done} optimizer steps at "
                 f"{per_step:.2g} s each, timed over steps 2-{self.steps_here}; {self.extra} come on top)")
        if self.device_type == "cpu" and total > LONG_ON_CPU_S:
            self.say(f"that is long for a CPU: {SHRINK_HINT} cut it many times")


def format_duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``2 h 10 min``, ``3.2 days``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        hours, minutes = divmod(round(seconds / 60), 60)
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{seconds / 86400:.1f} days"
