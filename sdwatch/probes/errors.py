"""The errors a probe raises, its metric type, and how it tells the runner what it waits on.

Error tree (every probe raises only these; the runner, :func:`sdwatch.probes.base.run`, maps
each to an :class:`Outcome`)::

    ProbeError                  base; never raised itself          -> protocol
    ├── ConnectError            refused, unreachable, no such socket -> connect
    ├── ProtocolError           garbage, wrong protocol, closed early,
    │                           oversized reply                    -> protocol
    ├── CheckFailed             the server answered properly but the
    │   │                       check failed (HTTP 503, regex miss,
    │   │                       Nagios 2, file too old, stats limit) -> failed
    │   ├── CheckWarning        Nagios exit 1                       -> warning
    │   └── CheckUnknown        Nagios exit 3 or other              -> unknown
    └── ProbeTimeout            produced by the runner when the
                                caller's deadline passes            -> timeout

Probe modules import only this module, not the runner: checking a config imports each
kind's Spec without the runner's records.
"""

from __future__ import annotations

import contextvars
import enum
from typing import TYPE_CHECKING, Mapping, Union

if TYPE_CHECKING:
    from sdwatch.probes.base import Attempt  # the runner's; probes only set its stage

Metric = Union[float, int, str]


class Outcome(str, enum.Enum):
    """How one probe attempt ended; ``ok`` is the only healthy one."""

    OK = "ok"
    CONNECT = "connect"
    TIMEOUT = "timeout"
    PROTOCOL = "protocol"
    FAILED = "failed"
    WARNING = "warning"
    UNKNOWN = "unknown"


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
    """The caller's deadline passed; produced by the runner (:func:`sdwatch.probes.base.run`),
    not by probes."""

    outcome = Outcome.TIMEOUT


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
