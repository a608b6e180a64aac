"""What runs on this machine: each running service's processes, the TCP and unix sockets
they listen on and the unit's memory, read from systemd (through the adapter) and /proc
(psutil).

:class:`Service` and its parts are the facts ``sdwatch init`` recognises services from
(:mod:`sdwatch.discover`, pure).  Reading them connects to nothing, except to ask the
listeners the caller names whether they speak TLS: a ClientHello with a deadline of its own.
"""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Literal, Optional

if TYPE_CHECKING:
    from sdwatch.systemd import Systemd


@dataclass(frozen=True)
class Process:
    """One process of a unit's cgroup: executable (resolved), argv (may be rewritten by the
    program, as puma and redis do) and kernel name."""

    pid: int
    exe: str
    argv: tuple[str, ...] = ()
    comm: str = ""

    @property
    def names(self) -> frozenset[str]:
        """Every name the process goes by: executable, comm, argv[0] and its first word."""
        names = {os.path.basename(self.exe), self.comm}
        if self.argv:
            names.add(os.path.basename(self.argv[0]))
            names.add(os.path.basename(self.argv[0].split(" ", 1)[0]))
        return frozenset(n for n in names if n)


@dataclass(frozen=True)
class Listener:
    """A listening socket: ``tcp`` with host (IP literal) and port, or ``unix`` with a path;
    ``tls`` when it answered a TLS ClientHello, ``silent`` when asked and it answered nothing
    in time (only asked with :func:`with_tls`)."""

    kind: Literal["tcp", "unix"]
    host: str  # IP address, or the socket path
    port: int = 0
    tls: bool = False
    silent: bool = False

    def __str__(self) -> str:
        if self.kind == "unix":
            return self.host
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def local(self) -> str:
        """Where to connect from this machine: a wildcard listener becomes loopback."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"


@dataclass(frozen=True)
class Service:
    """What was seen of one running service."""

    unit: str
    description: str = ""
    processes: tuple[Process, ...] = ()
    listeners: tuple[Listener, ...] = ()
    memory: Optional[int] = None  # bytes, the cgroup's charge



def _unmap(host: str) -> str:
    """::ffff:127.0.0.1 -> 127.0.0.1 (a v4 address on a v6 socket)."""
    return host[7:] if host.startswith("::ffff:") and "." in host else host


def listeners_of(connections: Iterable[object]) -> list[Listener]:
    """Given psutil connections of a process, return the sockets it listens on: TCP in
    LISTEN, and stream unix sockets bound to a path (abstract "@name" sockets are left out:
    nothing outside can name them in a config)."""
    import psutil

    out = []
    for c in connections:
        family, kind, laddr = (getattr(c, "family", None), getattr(c, "type", None),
                               getattr(c, "laddr", None))
        if family == socket.AF_UNIX:
            if kind == socket.SOCK_STREAM and isinstance(laddr, str) and laddr.startswith("/"):
                out.append(Listener("unix", laddr))
        elif getattr(c, "status", "") == psutil.CONN_LISTEN and laddr:
            out.append(Listener("tcp", _unmap(laddr[0]), laddr[1]))
    return out


def read_process(pid: int) -> tuple[Process, list[Listener]] | None:
    """Return a process's executable, argv and comm, and the sockets it listens on in our
    network namespace (a service in another one cannot be probed from here anyway), or None
    if it is gone."""
    import psutil

    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            argv, comm = tuple(proc.cmdline()), proc.name()
            try:
                exe = proc.exe()
            except psutil.AccessDenied:
                exe = ""  # not ours to see
            # psutil >= 6 names it net_connections; 5.9 (Debian 12) only connections
            connections = getattr(proc, "net_connections", None) or proc.connections
            listening = listeners_of(connections(kind="all"))
    except psutil.Error:  # gone (or a zombie) meanwhile
        return None
    return Process(pid, exe, argv, comm), listening


def service_facts(unit: str, description: str, pids: Iterable[int],
                  memory: int | None) -> Service:
    """Given a unit's cgroup PIDs, read its processes and their listening sockets."""
    processes, listeners = [], []
    for pid in sorted(pids):
        seen = read_process(pid)
        if seen is not None:
            processes.append(seen[0])
            listeners += seen[1]
    unique = tuple(dict.fromkeys(listeners))
    return Service(unit, description, tuple(processes), unique, memory)


TLS_TIMEOUT = 1.0  # seconds for a listener on this machine to answer a ClientHello


def _addresses(listener: Listener) -> list[str]:
    """Where to ask a listener: :attr:`Listener.local`, and for one on ``::`` also IPv4's
    loopback (a dual-stack socket answers there where ::1 is not configured)."""
    return [listener.local] + ([f"127.0.0.1:{listener.port}"] if listener.host == "::" else [])


def tls_answers(listeners: Iterable[Listener],
                timeout: float = TLS_TIMEOUT) -> dict[Listener, bool]:
    """Given TCP listeners, return for each that answered a TLS ClientHello within
    ``timeout`` seconds whether the answer was TLS (all asked at once, at
    :func:`_addresses`); those that answered nothing are left out."""
    from sdwatch.probes import net, tls
    from sdwatch.probes.errors import ProbeError

    async def answers(listener: Listener) -> bool | None:
        try:
            async with asyncio.timeout(timeout):  # one deadline for every address of it
                for address in _addresses(listener):
                    try:
                        return await tls.answers_tls(net.parse_address(address))
                    except (ProbeError, ValueError):  # refused, or an address we cannot name
                        continue
        except TimeoutError:
            pass
        return None

    async def ask(asked: list[Listener]) -> list[bool | None]:
        return await asyncio.gather(*(answers(ln) for ln in asked))

    asked = list(dict.fromkeys(ln for ln in listeners if ln.kind == "tcp"))
    answered = asyncio.run(ask(asked)) if asked else []
    return {ln: yes for ln, yes in zip(asked, answered, strict=True) if yes is not None}


def tls_listeners(listeners: Iterable[Listener],
                  timeout: float = TLS_TIMEOUT) -> frozenset[Listener]:
    """Given TCP listeners, return those that answer a TLS ClientHello within ``timeout``."""
    return frozenset(ln for ln, yes in tls_answers(listeners, timeout).items() if yes)


def with_tls(service: Service, asked: Iterable[Listener]) -> Service:
    """Given a service and the listeners of it to ask, return it with ``tls`` set on those
    that answer TLS and ``silent`` on those that answer nothing in time (the only time
    anything is connected to while reading facts)."""
    asked = [ln for ln in dict.fromkeys(asked) if ln.kind == "tcp"]
    if not asked:
        return service
    answers = tls_answers(asked)
    return replace(service, listeners=tuple(
        ln if ln not in asked else replace(ln, tls=True) if answers.get(ln) else
        ln if ln in answers else replace(ln, silent=True) for ln in service.listeners))


def read_services(sd: Systemd, exclude: Iterable[str] = (),
                  ask_tls: Callable[[Service], Iterable[Listener]] = lambda _: ()
                  ) -> Iterator[Service]:
    """Given a sdwatch.systemd.Systemd, yield the facts of every running service, except
    the units in ``exclude``; the listeners ``ask_tls`` names for a service are asked
    whether they speak TLS (:func:`with_tls`)."""
    from sdwatch.resources import cgroup_memory, cgroup_pids
    from sdwatch.systemd import UnitError

    skip = set(exclude)
    for summary in sd.list_units(("service",), states=("running",)):
        if summary.name in skip:
            continue
        try:
            info = sd.unit_info(summary.name, summary)
        except UnitError:
            continue  # gone meanwhile
        if not info.control_group:
            continue
        memory = cgroup_memory(info.control_group)
        service = service_facts(summary.name, summary.description,
                                cgroup_pids(info.control_group),
                                memory if memory is not None else info.memory_current)
        yield with_tls(service, ask_tls(service))

