"""Alerts: what the daemon and the OnFailure hook use to tell people about a unit.

``Alerter.send(event)`` writes one queue entry per channel that wants the event (filters: unit
globs and event names), then delivers each channel's entries oldest first, stopping at that
channel's first failure; what is not delivered stays queued.  ``Alerter.run()`` (the daemon's
background task) retries the queue with capped exponential backoff, picks up entries queued
by other processes (``sdwatch alert``), and repeats an alert every ``reminder`` while a unit
stays failing, until "recovered".  Delivery guarantees: see sdwatch.alerting.queue.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from dataclasses import dataclass, replace

from sdwatch.alerting.channels import DeliveryError, deliver, iso, where
from sdwatch.alerting.event import AlertEvent
from sdwatch.alerting.queue import Entry, Queue, backoff
from sdwatch.alerting.settings import AlertSettings, Channel
from sdwatch.states import FAILING_EVENTS, Event

__all__ = ["AlertEvent", "AlertSettings", "Alerter"]

log = logging.getLogger("sdwatch")
SENT, QUEUED, LOST = "sent", "queued", "lost"


@dataclass
class _Failing:
    """A unit in a failing event, until "recovered": what to remind of, and when."""

    since: float
    event: Event = Event.FAILING
    message: str = ""
    last: float = 0.0  # the last alert or reminder
    count: int = 0  # reminders sent


class Alerter:
    """Sends alerts over the configured channels, with an on-disk queue and reminders."""

    def __init__(self, settings: AlertSettings, state_dir: str) -> None:
        self.settings = settings
        self.queue = Queue(os.path.join(state_dir, "alerts"))
        self.host = settings.host or socket.gethostname()
        self._channels = {c.key: c for c in settings.channels}
        self._failing: dict[str, _Failing] = {}  # units to remind about, until recovered
        self._wake: asyncio.Event | None = None
        self._closed = False
        self._warned: set[str] = set()

    async def send(self, event: AlertEvent) -> None:
        """Deliver ``event`` now over every channel that wants it, or queue it; never raise."""
        try:
            await self.dispatch(event)
        except Exception:  # noqa: BLE001 - an alert must never take the daemon down
            log.exception("alert %s %s: unexpected error", event.unit, event.event)

    async def dispatch(self, event: AlertEvent) -> dict[str, str]:
        """Like send(); return {channel key: "sent" | "queued" | "lost"}."""
        if not event.host:
            event = replace(event, host=self.host)
        self._track(event)
        wanted = [c for c in self._channels.values() if c.matches(event.unit, event.event)]
        log.info("alert %s %s: %s (%s)", event.unit, event.event, event.message,
                 ", ".join(c.key for c in wanted) or "no channel wants it")
        results = await asyncio.gather(*(self._send_one(c, event) for c in wanted))
        if self._wake is not None:
            self._wake.set()
        return {c.key: r for c, r in zip(wanted, results, strict=True)}

    async def _send_one(self, channel: Channel, event: AlertEvent) -> str:
        try:
            entry = self.queue.add(channel.key, event.to_json())
        except OSError as exc:
            log.error("alert for %s cannot be queued in %s (%s): sending without a retry",
                      channel.key, self.queue.directory, exc.strerror or exc)
            try:
                await deliver(channel, event, f"{time.time_ns()}-unqueued")
                return SENT
            except DeliveryError as err:
                log.error("alert %s %s to %s (%s) LOST: %s", event.unit, event.event,
                          channel.key, where(channel), err)
                return LOST
        delivered = await self._drain(channel, self.queue.pending(), due_only=False)
        return SENT if entry.id in delivered else QUEUED

    async def _drain(self, channel: Channel, entries: list[Entry], due_only: bool) -> set[str]:
        """Deliver ``channel``'s entries oldest first; stop at the first failure or, with
        ``due_only``, at the first not yet due (so alerts keep their order)."""
        delivered: set[str] = set()
        for entry in (e for e in entries if e.channel == channel.key):
            if due_only and entry.next_at > time.time():
                break
            claim = self.queue.claim(entry)
            if claim is None:
                continue  # another process holds or has delivered it
            event = AlertEvent.from_json(claim.entry.event)
            if claim.maybe_sent:
                event = replace(event, message=f"(possibly a repeat: sdwatch stopped while "
                                f"sending this) {event.message}")
            try:
                await deliver(channel, event, claim.entry.id)
            except DeliveryError as exc:
                delay = backoff(claim.entry.attempts + 1, self.settings.retry,
                                self.settings.retry_max)
                claim.retry(str(exc), time.time() + delay)
                log.warning("alert %s %s to %s (%s) failed: %s; queued, retry in %.0fs",
                            event.unit, event.event, channel.key, where(channel), exc, delay)
                break
            except BaseException:
                claim.abandon()
                raise
            claim.done()
            delivered.add(claim.entry.id)
            log.info("alert %s %s sent to %s%s", event.unit, event.event, channel.key,
                     f" after {claim.entry.attempts} failed attempts"
                     if claim.entry.attempts else "")
        return delivered

    async def run(self) -> None:
        """Retry the queue and send reminders until cancelled or close() is called."""
        self._wake = asyncio.Event()
        log.info("alert queue: %d pending in %s", len(self.queue.pending()),
                 self.queue.directory)
        first = True  # after a (re)start try everything once: the channel may be back
        while not self._closed:
            entries = self.queue.pending()
            for channel in self._channels.values():
                await self._drain(channel, entries, due_only=not first)
            first = False
            await self._remind(time.time())
            self._warn_orphans(entries)
            delay = self._next_wake(time.time())
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except TimeoutError:
                pass
            self._wake.clear()

    def _next_wake(self, now: float) -> float:
        times = [e.next_at for e in self.queue.pending() if e.channel in self._channels]
        if self.settings.reminder > 0:
            times += [s.last + self.settings.reminder for s in self._failing.values()]
        # poll at least every ``retry``: other processes (OnFailure hooks) queue entries too
        return max(0.05, min([now + self.settings.retry, *times]) - now)

    def _warn_orphans(self, entries: list[Entry]) -> None:
        for e in entries:
            if e.channel not in self._channels and e.id not in self._warned:
                self._warned.add(e.id)
                log.warning("alert queue entry %s is for channel %s, which is no longer "
                            "configured; kept in %s", e.id, e.channel, self.queue.directory)

    def _track(self, event: AlertEvent) -> None:
        if event.event == Event.RECOVERED:
            self._failing.pop(event.unit, None)
        elif event.event in FAILING_EVENTS:
            state = self._failing.setdefault(event.unit, _Failing(since=event.time))
            state.event, state.message, state.last = event.event, event.message, event.time

    async def _remind(self, now: float) -> None:
        if self.settings.reminder <= 0:
            return
        for unit, state in list(self._failing.items()):
            if now - state.last < self.settings.reminder:
                continue
            state.count += 1
            await self.send(AlertEvent(
                unit, state.event, f"still {state.event.replace('_', ' ')} since "
                f"{iso(state.since)}: {state.message}", now, self.host,
                {"reminder": state.count, "since": iso(state.since)}))

    def close(self) -> None:
        """Stop run() at its next wake-up; queued entries stay for the next start."""
        self._closed = True
        if self._wake is not None:
            self._wake.set()
