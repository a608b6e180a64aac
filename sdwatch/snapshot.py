"""The daemon's snapshot: typed, frozen records of what it knows about each unit.

One contract for every reader: the daemon writes it to ``/run/sdwatch/status.json`` (schema
``sdwatch.daemon/1``, docs/status-json.md), ``sdwatch status`` reads it back with
:meth:`DaemonSnapshot.from_json`, and an in-process server takes the live object from
``Supervisor.snapshot()``.  Built in one place, :func:`build_unit`, from policy's state and the
daemon's last probe results and limit readings.  Times are seconds since the epoch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping

from sdwatch.states import Health

if TYPE_CHECKING:
    from sdwatch.policy import UnitState

SCHEMA = "sdwatch.daemon/1"

JSON = dict[str, object]
Metric = float | int | str  # as probes.errors.Metric


class SnapshotError(ValueError):
    """A snapshot's JSON is not what :meth:`DaemonSnapshot.to_json` writes."""


@dataclass(frozen=True)
class Failure:
    """The last failure of a unit or probe."""

    reason: str
    at: float | None

    def to_json(self) -> JSON:
        return {"reason": self.reason, "at": self.at}

    @classmethod
    def from_json(cls, data: object) -> Failure | None:
        if data is None:
            return None
        d = _obj(data, "last_failure")
        return cls(_str(d, "reason"), _num(d, "at"))


@dataclass(frozen=True)
class ProbeRun:
    """One finished probe attempt as the daemon keeps it: the last result of a probe."""

    ok: bool
    outcome: str  # probes.errors.Outcome value
    reason: str
    duration: float
    at: float
    metrics: Mapping[str, Metric] = field(default_factory=dict)
    last_failure: Failure | None = None  # the latest failed run, this one or an earlier one
    streak: int = 1  # runs in a row, ending with this one, with this one's ``ok``


@dataclass(frozen=True)
class LimitRun:
    """One resource reading against its limit, as the daemon keeps it."""

    value: float
    over: bool
    reason: str
    at: float


@dataclass(frozen=True)
class ProbeView:
    """A probe: its last result (None fields before the first run) and policy's window."""

    name: str
    ok: bool | None = None
    outcome: str | None = None
    reason: str = ""
    duration: float | None = None
    at: float | None = None
    metrics: Mapping[str, Metric] = field(default_factory=dict)
    last_failure: Failure | None = None
    failing: bool = False  # policy's verdict
    consecutive_failures: int = 0
    consecutive_successes: int = 0  # passes in a row, the last one included
    recent_failures: int = 0  # failed attempts counted in the current window

    def to_json(self) -> JSON:
        return {"ok": self.ok, "outcome": self.outcome, "reason": self.reason,
                "duration": self.duration, "at": self.at, "metrics": dict(self.metrics),
                "last_failure": self.last_failure.to_json() if self.last_failure else None,
                "failing": self.failing, "consecutive_failures": self.consecutive_failures,
                "consecutive_successes": self.consecutive_successes,
                "recent_failures": self.recent_failures}

    @classmethod
    def from_json(cls, name: str, data: object) -> ProbeView:
        d = _obj(data, f"probe {name}")
        ok = d.get("ok")
        metrics = _obj(d.get("metrics") or {}, "metrics")
        return cls(name, ok if isinstance(ok, bool) else None, _opt_str(d, "outcome"),
                   _str(d, "reason"), _num(d, "duration"), _num(d, "at"),
                   {str(k): v for k, v in metrics.items()
                    if isinstance(v, (int, float, str)) and not isinstance(v, bool)},
                   Failure.from_json(d.get("last_failure")), d.get("failing") is True,
                   _int(d, "consecutive_failures"), _int(d, "consecutive_successes"),
                   _int(d, "recent_failures"))


@dataclass(frozen=True)
class LimitView:
    """A resource limit: the last reading and policy's count of cycles over it."""

    resource: str  # one of states.RESOURCES
    value: float | None = None  # in the limit's terms (see resources.evaluate)
    over: bool | None = None  # the last reading was over the limit
    reason: str = ""
    at: float | None = None
    over_for: int = 0  # consecutive readings over the limit
    tripped: bool = False  # acted on, not yet back under

    def to_json(self) -> JSON:
        return {"value": self.value, "over": self.over, "reason": self.reason, "at": self.at,
                "over_for": self.over_for, "tripped": self.tripped}

    @classmethod
    def from_json(cls, resource: str, data: object) -> LimitView:
        d = _obj(data, f"limit {resource}")
        over = d.get("over")
        return cls(resource, _num(d, "value"), over if isinstance(over, bool) else None,
                   _str(d, "reason"), _num(d, "at"), _int(d, "over_for"),
                   d.get("tripped") is True)


@dataclass(frozen=True)
class UnitView:
    """What the daemon knows of one unit: policy's verdict and state, probes, limits."""

    name: str
    health: Health
    active_state: str = ""  # "" until systemd was first heard
    sub_state: str = ""
    result: str = ""
    probes: tuple[ProbeView, ...] = ()
    limits: tuple[LimitView, ...] = ()
    last_failure: Failure | None = None
    restarts_by_sdwatch: int = 0
    recent_restarts: tuple[float, ...] = ()
    restart_pending: bool = False
    gave_up: bool = False
    gave_up_at: float | None = None
    unmonitored: bool = False
    grace_until: float | None = None
    unreadable: str = ""  # why systemd's view of the unit could not be read ("" if it was)

    def probe(self, name: str) -> ProbeView | None:
        """Return the probe called ``name``, or None."""
        return next((p for p in self.probes if p.name == name), None)

    def to_json(self) -> JSON:
        return {
            "health": self.health.value,
            "systemd": {"active_state": self.active_state, "sub_state": self.sub_state,
                        "result": self.result},
            "probes": {p.name: p.to_json() for p in self.probes},
            "limits": {lim.resource: lim.to_json() for lim in self.limits},
            "last_failure": self.last_failure.to_json() if self.last_failure else None,
            "restarts_by_sdwatch": self.restarts_by_sdwatch,
            "recent_restarts": list(self.recent_restarts),
            "restart_pending": self.restart_pending,
            "gave_up": self.gave_up,
            "gave_up_at": self.gave_up_at,
            "unmonitored": self.unmonitored,
            "grace_until": self.grace_until,
            **({"unreadable": self.unreadable} if self.unreadable else {}),
        }

    @classmethod
    def from_json(cls, name: str, data: object) -> UnitView:
        d = _obj(data, f"unit {name}")
        try:
            health = Health(d.get("health"))
        except ValueError:
            health = Health.UNKNOWN
        sd = _obj(d.get("systemd") or {}, "systemd")
        restarts = d.get("recent_restarts") or []
        if not isinstance(restarts, list):
            raise SnapshotError(f"unit {name}: recent_restarts is not a list")
        return cls(
            name, health, _str(sd, "active_state"), _str(sd, "sub_state"), _str(sd, "result"),
            tuple(ProbeView.from_json(str(k), v)
                  for k, v in _obj(d.get("probes") or {}, "probes").items()),
            tuple(LimitView.from_json(str(k), v)
                  for k, v in _obj(d.get("limits") or {}, "limits").items()),
            Failure.from_json(d.get("last_failure")), _int(d, "restarts_by_sdwatch"),
            tuple(float(t) for t in restarts if _finite(t)), d.get("restart_pending") is True,
            d.get("gave_up") is True, _num(d, "gave_up_at"), d.get("unmonitored") is True,
            _num(d, "grace_until"), _str(d, "unreadable"))


@dataclass(frozen=True)
class SchedulerView:
    """How well the daemon keeps its schedules: runs so far, recent start lateness in ms."""

    runs: int = 0
    late_p50_ms: float | None = None
    late_p99_ms: float | None = None

    def to_json(self) -> JSON:
        return {"runs": self.runs, "late_p50_ms": self.late_p50_ms,
                "late_p99_ms": self.late_p99_ms}


@dataclass(frozen=True)
class DaemonSnapshot:
    """Everything ``sdwatch run`` knows at ``updated_at``."""

    pid: int
    pid_start: int | None  # with pid, the identity of the process (resources.process_start)
    started_at: float
    updated_at: float
    status: str  # the one-line STATUS= it tells systemd
    units: tuple[UnitView, ...] = ()
    config_files: tuple[str, ...] = ()
    scheduler: SchedulerView = SchedulerView()

    def unit(self, name: str) -> UnitView | None:
        """Return the unit called ``name``, or None if the daemon does not watch it."""
        return next((u for u in self.units if u.name == name), None)

    def to_json(self) -> JSON:
        """Return the documented JSON form (``sdwatch.daemon/1``)."""
        return {"schema": SCHEMA, "pid": self.pid, "pid_start": self.pid_start,
                "started_at": self.started_at, "updated_at": self.updated_at,
                "config_files": list(self.config_files), "status": self.status,
                "units": {u.name: u.to_json() for u in self.units},
                "scheduler": self.scheduler.to_json()}

    @classmethod
    def from_json(cls, data: object) -> DaemonSnapshot:
        """Given what to_json returned (fields may be missing), return the snapshot; raise
        SnapshotError if a field has the wrong type or the schema is another one."""
        d = _obj(data, "snapshot")
        if d.get("schema", SCHEMA) != SCHEMA:
            raise SnapshotError(f"schema {d.get('schema')!r}, not {SCHEMA}")
        pid, pid_start = d.get("pid"), d.get("pid_start")
        if not isinstance(pid, int) or not (pid_start is None or isinstance(pid_start, int)):
            raise SnapshotError("pid or pid_start is not an integer")
        sched = _obj(d.get("scheduler") or {}, "scheduler")
        files = d.get("config_files") or []
        if not isinstance(files, list):
            raise SnapshotError("config_files is not a list")
        return cls(pid, pid_start, _num(d, "started_at") or 0.0, _num(d, "updated_at") or 0.0,
                   _str(d, "status"),
                   tuple(UnitView.from_json(str(k), v)
                         for k, v in _obj(d.get("units") or {}, "units").items()),
                   tuple(str(f) for f in files),
                   SchedulerView(_int(sched, "runs"), _num(sched, "late_p50_ms"),
                                 _num(sched, "late_p99_ms")))


def build_unit(name: str, health: Health, state: UnitState, runs: Mapping[str, ProbeRun],
               limits: Mapping[str, LimitRun], unreadable: str = "") -> UnitView:
    """Given a unit's verdict, policy state, last probe runs and limit readings, return its
    view: the one place where a UnitView is made from the daemon's parts."""
    probes = []
    for p in state.probes:
        run = runs.get(p.name)
        probes.append(ProbeView(
            p.name, run.ok if run else None, run.outcome if run else None,
            run.reason if run else "", run.duration if run else None,
            run.at if run else None, run.metrics if run else {},
            run.last_failure if run else None, p.failing, p.failures,
            run.streak if run and run.ok else 0, sum(p.history)))
    views = []
    for lim in state.limits:
        reading = limits.get(lim.resource)
        views.append(LimitView(
            lim.resource, reading.value if reading else lim.value,
            reading.over if reading else None, reading.reason if reading else lim.reason,
            reading.at if reading else None, lim.over_for, lim.tripped))
    return UnitView(
        name, health, state.active_state, state.sub_state, state.result, tuple(probes),
        tuple(views),
        Failure(state.last_failure, state.last_failure_at)
        if state.last_failure_at is not None else None,
        state.total_restarts, state.restarts, state.pending_until is not None, state.gave_up,
        state.gave_up_at, state.unmonitored, state.grace_until, unreadable)


# -- reading JSON back: wrong types are errors, missing fields take their defaults ----------


def _obj(value: object, what: str) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise SnapshotError(f"{what} is not an object")
    return value


def _finite(value: object) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _num(d: Mapping[str, object], key: str) -> float | None:
    value = d.get(key)
    if value is None:
        return None
    if not _finite(value):
        raise SnapshotError(f"{key} is not a number")
    return float(value)  # type: ignore[arg-type]  # _finite checked it


def _int(d: Mapping[str, object], key: str) -> int:
    value = d.get(key, 0)
    if not isinstance(value, int) or isinstance(value, bool):
        raise SnapshotError(f"{key} is not an integer")
    return value


def _str(d: Mapping[str, object], key: str) -> str:
    value = d.get(key, "")
    if not isinstance(value, str):
        raise SnapshotError(f"{key} is not a string")
    return value


def _opt_str(d: Mapping[str, object], key: str) -> str | None:
    return None if d.get(key) is None else _str(d, key)
