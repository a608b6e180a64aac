"""The one adapter between sdwatch and systemd's D-Bus API (pystemd).

Everything leaving this module is ``str``/``int`` in small frozen dataclasses; pystemd's bytes,
signatures and errors stay inside.  One :class:`Systemd` holds one long-lived bus connection for
method calls; signals use a separate connection (:class:`Events`), because synchronous calls on
a connection strand the signals queued on it.

Errors: :class:`SystemdUnavailable` when the bus cannot be reached at all (its text is one line
saying what is wrong and what to do), :class:`UnitError` when systemd refuses a call on a unit.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import types
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from sdwatch.states import unit_name_problem

DEST = b"org.freedesktop.systemd1"
MANAGER_PATH = b"/org/freedesktop/systemd1"
MANAGER_IFACE = b"org.freedesktop.systemd1.Manager"
UNIT_IFACE = b"org.freedesktop.systemd1.Unit"
PROPS_IFACE = b"org.freedesktop.DBus.Properties"
_UNSET = (1 << 64) - 1  # systemd's "no value" for uint64 accounting properties

class SystemdUnavailable(Exception):
    """systemd's D-Bus API cannot be reached; ``str()`` is one explanatory line."""


class UnitError(Exception):
    """systemd refused an operation on a unit (no such unit, bad state, permission)."""


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

    @property
    def type(self) -> str:
        """The unit type: "service", "socket", ..."""
        return self.id.rsplit(".", 1)[-1]


def _dbuslib() -> types.ModuleType:
    """Import pystemd.dbuslib without pystemd/__init__.py, which imports lxml (~40 ms).

    sdwatch only needs the low-level bus; the introspecting wrappers are never used.
    """
    if "pystemd" not in sys.modules:
        spec = importlib.util.find_spec("pystemd")
        if spec is None or not spec.submodule_search_locations:
            raise SystemdUnavailable("pystemd is not installed (python3-pystemd or pip pystemd)")
        pkg = types.ModuleType("pystemd")
        pkg.__path__ = list(spec.submodule_search_locations)
        pkg.__spec__ = spec
        sys.modules["pystemd"] = pkg
    import pystemd.dbuslib

    return pystemd.dbuslib


def _str(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def _opt(value: int) -> int | None:
    return None if value == _UNSET else int(value)


def _why_unreachable(exc: Exception) -> str:
    """Turn a bus failure into one line that says what is wrong and what to do."""
    try:
        with open("/proc/1/comm") as f:
            init = f.read().strip()
    except OSError:
        init = "unknown"
    if init != "systemd" or not os.path.isdir("/run/systemd/system"):
        return (f"systemd is not PID 1 here (PID 1 is '{init}'); sdwatch needs a systemd host "
                f"(or run it inside one, e.g. tests/harness/sdtest)")
    address = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/run/dbus/system_bus_socket")
    return (f"cannot reach systemd over the system bus at {address} ({exc}); "
            "is dbus running? try 'systemctl status dbus'")


def _open_bus(lib: types.ModuleType) -> Any:
    """Open a connection to systemd: its private socket when we are root (as systemctl does:
    no dbus-daemon hop, ~2.5x faster per call), otherwise the system bus."""
    private = "/run/systemd/private"
    explicit = "DBUS_SYSTEM_BUS_ADDRESS" in os.environ
    if not explicit and os.geteuid() == 0 and os.path.exists(private):
        bus = lib.DBusAddress(f"unix:path={private}".encode(), True)
    else:
        bus = lib.DBus()
    try:
        bus.open()
    except Exception as exc:
        raise SystemdUnavailable(_why_unreachable(exc)) from None
    return bus


class Systemd:
    """A connection to systemd for method calls and property reads.  Not for signals."""

    def __init__(self) -> None:
        lib = _dbuslib()
        self._lib = lib
        self._apply = lib.apply_signature
        self._bus = _open_bus(lib)
        self._paths: dict[str, bytes] = {}
        try:
            self._call(MANAGER_PATH, MANAGER_IFACE, b"GetUnit", b"s", ["init.scope"])
        except Exception as exc:  # any failure to even talk is "unavailable"
            self._bus.close()
            raise SystemdUnavailable(_why_unreachable(exc)) from None

    def close(self) -> None:
        """Close the bus connection."""
        self._bus.close()

    def __enter__(self) -> Systemd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, path: bytes, iface: bytes, method: bytes, sig: bytes, args: list) -> Any:
        return self._bus.call_method(DEST, path, iface, method, self._apply(sig, args) if sig else
                                     []).body

    def _unit_call(self, name: str, method: bytes, sig: bytes, args: list) -> Any:
        try:
            return self._call(MANAGER_PATH, MANAGER_IFACE, method, sig, args)
        except SystemdUnavailable:
            raise
        except Exception as exc:
            raise self._unit_error(name, exc) from None

    def _unit_error(self, name: str, exc: Exception) -> Exception:
        if type(exc).__name__ in ("DBusDisconnectedError", "DBusNoReplyError"):
            return SystemdUnavailable(_why_unreachable(exc))
        text = str(exc)
        m = re.search(r"\]: (.*)", text)
        return UnitError(f"{name}: {m.group(1) if m else text}")

    # -- reading --------------------------------------------------------------------------------

    def list_units(self, types: Iterable[str] = ("service",), states: Iterable[str] = (),
                   patterns: Iterable[str] = ()) -> list[UnitSummary]:
        """Return loaded units of the given types, filtered by active/sub/load state and glob."""
        rows = self._call(MANAGER_PATH, MANAGER_IFACE, b"ListUnitsByPatterns", b"asas",
                          [[s.encode() for s in states], [p.encode() for p in patterns]])
        wanted = tuple(f".{t}" for t in types)
        out = []
        for row in rows:
            name = _str(row[0])
            if wanted and not name.endswith(wanted):
                continue
            self._paths[name] = row[6]
            out.append(UnitSummary(name, _str(row[1]), _str(row[2]), _str(row[3]), _str(row[4])))
        return sorted(out, key=lambda u: u.name)

    def units_by_name(self, names: Iterable[str]) -> list[UnitSummary]:
        """Return a ListUnits row for each name, in order, loading units as needed.

        Units that do not exist come back with load_state "not-found"."""
        names = list(names)
        if not names:
            return []
        rows = self._call(MANAGER_PATH, MANAGER_IFACE, b"ListUnitsByNames", b"as", [names])
        out = []
        for row in rows:
            name = _str(row[0])
            self._paths[name] = row[6]
            out.append(UnitSummary(name, _str(row[1]), _str(row[2]), _str(row[3]), _str(row[4])))
        return out

    def unit_path(self, name: str) -> bytes:
        """Return the unit's object path (loading the unit if needed); cached per connection."""
        path = self._paths.get(name)
        if path is None:
            path = self._unit_call(name, b"LoadUnit", b"s", [name])
            self._paths[name] = path
        return path

    def _get(self, path: bytes, iface: bytes, prop: bytes, sig: bytes) -> Any:
        return self._bus.get_property(DEST, path, iface, prop, sig)

    def unit_info(self, name: str, summary: UnitSummary | None = None,
                  brief: bool = False) -> UnitInfo:
        """Return the unit's state and accounting as systemd reports it now.

        Every property is one bus round trip, so a caller showing many units can save them:
        with ``summary`` (a fresh ListUnits row) its states are not read again; ``brief``
        skips what sdwatch can read from the cgroup itself (memory, tasks, CPU) and the
        unit-file state, leaving those None/""."""
        problem = unit_name_problem(name)
        if problem:
            raise UnitError(problem)
        path = self.unit_path(name)
        kind = name.rsplit(".", 1)[-1]
        iface = b"org.freedesktop.systemd1." + kind.capitalize().encode()
        try:
            props = _UNIT_PROPS if summary is None else _UNIT_PROPS[5:]
            wanted = set(_PROPS_BY_TYPE.get(kind, ()))
            if brief:
                props = tuple(p for p in props if p[0] not in _SKIPPED_WHEN_BRIEF)
                wanted -= _SKIPPED_WHEN_BRIEF
            unit = {k: self._get(path, UNIT_IFACE, k.encode(), sig) for k, sig in props}
            if summary is not None:
                unit.update(Id=summary.name, Description=summary.description,
                            LoadState=summary.load_state, ActiveState=summary.active_state,
                            SubState=summary.sub_state)
            svc = {k: self._get(path, iface, k.encode(), sig)
                   for k, sig in _TYPE_PROPS if k in wanted}
        except Exception as exc:
            raise self._unit_error(name, exc) from None
        return UnitInfo(
            id=_str(unit["Id"]),
            description=_str(unit["Description"]),
            load_state=_str(unit["LoadState"]),
            active_state=_str(unit["ActiveState"]),
            sub_state=_str(unit["SubState"]),
            unit_file_state=_str(unit.get("UnitFileState", b"")),
            result=_str(svc.get("Result", b"")),
            main_pid=int(svc.get("MainPID", 0)),
            control_group=_str(svc.get("ControlGroup", b"")),
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
        )

    # -- acting ---------------------------------------------------------------------------------

    def start(self, name: str) -> str:
        """Queue a start job ("replace" mode); return the job path."""
        return _str(self._unit_call(name, b"StartUnit", b"ss", [name, "replace"]))

    def stop(self, name: str) -> str:
        """Queue a stop job; return the job path."""
        return _str(self._unit_call(name, b"StopUnit", b"ss", [name, "replace"]))

    def restart(self, name: str) -> str:
        """Queue a restart job (RestartUnit, "replace": never stop + start); return the job."""
        return _str(self._unit_call(name, b"RestartUnit", b"ss", [name, "replace"]))

    def reset_failed(self, name: str) -> None:
        """Clear the failed state and the start-rate counter of a unit."""
        self._unit_call(name, b"ResetFailedUnit", b"s", [name])

    def kill(self, name: str, signal: int, who: str = "all") -> None:
        """Send ``signal`` to the unit's processes: who is "main", "control" or "all"."""
        self._unit_call(name, b"KillUnit", b"ssi", [name, who, signal])

    def reload_daemon(self) -> None:
        """systemctl daemon-reload."""
        self._call(MANAGER_PATH, MANAGER_IFACE, b"Reload", b"", [])


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


class Events:
    """A separate connection for signals: PropertiesChanged of watched units, via its fd.

    Integrate with an event loop: wait for ``fileno()`` to be readable, then call
    ``process()``, which hands each signal to ``on_change`` and returns.  ``process`` raises
    SystemdUnavailable when the connection is gone (dbus or systemd restarted/re-executed):
    make a new Events and re-read the units' states.
    """

    def __init__(self, on_change: Callable[[Change], None]) -> None:
        lib = _dbuslib()
        self._on_change = on_change
        self._bus = _open_bus(lib)
        self._units: dict[bytes, str] = {}
        self._unit_paths: dict[str, bytes] = {}
        try:
            # without Subscribe systemd sends no unit signals to this client
            self._bus.call_method(DEST, MANAGER_PATH, MANAGER_IFACE, b"Subscribe", [])
        except Exception as exc:
            self._bus.close()
            raise SystemdUnavailable(_why_unreachable(exc)) from None

        units = self._units
        emit = on_change

        # pystemd requires a plain function as callback (a bound method fails)
        def on_signal(msg: Any, error: Any = None, userdata: Any = None) -> None:
            msg.process_reply(True)
            name = units.get(msg.headers.get("Path", b""))
            if name is None:
                return
            _iface, changed, _ = msg.body
            emit(Change(
                unit=name,
                active_state=_str(changed[b"ActiveState"]) if b"ActiveState" in changed else None,
                sub_state=_str(changed[b"SubState"]) if b"SubState" in changed else None,
                result=_str(changed[b"Result"]) if b"Result" in changed else None,
                main_pid=int(changed[b"MainPID"]) if b"MainPID" in changed else None,
                job=bool(changed[b"Job"][0]) if b"Job" in changed else None,
                active_enter_monotonic=(int(changed[_ACTIVE_ENTER])
                                        if _ACTIVE_ENTER in changed else None),
            ))

        self._callback = on_signal

    def watch(self, name: str, path: bytes) -> None:
        """Deliver this unit's PropertiesChanged signals (``path`` from Systemd.unit_path)."""
        if name in self._unit_paths:
            return
        self._units[path] = name
        self._unit_paths[name] = path
        try:
            self._bus.match_signal(DEST, path, PROPS_IFACE, b"PropertiesChanged",
                                   self._callback, None)
        except Exception as exc:
            raise SystemdUnavailable(_why_unreachable(exc)) from None

    def unwatch(self, name: str) -> None:
        """Stop reporting this unit (its match stays on the bus until reconnect; it is cheap)."""
        path = self._unit_paths.pop(name, None)
        if path is not None:
            self._units.pop(path, None)

    def fileno(self) -> int:
        """The connection's fd, readable when signals wait."""
        return self._bus.get_fd()

    def process(self) -> None:
        """Handle every queued message; raise SystemdUnavailable if the connection broke.

        sd-bus does not report a peer that hung up (systemd re-executed, dbus restarted):
        process() just finds nothing, and the fd stays readable.  So when a wake-up yields
        no message, look at the socket: end-of-file means the connection is gone."""
        handled = 0
        try:
            while handled < 10000:  # bounded: never starve the loop
                if self._bus.process().is_empty():
                    break
                handled += 1
        except Exception as exc:
            raise SystemdUnavailable(f"lost the signal connection to systemd ({exc})") from None
        if handled == 0 and self._hung_up():
            raise SystemdUnavailable("lost the signal connection to systemd (closed by peer)")

    def _hung_up(self) -> bool:
        import socket

        fd = self._bus.get_fd()
        if fd < 0:
            return True
        probe = socket.socket(fileno=os.dup(fd))
        try:
            return probe.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True
        finally:
            probe.close()

    def close(self) -> None:
        """Close the connection."""
        self._bus.close()


_ACTIVE_ENTER = b"ActiveEnterTimestampMonotonic"
_UNIT_PROPS = (("Id", b"s"), ("Description", b"s"), ("LoadState", b"s"), ("ActiveState", b"s"),
               ("SubState", b"s"), ("UnitFileState", b"s"), ("ActiveEnterTimestamp", b"t"),
               ("InvocationID", b"ay"), ("ActiveEnterTimestampMonotonic", b"t"))
_TYPE_PROPS = (("MainPID", b"u"), ("ControlGroup", b"s"), ("NRestarts", b"u"), ("Result", b"s"),
               ("ExecMainStartTimestamp", b"t"), ("MemoryCurrent", b"t"), ("TasksCurrent", b"t"),
               ("CPUUsageNSec", b"t"), ("ExecMainCode", b"i"), ("ExecMainStatus", b"i"))
_SKIPPED_WHEN_BRIEF = {"UnitFileState", "ActiveEnterTimestampMonotonic",
                       "ExecMainStartTimestamp", "MemoryCurrent", "TasksCurrent",
                       "CPUUsageNSec", "ExecMainCode", "ExecMainStatus", "InvocationID"}
_CGROUP = ("ControlGroup", "MemoryCurrent", "TasksCurrent", "CPUUsageNSec")
_PROPS_BY_TYPE: dict[str, tuple[str, ...]] = {
    "service": ("MainPID", "NRestarts", "Result", "ExecMainStartTimestamp", "ExecMainCode",
                "ExecMainStatus") + _CGROUP,
    "scope": ("Result",) + _CGROUP,
    "slice": _CGROUP,
    "socket": ("Result",) + _CGROUP,
    "mount": ("Result",) + _CGROUP,
    "swap": ("Result",) + _CGROUP,
}

