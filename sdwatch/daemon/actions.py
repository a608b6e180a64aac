"""Carrying out policy's decisions: systemd calls in order, alerts with their evidence.

Each systemd call's outcome goes back to policy as ``ActionFinished``.  Alerts are sent in
tasks of their own: delivering one (SMTP, webhooks) must never hold up a restart.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from typing import TYPE_CHECKING, Callable, Mapping

from sdwatch import messages
from sdwatch.logs import NOTICE
from sdwatch.states import Event
from sdwatch.systemd import Systemd, SystemdUnavailable, UnitError

if TYPE_CHECKING:
    from sdwatch.alerts import Alerter
    from sdwatch.config import Config
    from sdwatch.daemon.watch import Observe, Spawn, Watch
    from sdwatch.link import Link

log = logging.getLogger("sdwatch")
Call = Callable[[Systemd], object]
# alerts logged as warnings; the others are notices
WARN = frozenset({Event.FAILING, Event.GAVE_UP, Event.CRASHED, Event.LIMIT})
# alerts that carry how the main process ended and its journal lines
WITH_EVIDENCE = frozenset({Event.CRASHED, Event.FAILING, Event.GAVE_UP})


def calls(name: str, action: messages.Do) -> list[Call]:
    """Given a systemd action of policy's, return the calls carrying it out, in order."""
    if isinstance(action, messages.Restart):
        kill: list[Call] = []
        if action.kill_first:  # an ExecStop that would hang on a frozen process
            kill.append(lambda sd: sd.kill(name, signal.SIGKILL, "all"))
        return [*kill, lambda sd: sd.restart(name)]
    if isinstance(action, messages.Start):
        return [lambda sd: sd.start(name)]
    if isinstance(action, messages.Stop):
        return [lambda sd: sd.stop(name)]
    if isinstance(action, messages.ResetFailed):
        return [lambda sd: sd.reset_failed(name)]
    return []


class Actor:
    """Executes policy's actions for the daemon; owns the Alerter."""

    def __init__(self, bus: Link, watches: Mapping[str, Watch], observe: Observe,
                 spawn: Spawn) -> None:
        self.bus = bus
        self.watches = watches
        self.observe = observe
        self.spawn = spawn
        self.alerter: Alerter | None = None
        self.cfg: Config | None = None

    def use(self, cfg: Config) -> None:
        """Alert with ``cfg``'s settings from now on: a new Alerter (even without channels:
        it drains what the OnFailure hook queued) when they changed, run in the background."""
        from sdwatch.alerts import Alerter

        old, self.cfg = self.cfg, cfg
        if self.alerter is not None and old is not None and old.alert == cfg.alert:
            return
        if self.alerter is not None:
            self.alerter.close()
        self.alerter = Alerter(cfg.alert, cfg.settings.state_dir)
        self.spawn(self.alerter.run(), "alerts")

    def close(self) -> None:
        """Stop the Alerter's background task; queued alerts stay for the next start."""
        if self.alerter is not None:
            self.alerter.close()

    async def execute(self, name: str, actions: list[messages.Do]) -> None:
        """Carry out ``actions`` for unit ``name`` in order, reporting each call to policy."""
        for action in actions:
            if isinstance(action, messages.Alert):
                self.spawn(self._alert(name, action), f"{name}/alert")
                continue
            if isinstance(action, messages.Unmonitor):
                log.warning("%s: unmonitored (%s)", name, action.reason)
                continue
            verb = type(action).__name__.lower()
            reason = getattr(action, "reason", "")
            log.log(NOTICE, "%s: %s%s", name, verb, f" ({reason})" if reason else "")
            error = ""
            try:
                if isinstance(action, messages.Restart) and action.stop_budget is not None:
                    await self._restart_within(name, action.stop_budget)
                else:
                    for call in calls(name, action):
                        await self.bus.call(call)
            except (TimeoutError, UnitError, SystemdUnavailable) as exc:
                error = str(exc) or "timed out"
                log.error("%s: %s failed: %s", name, verb, error)
            self.observe(name, messages.ActionFinished(action, not error, error))

    async def _restart_within(self, name: str, budget: float) -> None:
        """Restart the unit; SIGKILL its cgroup if its stop is not over after ``budget`` seconds
        (an ExecStop= or TimeoutStopSec= waiting on frozen processes).  Raise what bus.call does.
        """
        w = self.watches.get(name)
        if w is None:
            return
        w.stopped.clear()
        await self.bus.call(lambda sd: sd.restart(name))
        started = time.monotonic()
        try:
            await asyncio.wait_for(w.stopped.wait(), budget)
            log.info("%s: stopped cleanly in %.1fs (stop budget %gs)", name,
                     time.monotonic() - started, budget)
            return
        except TimeoutError:
            pass
        if w.seen[0] not in ("active", "reloading", "deactivating"):
            return  # it got there just now
        log.warning("%s: not stopped after %gs (stop budget): SIGKILL to its cgroup", name,
                    budget)
        try:
            await self.bus.call(lambda sd: sd.kill(name, signal.SIGKILL, "all"))
        except UnitError as exc:
            log.info("%s: nothing left to kill: %s", name, exc)

    async def _alert(self, name: str, alert: messages.Alert) -> None:
        from sdwatch.alerting.event import AlertEvent

        event = Event(alert.event)
        log.log(logging.WARNING if event in WARN else NOTICE, "%s: alert %s: %s", name,
                event, alert.message)
        if self.alerter is None or self.cfg is None or not self.cfg.alert.channels:
            return  # no channels: the log line above is the alert
        w = self.watches.get(name)
        details: dict[str, object] = {"result": w.result if w else "",
                                      "restarts_sdwatch": w.state.total_restarts if w else 0}
        if event in WITH_EVIDENCE:
            details.update(await self._evidence(name))
        await self.alerter.send(AlertEvent(unit=name, event=event, message=alert.message,
                                           time=time.time(), host=os.uname().nodename,
                                           details=details))

    async def _evidence(self, name: str) -> dict[str, object]:
        """How the main process ended and its last journal lines; {} if systemd cannot say."""
        from sdwatch import evidence

        try:
            info = await self.bus.call(lambda sd: sd.unit_info(name))
        except (TimeoutError, UnitError, SystemdUnavailable) as exc:
            log.debug("%s: no failure details for the alert: %s", name, exc)
            return {}
        _, details = await asyncio.to_thread(evidence.gather, info)
        return details
