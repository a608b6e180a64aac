"""Per-unit watching: systemd's state from signals, and each unit's probe and limit schedules.

Every observation is handed to the ``observe`` callback (the Supervisor's), which runs policy.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from sdwatch import policy, resources
from sdwatch.link import Link
from sdwatch.snapshot import Failure, LimitRun, ProbeRun
from sdwatch.states import RESOURCES
from sdwatch.systemd import Change, SystemdUnavailable, UnitError, UnitInfo

if TYPE_CHECKING:
    from sdwatch.config import ProbeConfig, UnitConfig
    from sdwatch.schedule import Schedules

log = logging.getLogger("sdwatch")
Observe = Callable[[str, policy.Observation], None]
Spawn = Callable[..., asyncio.Task]  # (coroutine, task name) -> the running task


@dataclass
class Watch:
    """The daemon's view of one unit: its config, policy state, and what it last saw."""

    cfg: UnitConfig
    state: policy.UnitState
    result: str = ""  # last Result seen (arrives on the Service interface's signal)
    main_pid: int = 0
    seen: tuple[str, str, int] = ("", "", 0)  # last (active, sub, main pid) handed to policy
    control_group: str = ""
    probes: dict[str, ProbeRun] = field(default_factory=dict)  # last run per probe
    limits: dict[str, LimitRun] = field(default_factory=dict)  # last reading per resource
    last_sample: resources.UnitSample | None = None
    info: UnitInfo | None = None  # systemd's last full answer about the unit
    runs: dict[str, tuple[int, int]] = field(default_factory=dict)  # probe -> (runs, failed)
    tasks: list[asyncio.Task] = field(default_factory=list)


class Watcher:
    """The watched units, their systemd connection (``bus``) and their schedules."""

    def __init__(self, observe: Observe, spawn: Spawn, schedules: Schedules) -> None:
        self.watches: dict[str, Watch] = {}
        self.bus = Link(self._on_change, self.resync)
        self.schedules = schedules
        self.system = resources.sample_system()  # RAM and cores for relative limits
        self._observe = observe
        self._spawn = spawn

    async def add(self, unit: UnitConfig, interval: float, saved: object = None) -> None:
        """Start watching a unit: subscribe, read its state, start its schedules (limits
        every ``interval`` seconds).  ``saved``: its policy.to_persistent data, if any."""
        since = time.time()
        try:
            info = await self.bus.call(lambda sd: sd.unit_info(unit.name))
            if info.active_state == "active" and info.active_enter_timestamp:
                # running for a while already: its startup grace is over or partly so
                since = min(since, info.active_enter_timestamp / 1e6)
        except (TimeoutError, UnitError, SystemdUnavailable) as exc:
            log.warning("%s: cannot read: %s", unit.name, exc)
        state = (policy.from_persistent(unit, saved, since) if saved is not None
                 else policy.initial(unit, since))
        w = self.watches[unit.name] = Watch(cfg=unit, state=state)
        try:
            await self.bus.watch(unit.name)
        except (TimeoutError, UnitError, SystemdUnavailable) as exc:
            log.warning("%s: cannot watch: %s", unit.name, exc)
        await self.read_unit(unit.name)
        loop = asyncio.get_running_loop()
        for probe in unit.probes:
            key = f"{unit.name}/{probe.name}"
            w.tasks.append(loop.create_task(self.schedules.every(
                key, probe.interval, probe.timeout,
                lambda p=probe: self._probe_once(unit.name, p)), name=key))
        if any(getattr(unit, r) for r in RESOURCES):
            key = f"{unit.name}/limits"
            w.tasks.append(loop.create_task(self.schedules.every(
                key, interval, interval, lambda: self._limits_once(unit.name)), name=key))

    async def remove(self, name: str) -> policy.UnitState:
        """Stop watching a unit; return its last policy state."""
        w = self.watches.pop(name)
        for t in w.tasks:
            t.cancel()
        await asyncio.gather(*w.tasks, return_exceptions=True)
        self.bus.unwatch(name)
        return w.state

    async def stop(self) -> None:
        """Cancel every unit's schedules and wait for them."""
        tasks = [t for w in self.watches.values() for t in w.tasks]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def resync(self) -> None:
        """Re-read every unit's state (after signals may have been missed)."""
        for name in list(self.watches):
            await self.read_unit(name)

    def _on_change(self, change: Change) -> None:
        w = self.watches.get(change.unit)
        if w is None:
            return
        if change.result is not None:
            w.result = change.result  # the Service interface's signal comes before the Unit's
        if change.main_pid is not None:
            w.main_pid = change.main_pid
        if change.active_state is not None:
            seen = (change.active_state, change.sub_state or "", w.main_pid)
            if seen == w.seen:
                # systemd repeats ActiveState in every Unit PropertiesChanged (e.g. when a
                # job is queued): policy hears only changes, or a new main process
                return
            w.seen = seen
            self._observe(change.unit, policy.SystemdObserved(
                change.active_state, change.sub_state or "", w.result))
            if change.active_state == "active":
                self._spawn(self.read_unit(change.unit, observe=False), "read-unit")

    async def read_unit(self, name: str, observe: bool = True) -> None:
        """Read a unit's state and cgroup from systemd; feed the state to policy if ``observe``.

        Signals are the source of truth for state changes: a read racing them could hand
        policy a stale state, so after a signal only the cgroup and main PID are refreshed."""
        try:
            info = await self.bus.call(lambda sd: sd.unit_info(name))
        except (TimeoutError, UnitError, SystemdUnavailable) as exc:
            log.warning("%s: cannot read its state: %s", name, exc)
            return
        w = self.watches.get(name)
        if w is None:
            return
        w.result, w.main_pid, w.control_group = info.result, info.main_pid, info.control_group
        w.info = info
        if not observe:
            return
        w.seen = (info.active_state, info.sub_state, info.main_pid)
        if info.load_state == "not-found":
            log.warning("%s: no such unit (yet?)", name)
        self._observe(name, policy.SystemdObserved(info.active_state, info.sub_state,
                                                   info.result))

    async def _probe_once(self, name: str, probe: ProbeConfig) -> None:
        from sdwatch.probes.base import run

        w = self.watches[name]
        if w.state.active_state not in ("active", "reloading", "activating", ""):
            return  # nothing to ask a stopped service; policy knows it is stopped
        result = await run(probe.kind, probe.spec, probe.timeout)
        now = time.time()
        before = w.probes.get(probe.name)
        failure = (Failure(result.reason, now) if not result.ok
                   else before.last_failure if before else None)
        w.probes[probe.name] = ProbeRun(result.ok, result.outcome.value, result.reason,
                                        result.duration, now, dict(result.metrics), failure)
        runs, failed = w.runs.get(probe.name, (0, 0))
        w.runs[probe.name] = (runs + 1, failed + (not result.ok))
        self._observe(name, policy.ProbeObserved(probe.name, result.ok, result.reason))

    async def _limits_once(self, name: str) -> None:
        w = self.watches[name]
        if w.state.active_state != "active" or not w.control_group:
            w.last_sample = None
            return
        sample = resources.sample_unit(w.control_group, w.main_pid)
        cpu = resources.cpu_percent(w.last_sample, sample) if w.last_sample else None
        w.last_sample = sample
        limits = {r: getattr(w.cfg, r) for r in RESOURCES}
        for r in resources.evaluate(limits, sample, cpu, self.system.memory_total,
                                    self.system.cpus):
            w.limits[r.resource] = LimitRun(r.value, r.over, r.reason, time.time())
            self._observe(name, policy.LimitObserved(r.resource, r.over, r.value, r.reason))
