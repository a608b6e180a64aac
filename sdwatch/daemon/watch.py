"""Per-unit watching: systemd's state from signals, and each unit's probe and limit schedules.

Every observation is handed to the ``observe`` callback (the Supervisor's), which runs policy.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Protocol

from sdwatch import messages, persist, policy, resources
from sdwatch.link import BATCH, Link
from sdwatch.probes.base import run
from sdwatch.snapshot import Failure, LimitRun, ProbeRun
from sdwatch.states import RESOURCES, Health
from sdwatch.systemd import SystemdError, SystemdUnavailable, UnitError
from sdwatch.unitinfo import Change, UnitInfo

if TYPE_CHECKING:
    from sdwatch.config import ProbeConfig, UnitConfig
    from sdwatch.schedule import Schedules

log = logging.getLogger("sdwatch")


class Observe(Protocol):
    """The Supervisor's ``observe``: policy.step, then the actions; a change of health is
    logged if ``announce`` (a first reading of thousands of units is summed up instead)."""

    def __call__(self, name: str, obs: messages.Observation, announce: bool = True) -> None: ...


Spawn = Callable[..., asyncio.Task]  # (coroutine, task name) -> the running task


@dataclass
class Watch:
    """The daemon's view of one unit: its config, policy state, and what it last saw."""

    cfg: UnitConfig
    state: policy.UnitState
    result: str = ""  # last Result seen (arrives on the Service interface's signal)
    main_pid: int = 0
    seen: tuple[str, str, int] = ("", "", 0)  # last (active, sub, main pid) handed to policy
    job: bool = False  # a job was queued since the unit was last up without one (a stop job)
    since: float | None = None  # when systemd last saw it become active (time.time() clock)
    stopped: asyncio.Event = field(default_factory=asyncio.Event)  # a stop phase is over
    control_group: str = ""
    probes: dict[str, ProbeRun] = field(default_factory=dict)  # last run per probe
    limits: dict[str, LimitRun] = field(default_factory=dict)  # last reading per resource
    last_sample: resources.UnitSample | None = None
    info: UnitInfo | None = None  # systemd's last full answer about the unit
    service_type: str = ""  # Type= as last read (a read of an inactive unit may not say)
    runs: dict[str, tuple[int, int]] = field(default_factory=dict)  # probe -> (runs, failed)
    tasks: list[asyncio.Task] = field(default_factory=list)
    unreadable: str = ""  # why systemd's view of the unit could not be read ("" once read)

    def took(self, info: UnitInfo) -> None:
        """Keep systemd's answer about the unit."""
        self.info = info
        self.service_type = info.service_type or self.service_type

    def health(self, now: float) -> Health:
        """Policy's verdict, or "unknown" while systemd's view could not be read."""
        return Health.UNKNOWN if self.unreadable else policy.health(self.cfg, self.state, now)


class Watcher:
    """The watched units, their systemd connection (``bus``) and their schedules."""

    def __init__(self, observe: Observe, spawn: Spawn, schedules: Schedules) -> None:
        self.watches: dict[str, Watch] = {}
        self.bus = Link(self._on_change, self.resync)
        self.schedules = schedules
        self.system = resources.sample_system()  # RAM and cores for relative limits
        self._observe = observe
        self._spawn = spawn

    async def add(self, units: list[UnitConfig], interval: float,
                  saved: dict[str, object]) -> None:
        """Start watching units: subscribe, read their states, start their schedules (limits
        every ``interval`` seconds).  ``saved``: persist.to_persistent data by unit name.

        systemd is asked BATCH units per call and the loop runs in between (the watchdog
        stays fed however many units there are).  Subscribing comes before reading, so no
        change falls between the two; a unit that could not be read is "unknown", with why.
        Each unit's grace runs from its own start, which the first read tells policy."""
        if not units:
            return
        now = time.time()
        for unit in units:
            self.watches[unit.name] = Watch(cfg=unit, state=policy.initial(unit, now))
        names = [u.name for u in units]
        try:
            self.bus.watch_many(names)
        except SystemdUnavailable as exc:  # the signal connection reconnects by itself
            log.warning("cannot watch: %s", exc)
        infos = await self._read_many(names)
        for i, unit in enumerate(units):
            w = self.watches.get(unit.name)
            if w is None:
                continue
            info, old = infos.get(unit.name), saved.get(unit.name)
            w.state = (persist.from_persistent(unit, old, now) if old is not None
                       else policy.initial(unit, now))
            self._apply_read(unit.name, info, announce=False)
            self._schedule(w, interval)
            if i % BATCH == BATCH - 1:
                await asyncio.sleep(0)
        self._log_first_reading([self.watches[n] for n in names if n in self.watches], infos)

    async def _read_many(self, names: list[str]) -> dict[str, UnitInfo | str]:
        """Each unit's UnitInfo, or why it could not be read."""
        out: dict[str, UnitInfo | str] = {}
        for i in range(0, len(names), BATCH):
            chunk = names[i:i + BATCH]
            try:
                read = await self.bus.read_units(chunk)
            except (TimeoutError, SystemdError) as exc:
                read = {n: UnitError(str(exc) or "timed out") for n in chunk}
            out.update((n, v if isinstance(v, UnitInfo) else str(v)) for n, v in read.items())
        return out

    def _apply_read(self, name: str, info: UnitInfo | str | None, newest: bool = False,
                    announce: bool = True) -> None:
        """Hand policy a unit's state as read, unless a signal already told a newer one
        (``newest``: the read is known to be newer, e.g. after signals were missed)."""
        w = self.watches.get(name)
        if w is None:
            return
        if not isinstance(info, UnitInfo):
            w.unreadable = info or "not read"
            log.debug("%s: cannot read its state: %s", name, w.unreadable)
            return
        w.unreadable = ""
        w.took(info)
        if w.seen != ("", "", 0) and not newest:
            # a signal came after our subscription: it is the newer truth about the state
            w.control_group = w.control_group or info.control_group
            return
        w.result, w.main_pid, w.control_group = info.result, info.main_pid, info.control_group
        if info.active_enter_monotonic:
            w.since = _wall_clock(info.active_enter_monotonic)
        w.seen = (info.active_state, info.sub_state, info.main_pid)
        self._observe(name, messages.SystemdObserved(info.active_state, info.sub_state,
                                                     info.result, since=w.since, stop_job=w.job),
                      announce)

    def _schedule(self, w: Watch, interval: float) -> None:
        unit, loop = w.cfg, asyncio.get_running_loop()
        for probe in unit.probes:
            key = f"{unit.name}/{probe.name}"
            w.tasks.append(loop.create_task(self.schedules.every(
                key, probe.interval, probe.timeout,
                lambda p=probe: self._probe_once(unit.name, p)), name=key))
        if any(getattr(unit, r) for r in RESOURCES):
            key = f"{unit.name}/limits"
            w.tasks.append(loop.create_task(self.schedules.every(
                key, interval, interval, lambda: self._limits_once(unit.name)), name=key))

    @staticmethod
    def _log_first_reading(watches: list[Watch], infos: dict[str, UnitInfo | str]) -> None:
        """A few lines for the units just added, not one per unit (there may be thousands)."""
        now = time.time()
        health = {w.cfg.name: w.health(now) for w in watches}
        counts = collections.Counter(h.value for h in health.values())
        log.info("added %d units: %s", len(watches), ", ".join(
            f"{n} {h}" for h, n in counts.most_common()))
        missing = [n for n, i in infos.items() if isinstance(i, UnitInfo)
                   and i.load_state == "not-found"]
        unread = {n: i for n, i in infos.items() if isinstance(i, str)}
        groups = [(f"{len(missing)} do not exist (yet?)", missing),
                  *((h.value, [n for n, v in health.items() if v is h])
                    for h in (Health.FAILED, Health.FAILING))]
        if unread:
            first = next(iter(unread))
            groups.append((f"{len(unread)} could not be read, health unknown until they are "
                           f"({first}: {unread[first]})", list(unread)))
        for what, names in groups:
            if names:
                log.warning("%s: %s%s", what, ", ".join(names[:10]),
                            ", ..." if len(names) > 10 else "")

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
        infos = await self._read_many(list(self.watches))
        for name, info in infos.items():
            self._apply_read(name, info, newest=True)

    def _on_change(self, change: Change) -> None:
        w = self.watches.get(change.unit)
        if w is None:
            return
        if change.result is not None:
            w.result = change.result  # the Service interface's signal comes before the Unit's
        if change.main_pid is not None:
            w.main_pid = change.main_pid
        if change.job:
            w.job = True
        elif change.job is not None and change.active_state in ("active", "reloading"):
            w.job = False  # a job ended with the unit up: not a stop
        if change.active_enter_monotonic:
            w.since = _wall_clock(change.active_enter_monotonic)
        if change.active_state in ("inactive", "failed", "activating"):
            w.stopped.set()
        if change.active_state is not None:
            seen = (change.active_state, change.sub_state or "", w.main_pid)
            if seen == w.seen:
                # systemd repeats ActiveState in every Unit PropertiesChanged (e.g. when a
                # job is queued): policy hears only changes, or a new main process
                return
            w.seen = seen
            self._observe(change.unit, messages.SystemdObserved(
                change.active_state, change.sub_state or "", w.result, since=w.since,
                stop_job=w.job))
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
            if observe and name in self.watches:
                self.watches[name].unreadable = str(exc) or "timed out"
            return
        w = self.watches.get(name)
        if w is None:
            return
        w.result, w.main_pid, w.control_group = info.result, info.main_pid, info.control_group
        if info.active_enter_monotonic:
            w.since = _wall_clock(info.active_enter_monotonic)
        w.took(info)
        if not observe:
            return
        w.unreadable = ""
        w.seen = (info.active_state, info.sub_state, info.main_pid)
        self._observe(name, messages.SystemdObserved(info.active_state, info.sub_state,
                                                     info.result, since=w.since, stop_job=w.job))

    async def _probe_once(self, name: str, probe: ProbeConfig) -> None:
        w = self.watches[name]
        if w.state.active_state not in ("active", "reloading", "activating", ""):
            return  # nothing to ask a stopped service; policy knows it is stopped
        result = await run(probe.kind, probe.spec, probe.timeout)
        now = time.time()
        before = w.probes.get(probe.name)
        failure = (Failure(result.reason, now) if not result.ok
                   else before.last_failure if before else None)
        streak = before.streak + 1 if before and before.ok is result.ok else 1
        w.probes[probe.name] = ProbeRun(result.ok, result.outcome.value, result.reason,
                                        result.duration, now, result.metrics, failure, streak)
        runs, failed = w.runs.get(probe.name, (0, 0))
        w.runs[probe.name] = (runs + 1, failed + (not result.ok))
        self._observe(name, messages.ProbeObserved(probe.name, result.ok, result.reason))

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
            self._observe(name, messages.LimitObserved(r.resource, r.over, r.value, r.reason))


def _wall_clock(monotonic_usec: int) -> float:
    """systemd's CLOCK_MONOTONIC timestamp as policy's time.time(), immune to clock steps since."""
    return time.time() - (time.monotonic() - monotonic_usec / 1e6)
