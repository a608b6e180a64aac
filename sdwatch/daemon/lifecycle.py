"""The Supervisor: start, signals, reload (one at a time), ticker and watchdog, and ``observe``,
the hub where every observation meets policy and its decisions are handed to the actions."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import time
from typing import TYPE_CHECKING, Any, Coroutine

from sdwatch import exits, messages, persist, policy, reloading
from sdwatch import state as state_file
from sdwatch.daemon.actions import Actor
from sdwatch.daemon.publish import Publisher, status_line
from sdwatch.daemon.watch import Watch, Watcher
from sdwatch.logs import NOTICE
from sdwatch.notify import Notifier, watchdog_interval
from sdwatch.schedule import Schedules
from sdwatch.states import Health
from sdwatch.systemd import SystemdUnavailable

if TYPE_CHECKING:
    from sdwatch.config import Config
    from sdwatch.snapshot import DaemonSnapshot

log = logging.getLogger("sdwatch")
TICK = 1.0


class Supervisor:
    """Watches the configured units until stopped; reload with ``reload()``; the current
    snapshot with ``snapshot()``."""

    def __init__(self, cfg: Config, config_path: str | None) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.notify = Notifier()
        self.schedules = Schedules()
        self.stopping = asyncio.Event()
        self.background: set[asyncio.Task] = set()
        self.watcher = Watcher(self.observe, self.spawn, self.schedules)
        self.watches = self.watcher.watches
        self.actor = Actor(self.watcher.bus, self.watches, self.observe, self.spawn)
        self.publisher = Publisher()
        self._reloading = asyncio.Lock()
        self.reload_ok, self.reload_at = True, time.time()
        self.server: Any = None  # serve.httpd.Server, made in run()

    async def run(self) -> int:
        """Connect, watch, and serve until SIGTERM/SIGINT; return the exit status."""
        loop = asyncio.get_running_loop()
        for sig, handler in ((signal.SIGTERM, self.stopping.set), (signal.SIGINT,
                             self.stopping.set), (signal.SIGHUP, self._on_sighup)):
            loop.add_signal_handler(sig, handler)
        try:
            await self.watcher.bus.open()
        except SystemdUnavailable as exc:
            log.error("%s", exc)
            return exits.UNREACHABLE
        self.actor.use(self.cfg)
        self.spawn(self._watchdog(), "watchdog")  # fed while thousands of units are added
        await self.watcher.add(list(self.cfg.units.values()), self.cfg.settings.interval,
                               state_file.load(self._state_path))
        if not self.cfg.units:
            log.info("no units configured: nothing to watch (see %s)",
                     self.config_path or "/etc/sdwatch/sdwatch.toml")
        self.spawn(self._ticker(), "ticker")
        self._write_status()
        await self._serve()
        self.notify.ready(self._status_line())
        names = list(self.watches)
        log.info("watching %d units (%s%s)", len(names), ", ".join(names[:10]) or "none",
                 ", ..." if len(names) > 10 else "")
        await self.stopping.wait()
        self.notify.stopping()
        log.info("stopping")
        await self._shutdown()
        return exits.OK

    async def _shutdown(self) -> None:
        await self.watcher.stop()
        for t in list(self.background):
            t.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)
        self._save_state()
        self._write_status()
        if self.server is not None:
            await self.server.close()
        self.actor.close()
        await self.watcher.bus.close()

    def spawn(self, coro: Coroutine[object, object, object], name: str) -> asyncio.Task:
        """Run ``coro`` in the background; its exception is logged, never lost."""
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

    def observe(self, name: str, obs: messages.Observation, announce: bool = True) -> None:
        """Feed one observation to the unit's policy and execute what it decides; log a
        change of health if ``announce`` (a first reading is summed up by the Watcher)."""
        w = self.watches.get(name)
        if w is None:
            return
        now = time.time()
        old = w.state
        w.state, actions = policy.step(w.cfg, old, obs, now)
        if log.isEnabledFor(logging.DEBUG) and not isinstance(obs, messages.Tick):
            log.debug("%s: %s -> %s", name, obs, [type(a).__name__ for a in actions])
        if w.state is old and not actions:
            if type(obs) is messages.ProbeObserved and obs.ok and _passed_before(w, obs.probe):
                self.publisher.passed_again()  # only its time, duration, count, metrics moved
            else:
                self.publisher.changed()
            return
        before = policy.health(w.cfg, old, now)
        after = policy.health(w.cfg, w.state, now)
        if after is not before and announce:
            # (STATUS= goes out with the snapshot, at the next tick: rebuilding it here
            # would cost every unit's health at every change)
            why = w.state.last_failure if after in (Health.FAILING, Health.FAILED) else ""
            log.log(NOTICE if after.ok else logging.WARNING, "%s: %s -> %s%s", name,
                    before.value, after.value, f" ({why})" if why else "")
        if persist.key(w.state) != persist.key(old):
            self._save_state()
        if actions:
            self.spawn(self.actor.execute(name, actions), f"{name}/act")
        self.publisher.changed(health_changed=after is not before)

    async def _ticker(self) -> None:
        """Every TICK seconds, on the schedules' grid: a wake-up of its own would cost more
        than the tick's work, so it comes with the probes due at the same time."""
        loop = asyncio.get_running_loop()
        at = math.ceil(loop.time())
        while True:
            at = max(at + TICK, math.ceil(loop.time()))  # (after a stall: the next one)
            await self.schedules.until(at)
            now = time.time()
            for name, w in list(self.watches.items()):
                if _has_timer(w.state, now):
                    self.observe(name, messages.Tick())
            if self.publisher.due(now):
                self._write_status()

    async def _watchdog(self) -> None:
        """Ping systemd's watchdog only while every schedule is kept: a stuck loop, or a probe
        or resource task that stopped running, lets WatchdogSec fire."""
        interval = watchdog_interval()
        if interval is None:
            return
        loop = asyncio.get_running_loop()
        while True:
            overdue = self.schedules.overdue(loop.time(), interval)
            if overdue:
                log.error("schedule not kept (%s): not telling the watchdog we are alive",
                          ", ".join(overdue[:3]))
            else:
                self.notify.watchdog()
            await asyncio.sleep(interval / 2)

    # -- reload -----------------------------------------------------------------------------

    def _on_sighup(self) -> None:
        self.spawn(self.reload(), "reload")

    @property
    def reload_running(self) -> bool:
        """True while a reload runs: ``cfg`` is the new one before the watches follow it."""
        return self._reloading.locked()

    async def reload(self) -> bool:
        """Re-read the config; swap it in if valid, keep the old one otherwise.  Reloads run
        one at a time: a second SIGHUP waits for the first reload to finish.  The outcome
        goes to ``sdwatch reload`` (ExecReload=), which fails the reload job if refused."""
        async with self._reloading:
            started = reloading.clock()
            dirs = {self.cfg.settings.runtime_dir}
            self.notify.reloading()
            ok, messages = await self._reload()
            dirs.add(self.cfg.settings.runtime_dir)
            try:
                reloading.record(dirs, reloading.Answer(ok, messages, started,
                                                        len(self.watches)))
            except OSError as exc:
                log.error("cannot record the reload's outcome: %s", exc)
            self.notify.ready(self._status_line())
            if not ok:  # after READY's STATUS: the admin sees why in systemctl status
                self.notify.status(f"reload refused, previous configuration in force: "
                                   f"{messages[0]}")
            return ok

    async def _reload(self) -> tuple[bool, tuple[str, ...]]:
        from sdwatch import config as config_mod

        try:
            new = config_mod.load(self.config_path)
        except config_mod.ConfigError as exc:
            for message in exc.messages:
                log.error("reload: %s", message)
            log.error("reload failed: keeping the configuration in force")
            self.reload_ok = False
            return False, tuple(exc.messages) or ("invalid configuration",)
        old, self.cfg = self.cfg, new
        self.reload_ok, self.reload_at = True, time.time()
        saved: dict[str, object] = {}  # the state of a changed unit carries over
        kept = 0
        for name in list(self.watches):
            if name not in new.units:
                await self.watcher.remove(name)
            elif new.units[name] != old.units.get(name) or new.settings != old.settings:
                saved[name] = persist.to_persistent(await self.watcher.remove(name))
            else:
                kept += 1
        changed = len(saved)
        fresh = [n for n in new.units if n not in self.watches and n not in saved]
        if fresh:  # new to this daemon, maybe not to the state file
            on_disk = state_file.load(self._state_path)
            saved.update((n, on_disk[n]) for n in fresh if n in on_disk)
        await self.watcher.add([new.units[n] for n in new.units if n not in self.watches],
                               new.settings.interval, saved)
        self.actor.use(new)
        self._save_state()
        if (new.settings.listen, new.settings.token_file, new.settings.runtime_dir) != (
                old.settings.listen, old.settings.token_file, old.settings.runtime_dir):
            await self._serve()
        self.publisher.changed(health_changed=True)  # a new snapshot at the next tick
        log.info("reloaded: %d units (%d unchanged, %d changed)", len(self.watches), kept,
                 changed)
        return True, ()

    # -- state and snapshot -----------------------------------------------------------------

    def snapshot(self) -> DaemonSnapshot:
        """Return what the daemon knows now, as written to status.json."""
        return self.publisher.snapshot(self.watches, self.schedules, self.cfg.files)

    def _status_line(self) -> str:
        return status_line(self.watches, time.time())

    # -- the API (sdwatch.serve) ------------------------------------------------------------

    async def _serve(self) -> None:
        from sdwatch import serve

        if self.server is not None:
            await self.server.close()
        self.server = await serve.start(self)

    def command(self, name: str, command: str) -> Health:
        """Carry out an administrator's command (messages.COMMANDS) on a watched unit; return
        its health after it."""
        log.log(NOTICE, "%s: %s requested", name, command)
        self.observe(name, messages.Requested(command))
        w = self.watches[name]
        return policy.health(w.cfg, w.state, time.time())

    def _save_state(self) -> None:
        data = {n: persist.to_persistent(w.state) for n, w in self.watches.items()}
        try:
            state_file.save(self._state_path, data)
        except OSError as exc:
            log.error("cannot save state to %s: %s", self._state_path, exc)

    def _write_status(self) -> None:
        snap = self.snapshot()
        self.notify.status(snap.status)
        self.publisher.write(self._status_path, snap)


def _passed_before(w: Watch, probe: str) -> bool:
    """Whether the probe's run before its last one passed too."""
    run = w.probes.get(probe)
    return run is not None and run.streak > 1


def _has_timer(s: policy.UnitState, now: float) -> bool:
    """Whether time alone can change the unit's state or health: a pending restart, a
    re-arm after giving up, or the end of startup grace."""
    return (s.pending_until is not None or s.gave_up_at is not None
            or (s.grace_until is not None and now < s.grace_until + 2 * TICK))


def main(cfg: Config, config_path: str | None) -> int:
    """Run the supervisor until stopped; return the process exit status."""
    return asyncio.run(Supervisor(cfg, config_path).run())
