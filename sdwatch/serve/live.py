"""The running daemon as the API's source: its snapshot, counters and commands, live.

The snapshot is the one ``sdwatch status --json`` prints, made by status.py's own functions
from what the daemon already holds: systemd's last word on each unit, the daemon's typed
snapshot (policy's verdicts, the last probe runs) and a cgroup sample at most ``SAMPLE_TTL``
seconds old.  No D-Bus call.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

from sdwatch import __version__, resources, status
from sdwatch.serve.metrics import Facts, ProbeCounts
from sdwatch.states import Health

SAMPLE_TTL = 2.0  # seconds a cgroup sample is served again (a scrape and the page together)


class Live:
    """Serves ``sup`` (a daemon.Supervisor): read-only except ``command``."""

    def __init__(self, sup: Any, socket_path: str) -> None:
        self.sup = sup
        self.socket_path = socket_path
        self.samples: dict[str, tuple[float, str, resources.UnitSample]] = {}
        self.system: tuple[float, resources.SystemSample] | None = None

    def snapshot(self) -> status.Snapshot:
        """The watched units as `sdwatch status` shows them, from the daemon's memory."""
        sup = self.sup
        now = time.monotonic()
        daemon = sup.snapshot()
        units = []
        for name, w in sup.watches.items():
            info = w.info
            if info is None:
                units.append(status.missing_unit(name, "not read from systemd yet", True))
                continue
            active, sub, _ = w.seen if w.seen[0] else (info.active_state, info.sub_state, 0)
            info = dataclasses.replace(info, active_state=active, sub_state=sub,
                                       result=w.result, main_pid=w.main_pid)
            sample = self._sample(name, info, now)
            units.append(status.with_daemon(status.unit_status(info, sample, sup.cfg),
                                            daemon.unit(name)))
        for name in [n for n in self.samples if n not in sup.watches]:
            del self.samples[name]  # unwatched by a reload: memory stays flat
        if self.system is None or now - self.system[0] > SAMPLE_TTL:
            self.system = (now, resources.sample_system())
        return status.Snapshot(
            generated_at=time.time(), system=self.system[1], units=tuple(units),
            config_files=tuple(sup.cfg.files), selection="units watched by the daemon",
            daemon=status.DaemonInfo(True, self.socket_path, os.getpid(), daemon.status,
                                     daemon.updated_at))

    def _sample(self, name: str, info: Any, now: float) -> resources.UnitSample | None:
        if not info.control_group or info.active_state not in ("active", "reloading",
                                                               "deactivating", "activating"):
            self.samples.pop(name, None)
            return None
        cached = self.samples.get(name)
        if cached and now - cached[0] < SAMPLE_TTL and cached[1] == info.control_group:
            return cached[2]
        sample = resources.sample_unit(info.control_group, info.main_pid)
        self.samples[name] = (now, info.control_group, sample)
        return sample

    def facts(self) -> Facts:
        """The daemon's counters for /metrics."""
        sup = self.sup
        counts, lateness_sum = sup.schedules.histogram()
        return Facts(
            version=__version__, started_at=sup.publisher.started_at, reload_ok=sup.reload_ok,
            reload_at=sup.reload_at,
            probes={(n, p): ProbeCounts(*c) for n, w in sup.watches.items()
                    for p, c in w.runs.items()},
            gave_up={n: w.state.gave_up for n, w in sup.watches.items()},
            unmonitored={n: w.state.unmonitored for n, w in sup.watches.items()},
            lateness_buckets=counts, lateness_sum=lateness_sum)

    def config_identity(self) -> str | None:
        """The identity of the files the daemon's configuration was read from."""
        cfg = self.sup.cfg
        return None if cfg.zero_config else cfg.identity

    def command(self, unit: str, command: str) -> Health | None:
        """Hand an administrator's command to the unit's policy; its health after it."""
        if unit not in self.sup.watches:
            return None
        return self.sup.command(unit, command)
