"""`sdwatch run`: the supervisor.  asyncio orchestration only; decisions live in policy.py.

Two connections to systemd: method calls go through one worker thread (pystemd is blocking
and its bus object must stay on one thread), signals arrive on a second connection read from
the event loop.  Each unit's probes and resource checks run on their own schedule; every
observation goes through ``policy.step`` and the actions it returns are executed in order.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from sdwatch import policy, resources
from sdwatch import state as state_file
from sdwatch.config import Config, ConfigError, ProbeConfig, UnitConfig
from sdwatch.link import Link
from sdwatch.logs import NOTICE
from sdwatch.notify import Notifier, watchdog_interval
from sdwatch.schedule import Schedules
from sdwatch.states import Health
from sdwatch.systemd import Change, Systemd, SystemdUnavailable, UnitError

log = logging.getLogger("sdwatch")
STATUS_SCHEMA = "sdwatch.daemon/1"
TICK = 1.0
SNAPSHOT = 5.0  # seconds between status.json refreshes when no health changed


@dataclass
class Watch:
    """The daemon's view of one unit: its config, policy state, and what it last saw."""

    cfg: UnitConfig
    state: policy.UnitState
    result: str = ""  # last Result seen (arrives on the Service interface's signal)
    main_pid: int = 0
    seen: tuple[str, str, int] = ("", "", 0)  # last (active, sub, main pid) handed to policy
    control_group: str = ""
    probes: dict[str, dict[str, Any]] = field(default_factory=dict)  # last result per probe
    limits: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_sample: resources.UnitSample | None = None
    tasks: list[asyncio.Task] = field(default_factory=list)


class Supervisor:
    """Watches the configured units until stopped; reload with ``reload()``."""

    def __init__(self, cfg: Config, config_path: str | None) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.notify = Notifier()
        self.watches: dict[str, Watch] = {}
        self.bus = Link(self._on_change, self._resync)
        self.alerter: Any = None  # alerts.Alerter, made in run()
        self.started_at = time.time()
        self.schedules = Schedules()
        self.system = resources.sample_system()  # RAM and cores for relative limits
        self.stopping = asyncio.Event()
        self.background: set[asyncio.Task] = set()
        self.dirty = True
        self.health_changed = False
        self.next_snapshot = 0.0

    # -- lifecycle --------------------------------------------------------------------------

    async def run(self) -> int:
        """Connect, watch, and serve until SIGTERM/SIGINT; return the exit status."""
        loop = asyncio.get_running_loop()
        for sig, handler in ((signal.SIGTERM, self.stopping.set), (signal.SIGINT,
                             self.stopping.set), (signal.SIGHUP, self._on_sighup)):
            loop.add_signal_handler(sig, handler)
        try:
            await self.bus.open()
        except SystemdUnavailable as exc:
            log.error("%s", exc)
            return 4
        self.alerter = self._make_alerter(self.cfg)
        saved = state_file.load(self._state_path)
        for name, unit in self.cfg.units.items():
            await self._add(unit, saved.get(name))
        if not self.cfg.units:
            log.info("no units configured: nothing to watch (see %s)",
                     self.config_path or "/etc/sdwatch/sdwatch.toml")
        self._spawn(self._ticker(), "ticker")
        self._spawn(self._watchdog(), "watchdog")
        self._spawn(self.alerter.run(), "alerts")
        self._write_status()
        self.notify.ready(self._status_line())
        log.info("watching %d units (%s)", len(self.watches), ", ".join(self.watches) or "none")
        await self.stopping.wait()
        self.notify.stopping()
        log.info("stopping")
        await self._shutdown()
        return 0

    async def _shutdown(self) -> None:
        for w in self.watches.values():
            for t in w.tasks:
                t.cancel()
        for t in list(self.background):
            t.cancel()
        await asyncio.gather(*[t for w in self.watches.values() for t in w.tasks],
                             *self.background, return_exceptions=True)
        self._save_state()
        self._write_status()
        self.alerter.close()
        await self.bus.close()

    def _spawn(self, coro: Any, name: str) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.background.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self.background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("internal error in %s: %r", task.get_name(), task.exception())

    @property
    def _state_path(self) -> str:
        return os.path.join(self.cfg.settings.state_dir, "state.json")

    @property
    def _status_path(self) -> str:
        return os.path.join(self.cfg.settings.runtime_dir, "status.json")

    @staticmethod
    def _make_alerter(cfg: Config) -> Any:
        """An Alerter even without channels: it drains what the OnFailure hook queued."""
        from sdwatch.alerts import Alerter

        return Alerter(cfg.alert, cfg.settings.state_dir)

    async def _resync(self) -> None:
        for name in list(self.watches):
            await self._read_unit(name)

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
            self.observe(change.unit, policy.SystemdObserved(
                change.active_state, change.sub_state or "", w.result))
            if change.active_state == "active":
                self._spawn(self._read_unit(change.unit, observe=False), "read-unit")

    async def _read_unit(self, name: str, observe: bool = True) -> None:
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
        if not observe:
            return
        w.seen = (info.active_state, info.sub_state, info.main_pid)
        if info.load_state == "not-found":
            log.warning("%s: no such unit (yet?)", name)
        self.observe(name, policy.SystemdObserved(info.active_state, info.sub_state, info.result))

    # -- units ------------------------------------------------------------------------------

    async def _add(self, unit: UnitConfig, saved: Any = None) -> None:
        """Start watching a unit: subscribe, read its state, start its schedules."""
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
        await self._read_unit(unit.name)
        loop = asyncio.get_running_loop()
        for probe in unit.probes:
            key = f"{unit.name}/{probe.name}"
            w.tasks.append(loop.create_task(self.schedules.every(
                key, probe.interval, probe.timeout,
                lambda p=probe: self._probe_once(unit.name, p)), name=key))
        if any(getattr(unit, r) for r in policy.RESOURCES):
            key = f"{unit.name}/limits"
            w.tasks.append(loop.create_task(self.schedules.every(
                key, self.cfg.settings.interval, self.cfg.settings.interval,
                lambda: self._limits_once(unit.name)), name=key))

    async def _remove(self, name: str) -> policy.UnitState:
        w = self.watches.pop(name)
        for t in w.tasks:
            t.cancel()
        await asyncio.gather(*w.tasks, return_exceptions=True)
        self.bus.unwatch(name)
        return w.state

    def observe(self, name: str, obs: Any) -> None:
        """Feed one observation to the unit's policy and execute what it decides."""
        w = self.watches.get(name)
        if w is None:
            return
        now = time.time()
        before = policy.health(w.cfg, w.state, now)
        kept = _persistent_key(w.state)
        w.state, actions = policy.step(w.cfg, w.state, obs, now)
        after = policy.health(w.cfg, w.state, now)
        if log.isEnabledFor(logging.DEBUG) and not isinstance(obs, policy.Tick):
            log.debug("%s: %s -> %s", name, obs, [type(a).__name__ for a in actions])
        if after is not before:
            why = w.state.last_failure if after in (Health.FAILING, Health.FAILED) else ""
            log.log(NOTICE if after.ok else logging.WARNING, "%s: %s -> %s%s", name,
                    before.value, after.value, f" ({why})" if why else "")
            self.notify.status(self._status_line())
            self.health_changed = True
        if _persistent_key(w.state) != kept:
            self._save_state()
        if actions:
            self._spawn(self._execute(name, actions), f"{name}/act")
        self.dirty = True

    async def _execute(self, name: str, actions: list) -> None:
        import signal as sig

        for action in actions:
            if isinstance(action, policy.Alert):
                # delivering an alert (SMTP, webhooks) must never hold up a restart
                self._spawn(self._alert(name, action), f"{name}/alert")
                continue
            if isinstance(action, policy.Unmonitor):
                log.warning("%s: unmonitored (%s)", name, action.reason)
                continue
            calls: list[Callable[[Systemd], Any]] = []
            if isinstance(action, policy.Restart):
                if action.kill_first:  # an ExecStop that would hang on a frozen process
                    calls.append(lambda sd: sd.kill(name, sig.SIGKILL, "all"))
                calls.append(lambda sd: sd.restart(name))
            elif isinstance(action, policy.Start):
                calls.append(lambda sd: sd.start(name))
            elif isinstance(action, policy.Stop):
                calls.append(lambda sd: sd.stop(name))
            elif isinstance(action, policy.ResetFailed):
                calls.append(lambda sd: sd.reset_failed(name))
            reason = getattr(action, "reason", "")
            log.log(NOTICE, "%s: %s%s", name, type(action).__name__.lower(),
                    f" ({reason})" if reason else "")
            error = ""
            try:
                for call in calls:
                    await self.bus.call(call)
            except (TimeoutError, UnitError, SystemdUnavailable) as exc:
                error = str(exc) or "timed out"
                log.error("%s: %s failed: %s", name, type(action).__name__.lower(), error)
            self.observe(name, policy.ActionFinished(action, not error, error))

    async def _alert(self, name: str, alert: policy.Alert) -> None:
        level = logging.WARNING if alert.event in ("failing", "gave_up", "crashed",
                                                   "limit") else NOTICE
        log.log(level, "%s: alert %s: %s", name, alert.event, alert.message)
        settings = self.cfg.alert
        if not (settings.email or settings.webhook or settings.exec):
            return  # no channels: the log line above is the alert
        from sdwatch.alerts import AlertEvent, failure_details, journal_excerpt

        w = self.watches.get(name)
        details: dict[str, Any] = {"result": w.result if w else "",
                                   "restarts_sdwatch": w.state.total_restarts if w else 0}
        if alert.event in ("crashed", "failing", "gave_up"):
            # the evidence: how the main process ended, and its last journal lines
            try:
                info = await self.bus.call(lambda sd: sd.unit_info(name))
                _, more = failure_details(info.result, info.exec_main_code,
                                          info.exec_main_status, info.n_restarts)
                details.update(more)
                details["journal"] = await asyncio.to_thread(
                    journal_excerpt, name, info.invocation_id,
                    since_usec=info.exec_main_start_timestamp)
            except (TimeoutError, UnitError, SystemdUnavailable) as exc:
                log.debug("%s: no failure details for the alert: %s", name, exc)
        await self.alerter.send(AlertEvent(unit=name, event=alert.event, message=alert.message,
                                           time=time.time(), host=os.uname().nodename,
                                           details=details))

    # -- schedules --------------------------------------------------------------------------

    async def _probe_once(self, name: str, probe: ProbeConfig) -> None:
        from sdwatch.probes.base import run

        w = self.watches[name]
        if w.state.active_state not in ("active", "reloading", "activating", ""):
            return  # nothing to ask a stopped service; policy knows it is stopped
        result = await run(probe.kind, probe.spec, probe.timeout)
        last = {"ok": result.ok, "outcome": result.outcome.value, "reason": result.reason,
                "duration": result.duration, "at": time.time(), "metrics": dict(result.metrics)}
        if not result.ok:
            last["last_failure"] = {"reason": result.reason, "at": last["at"]}
        elif "last_failure" in w.probes.get(probe.name, {}):
            last["last_failure"] = w.probes[probe.name]["last_failure"]
        w.probes[probe.name] = last
        self.observe(name, policy.ProbeObserved(probe.name, result.ok, result.reason))

    async def _limits_once(self, name: str) -> None:
        w = self.watches[name]
        if w.state.active_state != "active" or not w.control_group:
            w.last_sample = None
            return
        sample = resources.sample_unit(w.control_group, w.main_pid)
        cpu = resources.cpu_percent(w.last_sample, sample) if w.last_sample else None
        w.last_sample = sample
        limits = {r: getattr(w.cfg, r) for r in policy.RESOURCES}
        for r in resources.evaluate(limits, sample, cpu, self.system.memory_total,
                                    self.system.cpus):
            w.limits[r.resource] = {"value": r.value, "over": r.over, "reason": r.reason,
                                    "at": time.time()}
            self.observe(name, policy.LimitObserved(r.resource, r.over, r.value, r.reason))

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            now = time.time()
            for name, w in list(self.watches.items()):
                if _has_timer(w.state, now):
                    self.observe(name, policy.Tick())
            # the snapshot: at once when a health changed, else every SNAPSHOT seconds
            # (its JSON is most of an idle daemon's CPU)
            if self.health_changed or (self.dirty and now >= self.next_snapshot):
                self._write_status()

    async def _watchdog(self) -> None:
        """Ping systemd's watchdog only while every schedule is kept: a stuck loop, or a probe
        or resource task that stopped running, lets WatchdogSec fire."""
        interval = watchdog_interval()
        if interval is None:
            return
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            overdue = self.schedules.overdue(now, interval)
            if overdue:
                log.error("schedule not kept (%s): not telling the watchdog we are alive",
                          ", ".join(overdue[:3]))
            else:
                self.notify.watchdog()
            await asyncio.sleep(interval / 2)

    # -- reload -----------------------------------------------------------------------------

    def _on_sighup(self) -> None:
        self._spawn(self.reload(), "reload")

    async def reload(self) -> bool:
        """Re-read the config; swap it in if valid, keep the old one otherwise."""
        from sdwatch import config as config_mod

        self.notify.reloading()
        try:
            new = config_mod.load(self.config_path)
        except ConfigError as exc:
            for message in exc.messages:
                log.error("reload: %s", message)
            log.error("reload failed: keeping the configuration in force")
            self.notify.ready(self._status_line())
            return False
        old = self.cfg
        self.cfg = new
        kept = changed = 0
        for name in list(self.watches):
            if name not in new.units:
                await self._remove(name)
            elif new.units[name] != old.units.get(name) or new.settings != old.settings:
                prev = await self._remove(name)
                await self._add(new.units[name], policy.to_persistent(prev))
                changed += 1
            else:
                kept += 1
        for name, unit in new.units.items():
            if name not in self.watches:
                await self._add(unit, state_file.load(self._state_path).get(name))
        if getattr(new, "alert", None) != getattr(old, "alert", None):
            self.alerter.close()
            self.alerter = self._make_alerter(new)
            self._spawn(self.alerter.run(), "alerts")
        self._save_state()
        self.dirty = self.health_changed = True  # a new snapshot at the next tick
        log.info("reloaded: %d units (%d unchanged, %d changed)", len(self.watches), kept,
                 changed)
        self.notify.ready(self._status_line())
        return True

    # -- status -----------------------------------------------------------------------------

    def _health(self) -> dict[str, Health]:
        now = time.time()
        return {n: policy.health(w.cfg, w.state, now) for n, w in self.watches.items()}

    def _status_line(self) -> str:
        health = self._health()
        bad = {n: h for n, h in health.items() if not h.ok}
        line = f"{len(health)} units: {len(health) - len(bad)} healthy"
        if bad:
            first = next(iter(bad))
            why = self.watches[first].state.last_failure or bad[first].value
            line += f", {len(bad)} failing ({first.rsplit('.', 1)[0]}: {why})"
        return line

    def _save_state(self) -> None:
        data = {n: policy.to_persistent(w.state) for n, w in self.watches.items()}
        try:
            state_file.save(self._state_path, data)
        except OSError as exc:
            log.error("cannot save state to %s: %s", self._state_path, exc)

    def _write_status(self) -> None:
        health = self._health()
        units = {}
        for name, w in self.watches.items():
            described = policy.describe(w.state)
            for pname, last in w.probes.items():
                described["probes"].setdefault(pname, {}).update(last)
            units[name] = {"health": health[name].value, **described, "limits_last": w.limits}
        data = {
            "schema": STATUS_SCHEMA, "pid": os.getpid(),
            "pid_start": resources.process_start(os.getpid()), "started_at": self.started_at,
            "updated_at": time.time(), "config_files": list(self.cfg.files),
            "status": self._status_line(), "units": units,
            "scheduler": self.schedules.lateness(),
        }
        try:
            state_file.write_json_atomic(self._status_path, data, durable=False)
            self.dirty = self.health_changed = False
            self.next_snapshot = time.time() + SNAPSHOT
        except OSError as exc:
            log.error("cannot write %s: %s", self._status_path, exc)


def _persistent_key(s: policy.UnitState) -> tuple:
    """What policy.to_persistent saves, cheap to compare on every observation."""
    return (s.restarts, s.total_restarts, s.gave_up_at, s.unmonitored)


def _has_timer(s: policy.UnitState, now: float) -> bool:
    """Whether time alone can change the unit's state or health: a pending restart, a
    re-arm after giving up, or the end of startup grace."""
    return (s.pending_until is not None or s.gave_up_at is not None
            or (s.grace_until is not None and now < s.grace_until + 2 * TICK))


def main(cfg: Config, config_path: str | None) -> int:
    """Run the supervisor until stopped; return the process exit status."""
    return asyncio.run(Supervisor(cfg, config_path).run())
