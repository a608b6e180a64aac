"""Probe results and the runner that owns deadline and timing.

Probes raise only the errors of :mod:`sdwatch.probes.errors` (the tree is drawn
there); :func:`run` maps each to an :class:`Outcome`.

A probe makes exactly one attempt, never sleeps or retries, and cleans up with
``async with``/``finally`` so that cancellation at the deadline leaves no fd or thread.
Any other exception from a probe is a bug in the probe or a surprise from the peer; the
runner reports it as outcome protocol with its type and message instead of crashing.
"""

from __future__ import annotations

import heapq
import itertools
import math
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Mapping

from sdwatch.probes.errors import (
    _ATTEMPT,
    Metric,
    Outcome,
    ProbeError,
    ProbeTimeout,
    ProtocolError,
)
from sdwatch.quantities import format_duration

if TYPE_CHECKING:  # imported where used: status checks a config without asyncio
    import asyncio

Probe = Callable[[Any], Awaitable[Mapping[str, Metric]]]  # a kind's probe(spec) -> metrics


@dataclass(frozen=True)
class ProbeResult:
    """One attempt: ok, its outcome, seconds taken, a short human reason, kind-specific metrics."""

    ok: bool
    outcome: Outcome
    duration: float
    reason: str
    metrics: Mapping[str, Metric] = field(default_factory=dict)


@dataclass
class Attempt:
    """What the running probe is doing (for the timeout reason), when its deadline is, and
    the task it runs in while it runs (None once it ended)."""

    stage: str = "connecting"
    deadline: float | None = None  # loop.time() value
    task: asyncio.Task | None = None
    expired: bool = False  # the deadline passed while it ran: its task was cancelled


async def run(kind: str, spec: object, timeout: float) -> ProbeResult:
    """Given a kind, its Spec and a timeout in seconds, run one attempt and return its result.

    Never raises (cancellation by the caller still propagates, as it must in asyncio).
    """
    import asyncio

    loop = asyncio.get_running_loop()
    start = loop.time()
    probe = _PROBES.get(kind) or _find(kind)
    if probe is None:
        return ProbeResult(False, Outcome.UNKNOWN, 0.0, f"no probe kind {kind!r}")
    task = asyncio.current_task(loop)
    if task is None:
        raise RuntimeError("a probe runs inside a task")
    attempt = Attempt(deadline=start + timeout, task=task)
    cancelling = task.cancelling()
    token = _ATTEMPT.set(attempt)
    _deadlines(loop).add(loop, attempt)
    try:
        metrics = await probe(spec)
    except BaseException as exc:  # noqa: BLE001 - sorted out by _error
        error = _error(exc, attempt, timeout, cancelling)
    else:
        if not attempt.expired:
            return ProbeResult(True, Outcome.OK, loop.time() - start, "ok", dict(metrics))
        # the deadline passed as it returned: its cancellation must not hit the caller
        error = _error(asyncio.CancelledError(), attempt, timeout, cancelling)
    finally:
        attempt.task = None
        _ATTEMPT.reset(token)
    return ProbeResult(False, error.outcome, loop.time() - start, error.reason, error.metrics)


def _error(exc: BaseException, attempt: Attempt, timeout: float,
           cancelling: int) -> ProbeError:
    """The ProbeError an attempt ended with; re-raise a cancellation that is not its deadline's."""
    import asyncio
    if attempt.expired and attempt.task is not None:
        # ours, unless the caller cancelled too (as asyncio.timeout decides)
        if attempt.task.uncancel() <= cancelling and isinstance(
                exc, (asyncio.CancelledError, TimeoutError)):
            return ProbeTimeout(f"timeout after {format_duration(timeout)} {attempt.stage}")
    if isinstance(exc, TimeoutError):  # a timeout inside the probe (e.g. a socket's)
        return ProbeTimeout(f"timeout {attempt.stage}: {exc or 'timed out'}")
    if isinstance(exc, ProbeError):
        return exc
    if not isinstance(exc, Exception):
        raise exc  # cancellation by the caller, KeyboardInterrupt, SystemExit
    return ProtocolError(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


class _Deadlines:
    """A loop's running attempts by deadline, behind one timer at the earliest: asyncio's
    timeout makes a timer of its own per attempt, which costs more than a NOOP over a kept
    connection.  Attempts that ended stay in the heap until their deadline's timer, or an
    earlier one, drops them: most never arm a timer of their own."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Attempt]] = []
        self._order = itertools.count()  # ties: never compare two Attempts
        self._armed = math.inf  # when the earliest pending timer fires

    def add(self, loop: asyncio.AbstractEventLoop, attempt: Attempt) -> None:
        assert attempt.deadline is not None
        heapq.heappush(self._heap, (attempt.deadline, next(self._order), attempt))
        if attempt.deadline < self._armed:
            self._arm(loop, attempt.deadline)

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        self._armed = when
        loop.call_at(when, self._expire, loop, when)

    def _expire(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if when == self._armed:
            self._armed = math.inf
        now, heap = max(loop.time(), when), self._heap
        while heap and (heap[0][0] <= now or heap[0][2].task is None):
            attempt = heapq.heappop(heap)[2]
            if attempt.task is not None and not attempt.expired:
                attempt.expired = True
                attempt.task.cancel()
        if heap and heap[0][0] < self._armed:
            self._arm(loop, heap[0][0])


_LOOPS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Deadlines] = (
    weakref.WeakKeyDictionary())


def _deadlines(loop: asyncio.AbstractEventLoop) -> _Deadlines:
    found = _LOOPS.get(loop)
    if found is None:
        found = _LOOPS[loop] = _Deadlines()
    return found


_PROBES: dict[str, Probe] = {}  # kind -> its probe function, once looked up


def _find(kind: str) -> Probe | None:
    from sdwatch.probes import REGISTRY  # (imports this module)

    entry = REGISTRY.get(kind)
    if entry is None:
        return None
    _PROBES[kind] = entry.probe
    return entry.probe
