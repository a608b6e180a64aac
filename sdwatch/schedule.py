"""Fixed-rate schedules for the daemon's checks, with the bookkeeping the watchdog needs.

Each job runs every ``interval`` seconds without drift (the next run is due ``interval``
after the previous one was due, not after it ended), starts at a random offset so that
many jobs of the same interval spread out, and after an overrun runs once at once rather
than bunching the missed runs (a hung service is seen again without waiting a whole slot).
``overdue()`` names jobs that stopped keeping their schedule; ``lateness()`` sums up how
late runs started.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import random
from typing import Awaitable, Callable

KEEP = 5000  # recent lateness samples kept
SLOT = 0.5  # seconds: first runs start on this grid (or the interval's, if shorter)
# upper bounds (seconds) of the lateness histogram served as a Prometheus metric
LATENESS_BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Schedules:
    """Runs jobs at fixed rates and records whether they keep their schedule."""

    def __init__(self) -> None:
        self.due: dict[str, float] = {}  # job -> loop time by which it must have run again
        self.late: list[float] = []  # recent start lateness, seconds
        self.runs = 0
        self.late_counts = [0] * (len(LATENESS_BOUNDS) + 1)  # per bound, then above them all
        self.late_sum = 0.0
        self._waiting: dict[float, list[asyncio.Future[None]]] = {}  # due time -> its jobs

    async def every(self, key: str, interval: float, slack: float,
                    job: Callable[[], Awaitable[None]]) -> None:
        """Run ``job`` every ``interval`` seconds until cancelled.

        A run may take up to ``slack`` seconds (a probe's timeout) before the job counts
        as overdue.
        """
        loop = asyncio.get_running_loop()
        # a random first run spreads jobs over their interval, on a grid of SLOT seconds so
        # that jobs due together wake the loop once: a wake-up costs more than a probe, and
        # replies to probes sent together are mostly read in one wake-up too
        slot = min(SLOT, interval)
        at = math.ceil((loop.time() + random.uniform(0, min(interval, 1.0))) / slot) * slot
        try:
            while True:
                self.due[key] = at + interval + slack
                await self.until(at, loop)
                self._record(loop.time() - at)
                await job()
                at += interval
                if at < loop.time():
                    # overran (a probe that waited out its timeout): run again at once, once,
                    # rather than bunching the missed runs or waiting for the next slot
                    at = loop.time()
        finally:
            self.due.pop(key, None)

    async def until(self, at: float, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Sleep until loop time ``at``.  Jobs due at the same time (the grid makes most of
        them so) share one timer: a timer of its own per job costs more than its probe."""
        loop = loop or asyncio.get_running_loop()
        if at <= loop.time():
            await asyncio.sleep(0)
            return
        waiter = loop.create_future()
        waiting = self._waiting.get(at)
        if waiting is None:
            waiting = self._waiting[at] = []
            loop.call_at(at, self._wake, at)
        waiting.append(waiter)
        await waiter

    def _wake(self, at: float) -> None:
        for waiter in self._waiting.pop(at, ()):
            if not waiter.done():  # (cancelled: its job was removed)
                waiter.set_result(None)

    def _record(self, seconds: float) -> None:
        self.runs += 1
        self.late_counts[bisect.bisect_left(LATENESS_BOUNDS, seconds)] += 1
        self.late_sum += seconds
        self.late.append(seconds)
        if len(self.late) > 2 * KEEP:
            del self.late[:KEEP]

    def overdue(self, now: float, grace: float) -> list[str]:
        """Jobs that should have run again more than ``grace`` seconds before ``now``."""
        return [k for k, t in self.due.items() if now > t + grace]

    def histogram(self) -> tuple[tuple[int, ...], float]:
        """Cumulative run counts per LATENESS_BOUNDS and +Inf, and the sum of lateness."""
        total, out = 0, []
        for count in self.late_counts:
            total += count
            out.append(total)
        return tuple(out), self.late_sum

    def lateness(self) -> dict[str, float | int | None]:
        """Runs so far and the median and 99th percentile of recent start lateness, in ms."""
        late = sorted(self.late[-KEEP:])

        def pick(q: float) -> float | None:
            return round(1000 * late[min(len(late) - 1, int(len(late) * q))], 3) if late else None

        return {"runs": self.runs, "late_p50_ms": pick(0.5), "late_p99_ms": pick(0.99)}
