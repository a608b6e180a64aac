"""The messages between the daemon and policy: what it observes, what policy decides.

``policy.step`` takes one ``Observation`` and returns ``Do`` actions; the daemon carries them
out in order and reports each systemd call back as ``ActionFinished``.  Frozen records only, no
logic: the API reads ``COMMANDS`` here without importing policy and its config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from sdwatch.states import Event


@dataclass(frozen=True)
class ProbeObserved:
    probe: str
    ok: bool
    reason: str


@dataclass(frozen=True)
class LimitObserved:
    resource: str  # one of RESOURCES
    over: bool
    value: float
    reason: str


@dataclass(frozen=True)
class SystemdObserved:
    """systemd's facts about the unit.  ``since``: when it last became active, on the policy's
    clock (None: not known, taken as the time of the observation).  ``stop_job``: a job was
    queued for the unit since it was last seen up without one, so its going down was asked for.
    """

    active_state: str
    sub_state: str
    result: str
    since: float | None = None
    stop_job: bool = False


@dataclass(frozen=True)
class Tick:
    """Sent every cycle so that timers (re-arm, pending restart) fire without other input."""


@dataclass(frozen=True)
class Requested:
    """An administrator's command: "restart" now, "monitor" (re-arm: ends gave-up and
    unmonitored) or "unmonitor"."""

    command: str  # one of COMMANDS


@dataclass(frozen=True)
class Restart:
    """Restart through systemd.  ``kill_first``: SIGKILL the cgroup before; ``stop_budget``:
    SIGKILL it if the stop has not completed after that many seconds (None: wait for systemd).
    """

    kill_first: bool
    reason: str
    stop_budget: float | None = None


@dataclass(frozen=True)
class Start:
    reason: str


@dataclass(frozen=True)
class Stop:
    reason: str


@dataclass(frozen=True)
class ResetFailed:
    pass


@dataclass(frozen=True)
class Alert:
    event: Event
    message: str


@dataclass(frozen=True)
class Unmonitor:
    reason: str


Do = Union[Restart, Start, Stop, ResetFailed, Alert, Unmonitor]


@dataclass(frozen=True)
class ActionFinished:
    action: Do
    ok: bool
    error: str = ""


Observation = Union[ProbeObserved, LimitObserved, SystemdObserved, ActionFinished, Tick,
                    Requested]
COMMANDS = ("restart", "monitor", "unmonitor")
