"""The one adapter between sdwatch and systemd's D-Bus API (pystemd).

Everything leaving this module is ``str``/``int`` in the small frozen records of unitinfo.py
(which also names the properties read and translates their values); pystemd's bytes,
signatures and errors stay inside.  One :class:`Systemd` holds one long-lived bus connection for
method calls; signals use a separate connection (:class:`Events`), because synchronous calls on
a connection strand the signals queued on it.

Errors: every pystemd error leaves as one of this module's, all :class:`SystemdError`:
:class:`SystemdUnavailable` when the connection cannot carry calls (not reachable, closed by the
peer, no reply; its text is one line saying what is wrong and what to do), :class:`UnitError`
when systemd refuses a call on a unit, :class:`Refused` when it refuses a manager call.

Memory: systemd sends every unit's signals to every client of its private socket, whether it
asked or not, and sd-bus keeps the ones that arrive while a call waits for its reply.  A
connection that only makes calls must drop them: :meth:`Systemd.drain`.
"""

from __future__ import annotations

import errno
import os
import types
from typing import Any, Callable, Iterable

from sdwatch import deferred
from sdwatch.states import unit_name_problem
from sdwatch.unitinfo import (
    Change,
    UnitInfo,
    UnitSummary,
    change_from_signal,
    info_from_props,
    props_to_read,
    states_only,
    summary_from_row,
    text,
)

deferred.defer("lxml.etree")  # pystemd's package imports it for introspection, never used here

DEST = b"org.freedesktop.systemd1"
MANAGER_PATH = b"/org/freedesktop/systemd1"
MANAGER_IFACE = b"org.freedesktop.systemd1.Manager"
UNIT_IFACE = b"org.freedesktop.systemd1.Unit"
PROPS_IFACE = b"org.freedesktop.DBus.Properties"
UNIT_PATH_PREFIX = b"/org/freedesktop/systemd1/unit"
_NAMES_PER_CALL = 500

class SystemdError(Exception):
    """Base of every error this module raises."""


class SystemdUnavailable(SystemdError):
    """systemd's D-Bus API cannot be reached; ``str()`` is one explanatory line."""


class UnitError(SystemdError):
    """systemd refused an operation on a unit (no such unit, bad state, permission)."""


class Refused(SystemdError):
    """systemd refused a manager call (e.g. daemon-reload without the privilege)."""


def _dbuslib() -> types.ModuleType:
    """Import pystemd's low-level bus module, as its package is meant to be imported."""
    try:
        import pystemd.dbuslib
    except ImportError as exc:
        raise SystemdUnavailable(f"pystemd is not usable ({exc}): install python3-pystemd "
                                 "(or pip install pystemd)") from None
    return pystemd.dbuslib


# sd-bus's answers when the connection itself is gone or full, as opposed to a refusal
_TRANSPORT_ERRNOS = {errno.ECONNRESET, errno.ENOTCONN, errno.EPIPE, errno.ECONNREFUSED,
                     errno.ESHUTDOWN, errno.ENOBUFS, errno.ETIMEDOUT, errno.ENOENT,
                     errno.EBADF}


def _is_transport(exc: BaseException) -> bool:
    from pystemd import dbusexc

    if isinstance(exc, (dbusexc.DBusDisconnectedError, dbusexc.DBusNoReplyError,
                        dbusexc.DBusTimeoutError, dbusexc.DBusNoServerError)):
        return True
    code = getattr(exc, "errno", 0) or 0
    # a bare errno, without the message an error reply carries, is sd-bus's own failure
    return not getattr(exc, "err_message", "") and abs(code) in _TRANSPORT_ERRNOS


def _message(exc: BaseException) -> str:
    """The reason systemd gave, without pystemd's "[err -N]: b'...'" wrapping."""
    text = getattr(exc, "err_message", None)
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    if text:
        return str(text)
    code = abs(getattr(exc, "errno", 0) or 0)
    return os.strerror(code) if code else (str(exc) or type(exc).__name__)


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
    except _errors() as exc:
        raise SystemdUnavailable(_why_unreachable(exc)) from None
    return bus


def object_path(name: str) -> bytes:
    """The D-Bus object path systemd gives the unit ``name`` (loaded or not), without asking
    it: no round trip, and no unit loaded only to be garbage-collected again."""
    return _dbuslib().path_encode(UNIT_PATH_PREFIX, name.encode())


def _hung_up(fd: int) -> bool:
    """Whether the peer closed the connection: sd-bus does not report it (process() just
    finds nothing while the fd stays readable), the socket does (end of file)."""
    import socket

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


def _errors() -> type[BaseException]:
    from pystemd.dbusexc import DBusBaseError

    return DBusBaseError


class Systemd:
    """A connection to systemd for method calls and property reads.  Not for signals."""

    def __init__(self) -> None:
        lib = _dbuslib()
        self._apply = lib.apply_signature
        self._error = _errors()
        self._bus = _open_bus(lib)
        self._paths: dict[str, bytes] = {}
        try:
            self._call(MANAGER_PATH, MANAGER_IFACE, b"GetUnit", b"s", ["init.scope"])
        except SystemdError as exc:  # any failure to even talk is "unavailable"
            self._bus.close()
            raise SystemdUnavailable(_why_unreachable(exc)) from None

    def close(self) -> None:
        """Close the bus connection."""
        self._bus.close()

    def __enter__(self) -> Systemd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def drain(self) -> int:
        """Drop every message waiting on this connection; return how many there were.

        Only signals systemd sends unasked arrive here (calls are synchronous), so after a
        call, and whenever the connection's fd is readable, this keeps memory flat."""
        dropped = 0
        try:
            while not self._bus.process().is_empty():
                dropped += 1
        except self._error as exc:
            raise self._wrap(exc, "", "reading the bus") from None
        if dropped == 0 and _hung_up(self._bus.get_fd()):
            raise SystemdUnavailable("lost the connection to systemd (closed by peer)")
        return dropped

    def fileno(self) -> int:
        """The connection's fd: readable when systemd sent something (see :meth:`drain`)."""
        return self._bus.get_fd()

    def _call(self, path: bytes, iface: bytes, method: bytes, sig: bytes, args: list,
              unit: str = "") -> Any:
        try:
            return self._bus.call_method(DEST, path, iface, method,
                                         self._apply(sig, args) if sig else []).body
        except self._error as exc:
            raise self._wrap(exc, unit, method.decode()) from None

    def _get(self, path: bytes, iface: bytes, prop: bytes, sig: bytes, unit: str) -> Any:
        try:
            return self._bus.get_property(DEST, path, iface, prop, sig)
        except self._error as exc:
            raise self._wrap(exc, unit, prop.decode()) from None

    def _unit_call(self, name: str, method: bytes, sig: bytes, args: list) -> Any:
        return self._call(MANAGER_PATH, MANAGER_IFACE, method, sig, args, unit=name)

    @staticmethod
    def _wrap(exc: BaseException, unit: str, call: str) -> SystemdError:
        """One of our errors for a pystemd one, naming the unit, or else the call refused."""
        if _is_transport(exc):
            return SystemdUnavailable(_why_unreachable(exc))
        if unit:
            return UnitError(f"{unit}: {_message(exc)}")
        return Refused(f"{call}: {_message(exc)}")

    # -- reading --------------------------------------------------------------------------------

    def list_units(self, types: Iterable[str] = ("service",), states: Iterable[str] = (),
                   patterns: Iterable[str] = ()) -> list[UnitSummary]:
        """Return loaded units of the given types, filtered by active/sub/load state and glob."""
        rows = self._call(MANAGER_PATH, MANAGER_IFACE, b"ListUnitsByPatterns", b"asas",
                          [[s.encode() for s in states], [p.encode() for p in patterns]])
        wanted = tuple(f".{t}" for t in types)
        out = []
        for row in rows:
            name = text(row[0])
            if wanted and not name.endswith(wanted):
                continue
            self._paths[name] = row[6]
            out.append(summary_from_row(row))
        return sorted(out, key=lambda u: u.name)

    def units_by_name(self, names: Iterable[str]) -> list[UnitSummary]:
        """Return a ListUnits row for each name, in order, loading units as needed.

        Units that do not exist come back with load_state "not-found"; a name systemd
        cannot load at all (a template, say) has no row."""
        names = list(names)
        out = []
        # systemd loads each unit it is asked about: one call for thousands could outlast
        # the bus timeout (25 s)
        for i in range(0, len(names), _NAMES_PER_CALL):
            chunk = names[i:i + _NAMES_PER_CALL]
            try:
                rows = self._call(MANAGER_PATH, MANAGER_IFACE, b"ListUnitsByNames", b"as",
                                  [chunk])
            except Refused:  # a name systemd cannot load (a template) fails the whole call
                rows = [row for n in chunk for row in self._rows_if_loadable(n)]
            if len(rows) == len(chunk):  # one row per name, in order, unless one was invalid
                self._paths.update((n, row[6]) for n, row in zip(chunk, rows, strict=True))
            for row in rows:
                self._paths[text(row[0])] = row[6]
                out.append(summary_from_row(row))
        return out

    def _rows_if_loadable(self, name: str) -> list:
        try:
            return self._call(MANAGER_PATH, MANAGER_IFACE, b"ListUnitsByNames", b"as", [[name]])
        except Refused:
            return []

    def paths(self, names: Iterable[str]) -> dict[str, bytes]:
        """The object paths this connection learnt for these names (an alias: its unit's)."""
        return {n: self._paths[n] for n in names if n in self._paths}

    def unit_path(self, name: str) -> bytes:
        """Return the unit's object path (loading the unit if needed); cached per connection."""
        path = self._paths.get(name)
        if path is None:
            path = self._unit_call(name, b"LoadUnit", b"s", [name])
            self._paths[name] = path
        return path

    def unit_info(self, name: str, summary: UnitSummary | None = None,
                  brief: bool = False, started: bool = False) -> UnitInfo:
        """Return the unit's state and accounting as systemd reports it now.

        Every property is one bus round trip, so a caller showing many units can save them:
        with ``summary`` (a fresh ListUnits row) its states are not read again; ``brief``
        skips what sdwatch can read from the cgroup itself (memory, tasks, CPU) and the
        unit-file state, leaving those None/"", and with ``summary`` everything else of an
        inactive unit (no process, cgroup, uptime; Result and NRestarts left ""/0);
        ``started`` keeps when it last became active in a brief view."""
        problem = unit_name_problem(name)
        if problem:
            raise UnitError(problem)
        if summary is not None and summary.active_state == "inactive" and (
                brief or summary.load_state == "not-found"):
            # nothing running (and no unit file, or only a brief view wanted): no process,
            # cgroup or uptime to read.  Each read would also have systemd load the unit
            # file again (an inactive unit nobody references is collected at once).
            return states_only(summary)
        path = self.unit_path(name)
        kind = name.rsplit(".", 1)[-1]
        iface = b"org.freedesktop.systemd1." + kind.capitalize().encode()
        props, type_props = props_to_read(kind, brief, started, summary is not None)
        unit = {k: self._get(path, UNIT_IFACE, k.encode(), sig, name) for k, sig in props}
        if summary is not None:
            unit.update(Id=summary.name, Description=summary.description,
                        LoadState=summary.load_state, ActiveState=summary.active_state,
                        SubState=summary.sub_state)
        svc = {k: self._get(path, iface, k.encode(), sig, name) for k, sig in type_props}
        return info_from_props(unit, svc)

    def units_info(self, names: Iterable[str], brief: bool = False, started: bool = False,
                   ) -> dict[str, UnitInfo | UnitError]:
        """Read many units at once: one ListUnitsByNames, then what only each unit can tell.

        Return each name's UnitInfo, or the UnitError that says why it could not be read
        (a bad name, a refusal); raise SystemdUnavailable when the connection fails."""
        out: dict[str, UnitInfo | UnitError] = {}
        valid = []
        for name in names:
            problem = unit_name_problem(name)
            if problem:
                out[name] = UnitError(problem)
            else:
                valid.append(name)
        rows: list[UnitSummary | None] = list(self.units_by_name(valid))
        if len(rows) != len(valid):  # systemd skips names it finds invalid: read those alone
            by_id = {row.name: row for row in rows if row is not None}
            rows = [by_id.get(name) for name in valid]
        # else one row per name, in order (a row carries the unit's id, which an alias is not)
        for name, row in zip(valid, rows, strict=True):
            try:
                out[name] = self.unit_info(name, row, brief, started)
            except UnitError as exc:
                out[name] = exc
        return out

    # -- acting ---------------------------------------------------------------------------------

    def start(self, name: str) -> str:
        """Queue a start job ("replace" mode); return the job path."""
        return text(self._unit_call(name, b"StartUnit", b"ss", [name, "replace"]))

    def stop(self, name: str) -> str:
        """Queue a stop job; return the job path."""
        return text(self._unit_call(name, b"StopUnit", b"ss", [name, "replace"]))

    def restart(self, name: str) -> str:
        """Queue a restart job (RestartUnit, "replace": never stop + start); return the job."""
        return text(self._unit_call(name, b"RestartUnit", b"ss", [name, "replace"]))

    def reset_failed(self, name: str) -> None:
        """Clear the failed state and the start-rate counter of a unit."""
        self._unit_call(name, b"ResetFailedUnit", b"s", [name])

    def kill(self, name: str, signal: int, who: str = "all") -> None:
        """Send ``signal`` to the unit's processes: who is "main", "control" or "all"."""
        self._unit_call(name, b"KillUnit", b"ssi", [name, who, signal])

    def reload_daemon(self) -> None:
        """systemctl daemon-reload; raise Refused without the privilege."""
        self._call(MANAGER_PATH, MANAGER_IFACE, b"Reload", b"", [])


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
        self._error = _errors()
        self._bus = _open_bus(lib)
        self._units: dict[bytes, str] = {}
        self._unit_paths: dict[str, set[bytes]] = {}
        self._matched: set[bytes] = set()
        try:
            # without Subscribe systemd sends no unit signals to this client
            self._bus.call_method(DEST, MANAGER_PATH, MANAGER_IFACE, b"Subscribe", [])
        except self._error as exc:
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
            emit(change_from_signal(name, changed))

        self._callback = on_signal

    def watch(self, name: str, path: bytes | None = None) -> None:
        """Deliver this unit's PropertiesChanged signals: those of the object ``path`` (by
        default the one its name gives, :func:`object_path`; an alias's unit has its id's)."""
        path = path or object_path(name)
        if self._units.get(path) == name:
            return
        self._units[path] = name
        self._unit_paths.setdefault(name, set()).add(path)
        if path in self._matched:
            return  # watched before: its match is still on the bus
        self._matched.add(path)
        try:
            self._bus.match_signal(DEST, path, PROPS_IFACE, b"PropertiesChanged",
                                   self._callback, None)
        except self._error as exc:
            raise SystemdUnavailable(_why_unreachable(exc)) from None

    def unwatch(self, name: str) -> None:
        """Stop reporting this unit (its match stays on the bus until reconnect; it is cheap)."""
        for path in self._unit_paths.pop(name, ()):
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
        except self._error as exc:
            raise SystemdUnavailable(f"lost the signal connection to systemd ({exc})") from None
        if handled == 0 and _hung_up(self._bus.get_fd()):
            raise SystemdUnavailable("lost the signal connection to systemd (closed by peer)")

    def close(self) -> None:
        """Close the connection."""
        self._bus.close()
