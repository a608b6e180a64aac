"""Counting a test process's open fds and threads, for tests that prove nothing leaks."""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Callable


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def fd_baseline() -> dict[int, str]:
    """:func:`fd_table` after a garbage collection (see :func:`baseline`)."""
    gc.collect()
    return fd_table()


def fd_table() -> dict[int, str]:
    """Each open fd and what it points to; no collection, so an fd left for the garbage
    collector to close counts as open."""
    table = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            table[int(fd)] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # the directory's own fd, closed again by now
    return table


def opened_since(before: dict[int, str]) -> dict[int, str]:
    """The fds open now that were not open (to the same file) in ``before``.

    Unlike a count, this ignores an fd that something else closed meanwhile."""
    return {fd: what for fd, what in fd_table().items() if before.get(fd) != what}


def baseline() -> tuple[int, int]:
    """Open fds and threads now, after a garbage collection: a socket that an earlier test
    left in a reference cycle (an exception's traceback) would otherwise close in the middle
    of the count."""
    gc.collect()
    return open_fds(), threading.active_count()


def settled(count: Callable[[], int], expected: int, timeout: float = 5.0) -> int:
    """Return count() once it equals expected, or its last value after timeout."""
    deadline = time.monotonic() + timeout
    while (value := count()) != expected and time.monotonic() < deadline:
        time.sleep(0.01)  # polling a condition with a deadline
    return value
