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
from sdwatch.serve.metrics import Facts, ProbeFigures, UnitFigures
from sdwatch.states import Health, judge_health
from sdwatch.unitinfo import brief_view

SAMPLE_TTL = 2.0  # seconds a cgroup sample is served again (a scrape and the page together)
_RUNNING = ("active", "reloading", "deactivating", "activating")


class Live:
    """Serves ``sup`` (a daemon.Supervisor): read-only except ``command``."""

    def __init__(self, sup: Any, socket_path: str) -> None:
        self.sup = sup
        self.socket_path = socket_path
        # unit -> (when, (its cgroup, its main pid), what was read): a restart reads again
        self.samples: dict[str, tuple[float, tuple[str, int], resources.UnitSample]] = {}
        self.usages: dict[str, tuple[float, tuple[str, int], resources.UnitUsage]] = {}
        self.system: tuple[float, resources.SystemSample] | None = None

    def snapshot(self) -> status.Snapshot:
        """The watched units as `sdwatch status` shows them, from the daemon's memory."""
        sup = self.sup
        now = time.monotonic()
        daemon = sup.snapshot()
        views = {u.name: u for u in daemon.units}
        units = []
        for name, w in self._watches():
            info = w.info
            if info is None:
                units.append(status.missing_unit(name, "not read from systemd yet", True))
                continue
            active, sub, _ = w.seen if w.seen[0] else (info.active_state, info.sub_state, 0)
            # no more than the command's own brief read shows (a unit read again in full
            # once active would show its unit-file state, another CPU base)
            info = brief_view(dataclasses.replace(info, active_state=active, sub_state=sub,
                                                  result=w.result, main_pid=w.main_pid))
            sample = self._sample(name, info.control_group, active, w.main_pid, now)
            units.append(status.with_daemon(status.unit_status(info, sample, sup.cfg),
                                            views.get(name)))
        self._forget_unwatched()
        if self.system is None or now - self.system[0] > SAMPLE_TTL:
            self.system = (now, resources.sample_system())
        return status.Snapshot(
            generated_at=time.time(), system=self.system[1], units=tuple(units),
            config_files=tuple(sup.cfg.files), selection="units watched by the daemon",
            daemon=status.DaemonInfo(True, self.socket_path, os.getpid(), daemon.status,
                                     daemon.updated_at))

    def unit_figures(self) -> tuple[UnitFigures, ...]:
        """What /metrics shows of each unit, read from the watches as ``snapshot`` reads them
        (the same samples, the same health rule) without building the status records."""
        now, wall = time.monotonic(), time.time()
        out = []
        for name, w in self._watches():
            info, state = w.info, w.state
            if info is None:  # as status.missing_unit shows it
                out.append(UnitFigures(name, "inactive", "", Health.MISSING, state.gave_up,
                                       state.unmonitored))
                continue
            active, sub, _ = w.seen if w.seen[0] else (info.active_state, info.sub_state, 0)
            use = self._usage(name, info.control_group, active, w.main_pid, now)
            health = status.merged_health(judge_health(active, sub, info.load_state),
                                          w.health(wall))
            out.append(UnitFigures(
                info.id, active, w.service_type, health, state.gave_up, state.unmonitored,
                state.total_restarts, info.n_restarts,
                use.memory if use else None, use.cpu_seconds if use else None,
                use.tasks if use else info.tasks_current, _probe_figures(w)))
        self._forget_unwatched()
        return tuple(out)

    def _watches(self) -> list[tuple[str, Any]]:
        """The watches in the configuration's order, the command's: a reload appends the
        units it changed at the end of the watches."""
        watches = self.sup.watches
        return [(name, watches[name]) for name in self.sup.cfg.units if name in watches]

    def _forget_unwatched(self) -> None:
        for kept in (self.samples, self.usages):
            for name in [n for n in kept if n not in self.sup.watches]:
                del kept[name]  # unwatched by a reload: memory stays flat

    def _sample(self, name: str, control_group: str, active: str, main_pid: int,
                now: float) -> resources.UnitSample | None:
        """A sample of the unit's cgroup at most SAMPLE_TTL old, None if it runs nothing."""
        return _kept_reading(self.samples, resources.sample_unit, name, control_group,
                             active, main_pid, now)

    def _usage(self, name: str, control_group: str, active: str, main_pid: int,
               now: float) -> resources.UnitUsage | None:
        """What /metrics shows of the cgroup: its usage, read at most every SAMPLE_TTL
        (cheaper than a sample).  Never status's sample: its tasks are the threads of the
        processes it read, the usage's the cgroup's pids.current, and a gauge must not flip
        between the two."""
        return _kept_reading(self.usages, resources.unit_usage, name, control_group, active,
                             main_pid, now)

    def metrics(self) -> tuple[tuple[UnitFigures, ...], Facts]:
        """What /metrics shows: each unit's figures, and the daemon's own counters."""
        return self.unit_figures(), self._own_facts()

    def _own_facts(self) -> Facts:
        sup = self.sup
        counts, lateness_sum = sup.schedules.histogram()
        return Facts(version=__version__, started_at=sup.publisher.started_at,
                     reload_ok=sup.reload_ok, reload_at=sup.reload_at,
                     lateness_buckets=counts, lateness_sum=lateness_sum)

    def config_identity(self) -> str | None:
        """The identity of the files the daemon's configuration was read from; None while
        a reload runs (the watches do not follow the files yet) or when no unit is configured."""
        cfg = self.sup.cfg
        return None if cfg.zero_config or self.sup.reload_running else cfg.identity

    def command(self, unit: str, command: str) -> Health | None:
        """Hand an administrator's command to the unit's policy; its health after it."""
        if unit not in self.sup.watches:
            return None
        return self.sup.command(unit, command)


def _probe_figures(w: Any) -> tuple[ProbeFigures, ...]:
    """A watch's probes as the daemon's snapshot shows them: the last run since sdwatch
    started, if any."""
    out = []
    for probe in w.cfg.probes:
        run = w.probes.get(probe.name)
        runs, failed = w.runs.get(probe.name, (0, 0))
        out.append(ProbeFigures(probe.name, probe.kind, run.ok if run else None,
                                run.duration if run else None, runs, failed))
    return tuple(out)


def _kept_reading(kept: dict, read: Any, name: str, control_group: str, active: str,
                  main_pid: int, now: float) -> Any:
    """``read(control_group, main_pid)``, served again from ``kept`` while at most
    SAMPLE_TTL old and of the same cgroup and main process; None if the unit runs nothing."""
    if not control_group or active not in _RUNNING:
        kept.pop(name, None)
        return None
    cached = kept.get(name)
    if cached and now - cached[0] < SAMPLE_TTL and cached[1] == (control_group, main_pid):
        return cached[2]
    reading = read(control_group, main_pid)
    kept[name] = (now, (control_group, main_pid), reading)
    return reading
