"""systemd's facts about a unit as sdwatch's records, and which D-Bus properties carry them.

Pure, no bus: systemd.py (the only pystemd user) reads what ``props_to_read`` names and hands
the values here; out come small frozen records with ``str``/``int`` fields: :class:`UnitSummary`
(a ListUnits row), :class:`UnitInfo` (one read of a unit), :class:`Change` (one
PropertiesChanged signal).  systemd's "no value" for its uint64 accounting becomes None.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

_UNSET = (1 << 64) - 1  # systemd's "no value" for uint64 accounting properties


@dataclass(frozen=True)
class UnitSummary:
    """One row of ListUnits."""

    name: str
    description: str
    load_state: str
    active_state: str
    sub_state: str


@dataclass(frozen=True)
class UnitInfo:
    """What systemd knows about one unit.  Accounting fields are None when systemd has no value."""

    id: str
    description: str
    load_state: str
    active_state: str
    sub_state: str
    unit_file_state: str
    result: str
    main_pid: int
    control_group: str
    n_restarts: int
    active_enter_timestamp: int  # µs since the epoch, 0 if never active
    exec_main_start_timestamp: int  # µs since the epoch, 0 if never started
    memory_current: int | None
    tasks_current: int | None
    cpu_usage_nsec: int | None
    exec_main_code: int = 0  # how the main process ended: 1 exited, 2 killed, 3 dumped core
    exec_main_status: int = 0  # its exit status, or the signal number
    invocation_id: str = ""  # the journal's _SYSTEMD_INVOCATION_ID of the current/last run
    active_enter_monotonic: int = 0  # µs of CLOCK_MONOTONIC when it last became active, 0 never
    service_type: str = ""  # a service's Type= (a mount's file system type), "" unread or other

    @property
    def type(self) -> str:
        """The unit type: "service", "socket", ..."""
        return self.id.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class Change:
    """A unit's state as a PropertiesChanged signal told it (fields None when not in it)."""

    unit: str
    active_state: str | None = None
    sub_state: str | None = None
    result: str | None = None
    main_pid: int | None = None
    job: bool | None = None  # a job (start, stop, restart...) is queued for the unit now
    active_enter_monotonic: int | None = None  # µs of CLOCK_MONOTONIC it last became active


def brief_view(info: UnitInfo) -> UnitInfo:
    """Given any read of a unit, return what a brief read with its ListUnits row (as
    `sdwatch status` reads) shows of it: the fields ``_SKIPPED_WHEN_BRIEF`` names left blank,
    and of an inactive unit only its name and states."""
    if info.active_state == "inactive":
        return states_only(UnitSummary(info.id, info.description, info.load_state,
                                       info.active_state, info.sub_state))
    return UnitInfo(info.id, info.description, info.load_state, info.active_state,
                    info.sub_state, "", info.result, info.main_pid, info.control_group,
                    info.n_restarts, info.active_enter_timestamp, 0, None, None, None)


def states_only(row: UnitSummary) -> UnitInfo:
    """Given a ListUnits row, return the read of a unit known by nothing more."""
    return UnitInfo(row.name, row.description, row.load_state, row.active_state, row.sub_state,
                    "", "", 0, "", 0, 0, 0, None, None, None)


def text(value: Any) -> Any:
    """A string as the bus gives it (bytes) as ``str``; anything else unchanged."""
    return value.decode() if isinstance(value, bytes) else value


def _opt(value: int) -> int | None:
    return None if value == _UNSET else int(value)


def summary_from_row(row: Any) -> UnitSummary:
    """Given a row of ListUnits (or ListUnitsByPatterns/ByNames), return its summary."""
    return UnitSummary(text(row[0]), text(row[1]), text(row[2]), text(row[3]), text(row[4]))


def props_to_read(kind: str, brief: bool, started: bool, summary_known: bool,
                  ) -> tuple[tuple[tuple[str, bytes], ...], tuple[tuple[str, bytes], ...]]:
    """Given a unit's type and the read wanted (see systemd.Systemd.unit_info), return the
    (property, signature) pairs to read of the Unit interface and of the type's own one."""
    props = _UNIT_PROPS if not summary_known else _UNIT_PROPS[5:]
    wanted = set(_PROPS_BY_TYPE.get(kind, ()))
    if brief:
        skipped = _SKIPPED_WHEN_BRIEF - (_KEPT_WHEN_STARTED if started else set())
        props = tuple(p for p in props if p[0] not in skipped)
        wanted -= skipped
    return props, tuple((k, sig) for k, sig in _TYPE_PROPS if k in wanted)


def info_from_props(unit: Mapping[str, Any], svc: Mapping[str, Any]) -> UnitInfo:
    """Given the values read of a unit's Unit interface and of its type's (property names as
    keys, as the bus gives them; unread ones absent), return the unit's record."""
    return UnitInfo(
        id=text(unit["Id"]),
        description=text(unit["Description"]),
        load_state=text(unit["LoadState"]),
        active_state=text(unit["ActiveState"]),
        sub_state=text(unit["SubState"]),
        unit_file_state=text(unit.get("UnitFileState", b"")),
        result=text(svc.get("Result", b"")),
        main_pid=int(svc.get("MainPID", 0)),
        control_group=text(svc.get("ControlGroup", b"")),
        n_restarts=int(svc.get("NRestarts", 0)),
        active_enter_timestamp=int(unit.get("ActiveEnterTimestamp", 0)),
        exec_main_start_timestamp=int(svc.get("ExecMainStartTimestamp", 0)),
        memory_current=_opt(svc.get("MemoryCurrent", _UNSET)),
        tasks_current=_opt(svc.get("TasksCurrent", _UNSET)),
        cpu_usage_nsec=_opt(svc.get("CPUUsageNSec", _UNSET)),
        exec_main_code=int(svc.get("ExecMainCode", 0)),
        exec_main_status=int(svc.get("ExecMainStatus", 0)),
        invocation_id=bytes(unit.get("InvocationID", b"")).hex(),
        active_enter_monotonic=int(unit.get("ActiveEnterTimestampMonotonic", 0)),
        service_type=text(svc.get("Type", b"")),
    )


def change_from_signal(unit: str, changed: Mapping[bytes, Any]) -> Change:
    """Given a watched unit's name and the changed properties of its PropertiesChanged signal
    (names as bytes, as the bus gives them), return the change."""
    return Change(
        unit=unit,
        active_state=text(changed[b"ActiveState"]) if b"ActiveState" in changed else None,
        sub_state=text(changed[b"SubState"]) if b"SubState" in changed else None,
        result=text(changed[b"Result"]) if b"Result" in changed else None,
        main_pid=int(changed[b"MainPID"]) if b"MainPID" in changed else None,
        job=bool(changed[b"Job"][0]) if b"Job" in changed else None,
        active_enter_monotonic=(int(changed[_ACTIVE_ENTER])
                                if _ACTIVE_ENTER in changed else None),
    )


_ACTIVE_ENTER = b"ActiveEnterTimestampMonotonic"
_UNIT_PROPS = (("Id", b"s"), ("Description", b"s"), ("LoadState", b"s"), ("ActiveState", b"s"),
               ("SubState", b"s"), ("UnitFileState", b"s"), ("ActiveEnterTimestamp", b"t"),
               ("InvocationID", b"ay"), ("ActiveEnterTimestampMonotonic", b"t"))
_TYPE_PROPS = (("MainPID", b"u"), ("ControlGroup", b"s"), ("NRestarts", b"u"), ("Result", b"s"),
               ("ExecMainStartTimestamp", b"t"), ("MemoryCurrent", b"t"), ("TasksCurrent", b"t"),
               ("CPUUsageNSec", b"t"), ("ExecMainCode", b"i"), ("ExecMainStatus", b"i"),
               ("Type", b"s"))
# Type= changes only with the unit file: the daemon's reads keep it, the CLI's brief view not
_KEPT_WHEN_STARTED = {_ACTIVE_ENTER.decode(), "Type"}
_SKIPPED_WHEN_BRIEF = {"UnitFileState", "ActiveEnterTimestampMonotonic",
                       "ExecMainStartTimestamp", "MemoryCurrent", "TasksCurrent",
                       "CPUUsageNSec", "ExecMainCode", "ExecMainStatus", "InvocationID", "Type"}
_CGROUP = ("ControlGroup", "MemoryCurrent", "TasksCurrent", "CPUUsageNSec")
_PROPS_BY_TYPE: dict[str, tuple[str, ...]] = {
    "service": ("MainPID", "NRestarts", "Result", "ExecMainStartTimestamp", "ExecMainCode",
                "ExecMainStatus", "Type") + _CGROUP,
    "scope": ("Result",) + _CGROUP,
    "slice": _CGROUP,
    "socket": ("Result",) + _CGROUP,
    "mount": ("Result", "Type") + _CGROUP,  # node_exporter's type label: the file system
    "swap": ("Result",) + _CGROUP,
}
