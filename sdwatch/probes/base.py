"""Probe results, the probe error tree, and the runner that owns deadline and timing.

Error tree (every probe raises only these; :func:`run` maps each to an :class:`Outcome`)::

    ProbeError                  base; never raised itself          -> protocol
    ├── ConnectError            refused, unreachable, no such socket -> connect
    ├── ProtocolError           garbage, wrong protocol, closed early,
    │                           oversized reply                    -> protocol
    ├── CheckFailed             the server answered properly but the
    │   │                       check failed (HTTP 503, regex miss,
    │   │                       Nagios 2, file too old, stats limit) -> failed
    │   ├── CheckWarning        Nagios exit 1                       -> warning
    │   └── CheckUnknown        Nagios exit 3 or other              -> unknown
    └── ProbeTimeout            produced by :func:`run` when the
                                caller's deadline passes            -> timeout

A probe makes exactly one attempt, never sleeps or retries, and cleans up with
``async with``/``finally`` so that cancellation at the deadline leaves no fd or thread.
Any other exception from a probe is a bug in the probe or a surprise from the peer; the
runner reports it as outcome protocol with its type and message instead of crashing.
"""

from __future__ import annotations

import contextvars
import enum
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping, Union

from sdwatch.quantities import format_duration

Metric = Union[float, int, str]
Probe = Callable[[Any], Awaitable[Mapping[str, Metric]]]  # a kind's probe(spec) -> metrics


class Outcome(str, enum.Enum):
    """How one probe attempt ended; ``ok`` is the only healthy one."""

    OK = "ok"
    CONNECT = "connect"
    TIMEOUT = "timeout"
    PROTOCOL = "protocol"
    FAILED = "failed"
    WARNING = "warning"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class ProbeResult:
    """One attempt: ok, its outcome, seconds taken, a short human reason, kind-specific metrics."""

    ok: bool
    outcome: Outcome
    duration: float
    reason: str
    metrics: Mapping[str, Metric] = field(default_factory=dict)


class ProbeError(Exception):
    """Base of the tree; ``metrics`` carries whatever was measured before the failure."""

    outcome = Outcome.PROTOCOL

    def __init__(self, reason: str, metrics: Mapping[str, Metric] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.metrics = dict(metrics or {})


class ConnectError(ProbeError):
    """Could not connect: refused, unreachable, no such socket, DNS failure."""

    outcome = Outcome.CONNECT


class ProtocolError(ProbeError):
    """The peer spoke garbage or another protocol, closed early, or sent too much."""

    outcome = Outcome.PROTOCOL


class CheckFailed(ProbeError):
    """The peer answered properly, but the answer fails the check."""

    outcome = Outcome.FAILED


class CheckWarning(CheckFailed):
    """Nagios warning (exit 1)."""

    outcome = Outcome.WARNING


class CheckUnknown(CheckFailed):
    """Nagios unknown (exit 3 or any other status)."""

    outcome = Outcome.UNKNOWN


class ProbeTimeout(ProbeError):
    """The caller's deadline passed; produced by :func:`run`, not by probes."""

    outcome = Outcome.TIMEOUT


@dataclass
class Attempt:
    """What the running probe is doing (for the timeout reason) and when its deadline is."""

    stage: str = "connecting"
    deadline: float | None = None  # loop.time() value


_ATTEMPT: contextvars.ContextVar[Attempt | None] = contextvars.ContextVar(
    "sdwatch_probe_attempt", default=None
)


def stage(text: str) -> None:
    """Given a short phrase ("reading greeting"), record it as what the probe waits on now."""
    attempt = _ATTEMPT.get()
    if attempt is not None:
        attempt.stage = text


def remaining(default: float = 30.0) -> float:
    """Return seconds left before the runner's deadline, or ``default`` outside the runner."""
    import asyncio
    attempt = _ATTEMPT.get()
    if attempt is None or attempt.deadline is None:
        return default
    return max(0.0, attempt.deadline - asyncio.get_running_loop().time())


async def run(kind: str, spec: object, timeout: float) -> ProbeResult:
    """Given a kind, its Spec and a timeout in seconds, run one attempt and return its result.

    Never raises (cancellation by the caller still propagates, as it must in asyncio).
    """
    import asyncio

    start = time.monotonic()
    probe = _PROBES.get(kind) or _find(kind)
    if probe is None:
        return ProbeResult(False, Outcome.UNKNOWN, 0.0, f"no probe kind {kind!r}")
    attempt = Attempt(deadline=asyncio.get_running_loop().time() + timeout)
    token = _ATTEMPT.set(attempt)
    deadline = asyncio.timeout(timeout)
    try:
        async with deadline:
            metrics = await probe(spec)
    except TimeoutError as exc:
        # Ours when the deadline expired; otherwise a timeout inside the probe (e.g. a socket's).
        error: ProbeError = ProbeTimeout(
            f"timeout after {format_duration(timeout)} {attempt.stage}"
            if deadline.expired() else f"timeout {attempt.stage}: {exc or 'timed out'}"
        )
    except ProbeError as exc:
        error = exc
    except Exception as exc:  # noqa: BLE001 - a probe bug must not stop the daemon
        error = ProtocolError(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    else:
        return ProbeResult(True, Outcome.OK, time.monotonic() - start, "ok", dict(metrics))
    finally:
        _ATTEMPT.reset(token)
    return ProbeResult(False, error.outcome, time.monotonic() - start, error.reason, error.metrics)


_PROBES: dict[str, Probe] = {}  # kind -> its probe function, once looked up


def _find(kind: str) -> Probe | None:
    from sdwatch.probes import REGISTRY  # (imports this module)

    entry = REGISTRY.get(kind)
    if entry is None:
        return None
    _PROBES[kind] = entry.probe
    return entry.probe
