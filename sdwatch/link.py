"""systemd for an asyncio program: calls in one worker thread, signals read by the loop.

pystemd is blocking and a bus object must stay on one thread, so every call runs in a
single worker thread with a deadline (a hung systemd cannot block the loop).  Signals come
on their own connection, read from the loop through its fd.  Either connection is rebuilt
when it breaks (systemd re-executed, dbus restarted); after a rebuilt signal connection the
owner is told, to re-read what it may have missed.

systemd also sends every unit's signals to the call connection (its private socket does not
ask who wants them): the loop watches that connection's fd too and has the worker drop what
arrived, so memory stays flat however busy the machine is.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from typing import Awaitable, Callable, Iterable, TypeVar

from sdwatch.systemd import Events, Systemd, SystemdError, SystemdUnavailable, UnitError
from sdwatch.unitinfo import Change, UnitInfo

log = logging.getLogger("sdwatch")
CALL_TIMEOUT = 30.0  # a systemd call that takes longer is treated as failed
BATCH = 200  # units read per worker call: the loop runs between batches
T = TypeVar("T")


class Link:
    """Both connections to systemd of the daemon."""

    def __init__(self, on_change: Callable[[Change], None],
                 on_resync: Callable[[], Awaitable[None]]) -> None:
        self._on_change = on_change
        self._on_resync = on_resync
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sdwatch-bus")
        self._sd: Systemd | None = None
        self._events: Events | None = None
        self._fd = -1
        self._calls_fd = -1  # the call connection's fd, set by the worker
        self._reading_calls_fd = -1  # the fd the loop watches for unasked signals, or -1
        self._in_flight = 0
        self._draining: asyncio.Task | None = None
        self._watched: set[str] = set()
        self._closed = False
        self._reconnecting: asyncio.Task | None = None

    async def open(self) -> None:
        """Connect both; raise SystemdUnavailable if systemd cannot be reached."""
        await self.call(lambda sd: None)
        self._connect_events()

    async def call(self, fn: Callable[[Systemd], T]) -> T:
        """Run ``fn(systemd)`` in the bus thread with a deadline; reconnect once if needed.

        Raise SystemdUnavailable, UnitError, Refused (all SystemdError) or TimeoutError."""
        def attempt() -> T:
            try:
                return self._run(fn)
            except SystemdUnavailable:
                # systemd came back (re-executed) or the connection broke: one more try
                return self._run(fn)

        loop = asyncio.get_running_loop()
        self._in_flight += 1
        self._stop_reading_calls()
        try:
            return await asyncio.wait_for(loop.run_in_executor(self._pool, attempt),
                                          CALL_TIMEOUT)
        finally:
            self._in_flight -= 1
            self._read_calls()

    def _run(self, fn: Callable[[Systemd], T]) -> T:
        """In the worker: call on a live connection, then drop what systemd sent unasked."""
        if self._sd is None:
            self._calls_fd = -1
            self._sd = Systemd()
            self._calls_fd = self._sd.fileno()
        try:
            result = fn(self._sd)
            self._sd.drain()
            return result
        except SystemdUnavailable:
            self._sd.close()
            self._sd = None
            raise

    def _read_calls(self) -> None:
        """Watch the call connection's fd while no call is in flight."""
        if self._closed or self._in_flight or self._reading_calls_fd >= 0 or self._calls_fd < 0:
            return
        self._reading_calls_fd = self._calls_fd
        asyncio.get_running_loop().add_reader(self._reading_calls_fd, self._calls_readable)

    def _stop_reading_calls(self) -> None:
        # before every call: the worker may replace the connection (and its fd number)
        if self._reading_calls_fd >= 0:
            asyncio.get_running_loop().remove_reader(self._reading_calls_fd)
            self._reading_calls_fd = -1

    def _calls_readable(self) -> None:
        self._stop_reading_calls()
        if self._draining is None or self._draining.done():
            self._draining = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        try:
            await self.call(lambda sd: None)  # the worker drains after every call
        except (TimeoutError, SystemdError) as exc:
            log.debug("dropping unasked signals: %s", exc)

    async def read_units(self, names: Iterable[str], brief: bool = True,
                         ) -> dict[str, UnitInfo | UnitError]:
        """Read many units, BATCH per worker call so the loop (and the watchdog) keeps running.

        Raise SystemdUnavailable or TimeoutError when a batch could not be read at all."""
        names = list(names)
        out: dict[str, UnitInfo | UnitError] = {}
        for i in range(0, len(names), BATCH):
            chunk = names[i:i + BATCH]
            infos, paths = await self.call(
                lambda sd, c=chunk: (sd.units_info(c, brief, started=True), sd.paths(c)))
            out.update(infos)
            if self._events is not None:
                for name, path in paths.items():
                    if name in self._watched:
                        self._events.watch(name, path)  # an alias: its unit's object too
        return out

    async def watch(self, name: str) -> None:
        """Deliver the unit's PropertiesChanged signals to ``on_change``."""
        self.watch_many([name])

    def watch_many(self, names: Iterable[str]) -> None:
        """Deliver these units' PropertiesChanged signals to ``on_change``.

        Their object paths follow from their names: no call to systemd, so watching comes
        before reading and no change can fall in between.  (An alias is watched by its
        unit's path too once read_units saw it.)"""
        names = list(names)
        self._watched.update(names)
        if self._events is not None:
            for name in names:
                self._events.watch(name)

    def unwatch(self, name: str) -> None:
        """Stop delivering the unit's signals."""
        self._watched.discard(name)
        if self._events is not None:
            self._events.unwatch(name)

    def _connect_events(self) -> None:
        self._events = Events(self._on_change)
        self._fd = self._events.fileno()
        asyncio.get_running_loop().add_reader(self._fd, self._readable)

    def _close_events(self) -> None:
        if self._events is not None:
            asyncio.get_running_loop().remove_reader(self._fd)  # the fd the loop knows
            self._events.close()
            self._events = None

    def _readable(self) -> None:
        try:
            self._events.process()
        except SystemdUnavailable as exc:
            log.warning("%s; reconnecting", exc)
            self._close_events()
            self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        delay = 0.05
        while not self._closed:
            try:
                self._connect_events()
                self.watch_many(list(self._watched))
                break
            except SystemdUnavailable as exc:
                log.debug("reconnecting failed: %s", exc)
                self._close_events()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        if not self._closed:
            log.info("signal connection to systemd restored; re-reading unit states")
            await self._on_resync()  # catch what happened while we were deaf

    async def close(self) -> None:
        """Close both connections and the worker thread."""
        self._closed = True
        self._stop_reading_calls()
        for task in (self._reconnecting, self._draining):
            if task is not None:
                task.cancel()
        self._close_events()

        def close() -> None:
            if self._sd is not None:
                self._sd.close()
                self._sd = None

        await asyncio.get_running_loop().run_in_executor(self._pool, close)
        self._pool.shutdown(wait=False)

