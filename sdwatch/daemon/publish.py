"""The daemon's snapshot: built from the watches (sdwatch.snapshot), the one-line status, and
/run/sdwatch/status.json, rewritten at once when a health changed, within SNAPSHOT s of any other
change, and every REFRESH s while passing probes only pass again."""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Mapping

from sdwatch import resources
from sdwatch import state as state_file
from sdwatch.snapshot import DaemonSnapshot, SchedulerView, build_unit

if TYPE_CHECKING:
    from sdwatch.daemon.watch import Watch
    from sdwatch.schedule import Schedules
    from sdwatch.states import Health

log = logging.getLogger("sdwatch")
SNAPSHOT = 5.0  # seconds between status.json refreshes when no health changed
# seconds between refreshes while passing probes only pass again (their time, duration, count
# and metrics move, nothing else): the rewrite is most of an idle daemon's CPU beside the probes,
# and the live snapshot (API, `sdwatch status` through the socket) has them at once
REFRESH = 30.0


def health(watches: Mapping[str, Watch], now: float) -> dict[str, Health]:
    """Return each watched unit's health by policy's rule ("unknown" while unread)."""
    return {n: w.health(now) for n, w in watches.items()}


def status_line(watches: Mapping[str, Watch], now: float,
                verdicts: Mapping[str, Health] | None = None) -> str:
    """Return the one-line STATUS= for systemd: "3 units: 2 healthy, 1 failing (x: why)"."""
    verdicts = health(watches, now) if verdicts is None else verdicts
    bad = {n: h for n, h in verdicts.items() if not h.ok}
    line = f"{len(verdicts)} units: {len(verdicts) - len(bad)} healthy"
    if bad:
        first = next(iter(bad))
        why = watches[first].unreadable or watches[first].state.last_failure or bad[first].value
        line += f", {len(bad)} failing ({first.rsplit('.', 1)[0]}: {why})"
    return line


class Publisher:
    """Builds the snapshot and keeps status.json fresh."""

    def __init__(self) -> None:
        self.started_at = time.time()
        self.pid = os.getpid()
        self.pid_start = resources.process_start(self.pid)
        self.dirty = True  # something changed since the last write
        self.passed = False  # ... or a passing probe passed again since the last write
        self.health_changed = False
        self.written = -REFRESH  # when status.json was last written (time.time())

    def changed(self, health_changed: bool = False) -> None:
        """Note that the snapshot changed (at once worth writing if a health changed)."""
        self.dirty = True
        self.health_changed = self.health_changed or health_changed

    def passed_again(self) -> None:
        """Note that a passing probe passed again and nothing else changed."""
        self.passed = True

    def due(self, now: float) -> bool:
        """Whether status.json should be rewritten now: its JSON is most of an idle
        daemon's CPU beside the probes, so at once only when a health changed."""
        return self.health_changed or (self.dirty and now >= self.written + SNAPSHOT) or (
            self.passed and now >= self.written + REFRESH)

    def snapshot(self, watches: Mapping[str, Watch], schedules: Schedules,
                 config_files: tuple[str, ...]) -> DaemonSnapshot:
        """Return what the daemon knows now."""
        now = time.time()
        verdicts = health(watches, now)
        late = schedules.lateness()
        return DaemonSnapshot(
            pid=self.pid, pid_start=self.pid_start, started_at=self.started_at,
            updated_at=now, status=status_line(watches, now, verdicts),
            units=tuple(build_unit(n, verdicts[n], w.state, w.probes, w.limits, w.unreadable)
                        for n, w in watches.items()),
            config_files=tuple(config_files),
            scheduler=SchedulerView(int(late["runs"] or 0), late["late_p50_ms"],
                                    late["late_p99_ms"]))

    def write(self, path: str, snap: DaemonSnapshot) -> None:
        """Write ``snap`` to ``path`` atomically; log (not raise) a failure."""
        try:
            state_file.write_json_atomic(path, snap.to_json(), durable=False)
        except OSError as exc:
            log.error("cannot write %s: %s", path, exc)
            return
        self.dirty = self.passed = self.health_changed = False
        self.written = time.time()
