"""sd_notify for sdwatch's own liveness: READY, WATCHDOG, STATUS, RELOADING, STOPPING.

A thin wrapper over the sdnotify package that does nothing when not started by systemd
(no $NOTIFY_SOCKET) and knows the watchdog interval systemd asked for.
"""

from __future__ import annotations

import os


class Notifier:
    """Send state to systemd's notify socket, if there is one."""

    def __init__(self) -> None:
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        self._sock = None
        if self.enabled:
            import sdnotify

            self._sock = sdnotify.SystemdNotifier()

    def _send(self, text: str) -> None:
        if self._sock is not None:
            self._sock.notify(text)

    def ready(self, status: str = "") -> None:
        """The config is loaded and sdwatch watches: READY=1."""
        self._send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def reloading(self) -> None:
        """A reload has started; ``ready()`` ends it."""
        self._send("RELOADING=1")

    def stopping(self) -> None:
        """sdwatch is shutting down."""
        self._send("STOPPING=1")

    def status(self, text: str) -> None:
        """One line shown by ``systemctl status sdwatch``."""
        self._send(f"STATUS={text}")

    def watchdog(self) -> None:
        """Tell systemd's watchdog that the scheduler keeps its schedule."""
        self._send("WATCHDOG=1")


def watchdog_interval() -> float | None:
    """Seconds between watchdog pings systemd expects (half of WatchdogSec), or None if off.

    Like sd_watchdog_enabled(): only when WATCHDOG_PID is unset or names this process.
    """
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 1e6 / 2
    except ValueError:
        return None
