"""systemd for an asyncio program: calls in one worker thread, signals read by the loop.

pystemd is blocking and a bus object must stay on one thread, so every call runs in a
single worker thread with a deadline (a hung systemd cannot block the loop).  Signals come
on their own connection, read from the loop through its fd.  Either connection is rebuilt
when it breaks (systemd re-executed, dbus restarted); after a rebuilt signal connection the
owner is told, to re-read what it may have missed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from typing import Any, Awaitable, Callable

from sdwatch.systemd import Change, Events, Systemd, SystemdUnavailable, UnitError

log = logging.getLogger("sdwatch")
CALL_TIMEOUT = 30.0  # a systemd call that takes longer is treated as failed


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
        self._watched: set[str] = set()
        self._closed = False
        self._reconnecting: asyncio.Task | None = None

    async def open(self) -> None:
        """Connect both; raise SystemdUnavailable if systemd cannot be reached."""
        await self.call(lambda sd: None)
        self._connect_events()

    async def call(self, fn: Callable[[Systemd], Any]) -> Any:
        """Run ``fn(systemd)`` in the bus thread with a deadline; reconnect once if needed.

        Raise SystemdUnavailable, UnitError or TimeoutError."""
        def attempt() -> Any:
            if self._sd is None:
                self._sd = Systemd()
            try:
                return fn(self._sd)
            except SystemdUnavailable:
                self._sd.close()
                self._sd = Systemd()  # systemd came back (re-executed): one more try
                return fn(self._sd)

        loop = asyncio.get_running_loop()
        return await asyncio.wait_for(loop.run_in_executor(self._pool, attempt), CALL_TIMEOUT)

    async def watch(self, name: str) -> None:
        """Deliver the unit's PropertiesChanged signals to ``on_change``."""
        self._watched.add(name)
        path = await self.call(lambda sd: sd.unit_path(name))
        if self._events is not None:
            self._events.watch(name, path)

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
                for name in list(self._watched):
                    await self.watch(name)
                break
            except (TimeoutError, SystemdUnavailable, UnitError) as exc:
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
        if self._reconnecting is not None:
            self._reconnecting.cancel()
        self._close_events()
        await self.call(lambda sd: sd.close())
        self._pool.shutdown(wait=False)
