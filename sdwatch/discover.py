"""What ``sdwatch init`` proposes: running services recognised from what systemd and /proc show.

Facts (:class:`Service`: its processes' executables and command lines, the TCP and unix
sockets they listen on, the unit's memory) are read by :func:`read_services` and nothing
else here does I/O; nothing is ever probed or connected to while discovering.  From facts,
:func:`recognise` proposes the probe that speaks the service's protocol, and :func:`render`
writes the commented TOML.  Secrets are never guessed: a login is proposed only for the
password files the caller names (``--login``).
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Literal, Mapping, Optional

if TYPE_CHECKING:
    from sdwatch.systemd import Systemd

MiB = 1024 * 1024


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
    """A listening socket: ``tcp`` with host (IP literal) and port, or ``unix`` with a path."""

    kind: Literal["tcp", "unix"]
    host: str  # IP address, or the socket path
    port: int = 0

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


@dataclass(frozen=True)
class Login:
    """Credentials the caller gives for a kind: a user and a password file (never read here)."""

    user: str
    password_file: str


@dataclass(frozen=True)
class Proposal:
    """The config proposed for one recognised service."""

    unit: str
    what: str  # "Redis", "nginx", ...
    probes: tuple[tuple[tuple[str, object], ...], ...]  # each an ordered list of key = value
    notes: tuple[str, ...] = ()  # comments, TODOs
    memory_above: Optional[str] = None
    seen: str = ""
    memory_now: Optional[int] = None  # bytes


# -- recognition (pure) ---------------------------------------------------------------------


def recognise(service: Service, logins: Mapping[str, Login] | None = None) -> Proposal | None:
    """Given a service's facts (and the logins the caller named per kind), return the
    proposal for it, or None when nothing about it is recognised."""
    logins = logins or {}
    names = frozenset().union(*(p.names for p in service.processes)) if service.processes \
        else frozenset()
    argv_words = {w for p in service.processes for a in p.argv for w in a.split()}
    for rule in _RULES:
        proposal = rule(service, names, argv_words, logins)
        if proposal is not None:
            return Proposal(proposal.unit, proposal.what, proposal.probes, proposal.notes,
                            memory_proposal(service.memory), seen(service), service.memory)
    return None


def memory_proposal(current: int | None) -> str | None:
    """Given a unit's memory now (bytes), return a limit with headroom, e.g. "512M": twice
    the use and at least 128 MiB more, rounded up to 64 MiB."""
    if not current or current <= 0:
        return None
    wanted = max(2 * current, current + 128 * MiB)
    return f"{-(-wanted // (64 * MiB)) * 64}M"


def seen(service: Service) -> str:
    """Given a service, return a one-line summary of what was seen: executables, sockets."""
    exes = sorted({p.exe for p in service.processes if p.exe})
    parts = [f"{len(service.processes)} processes" if len(service.processes) != 1
             else "1 process"]
    if exes:
        parts.append(", ".join(exes[:3]) + (" ..." if len(exes) > 3 else ""))
    listening = sorted({f"{ln.kind} {ln}" for ln in service.listeners})
    if listening:
        parts.append("listening on " + ", ".join(listening[:6])
                     + (" ..." if len(listening) > 6 else ""))
    return "; ".join(parts)


def _tcp(service: Service, ports: Iterable[int] = ()) -> list[Listener]:
    """TCP listeners, the wanted ports first, IPv4 before IPv6, loopback/wildcard first."""
    wanted = list(ports)
    rank = {"127.0.0.1": 0, "0.0.0.0": 1, "::1": 2, "::": 3}
    tcp = {(ln.host, ln.port): ln for ln in service.listeners if ln.kind == "tcp"}
    return sorted(tcp.values(), key=lambda ln: (
        wanted.index(ln.port) if ln.port in wanted else len(wanted),
        rank.get(ln.host, 4 if "." in ln.host else 5), ln.port))


def _unix(service: Service, pattern: str = r".") -> list[Listener]:
    found = {ln.host: ln for ln in service.listeners
             if ln.kind == "unix" and re.search(pattern, os.path.basename(ln.host))}
    return [found[k] for k in sorted(found)]


def _login(table: list[tuple[str, object]], login: Login | None) -> None:
    if login is not None:
        table += [("user", login.user), ("password_file", login.password_file)]


def _mysql(service: Service, names: frozenset[str], words: set[str],
           logins: Mapping[str, Login]) -> Proposal | None:
    if not names & {"mariadbd", "mysqld", "mariadb"}:
        return None
    unix, tcp = _unix(service, r"\.sock$"), _tcp(service, [3306])
    if not unix and not tcp:
        return _no_socket(service, "MariaDB/MySQL")
    table: list[tuple[str, object]] = [("kind", "mysql")]
    table.append(("socket", unix[0].host) if unix else ("address", tcp[0].local))
    _login(table, logins.get("mysql"))
    notes = () if "mysql" in logins else (
        "greeting only; for a real login: CREATE USER 'sdwatch'@'localhost' IDENTIFIED BY "
        "'...'; then add user = \"sdwatch\", password_file = \"/etc/sdwatch/mysql.pass\" "
        "(mode 0600)",)
    return Proposal(service.unit, "MariaDB/MySQL", (tuple(table),), notes)


def _postgresql(service: Service, names: frozenset[str], words: set[str],
                logins: Mapping[str, Login]) -> Proposal | None:
    if "postgres" not in names and "postmaster" not in names:
        return None
    unix = _unix(service, r"^\.s\.PGSQL\.\d+$")
    tcp = _tcp(service, [5432])
    table: list[tuple[str, object]] = [("kind", "postgresql")]
    if unix:
        directory, port = unix[0].host.rsplit("/.s.PGSQL.", 1)
        table.append(("socket", directory))
        if int(port) != 5432:
            table.append(("port", int(port)))
    elif tcp:
        table.append(("address", tcp[0].local))
    else:
        return _no_socket(service, "PostgreSQL")
    _login(table, logins.get("postgresql"))
    notes = () if "postgresql" in logins else (
        "proves the server accepts connections (as pg_isready); CREATE ROLE sdwatch LOGIN "
        "keeps the server's log quiet; for a real login add user and password_file",)
    return Proposal(service.unit, "PostgreSQL", (tuple(table),), notes)


def _redis(service: Service, names: frozenset[str], words: set[str],
           logins: Mapping[str, Login]) -> Proposal | None:
    if "redis-server" not in names and "valkey-server" not in names:
        return None
    unix, tcp = _unix(service, r"\.sock$"), _tcp(service, [6379])
    if not unix and not tcp:
        return _no_socket(service, "Redis")
    table: list[tuple[str, object]] = [("kind", "redis")]
    table.append(("socket", unix[0].host) if unix else ("address", tcp[0].local))
    login = logins.get("redis")
    if login is not None:
        if login.user:
            table.append(("user", login.user))
        table.append(("password_file", login.password_file))
    notes = () if login else (
        "if the server requires a password: password_file = \"/etc/sdwatch/redis.pass\" "
        "(and user = ... for an ACL user)",)
    return Proposal(service.unit, "Redis", (tuple(table),), notes)


def _memcached(service: Service, names: frozenset[str], words: set[str],
               logins: Mapping[str, Login]) -> Proposal | None:
    if "memcached" not in names:
        return None
    tcp, unix = _tcp(service, [11211]), _unix(service)
    if not tcp and not unix:
        return _no_socket(service, "memcached")
    table: list[tuple[str, object]] = [("kind", "memcached")]
    table.append(("address", tcp[0].local) if tcp else ("socket", unix[0].host))
    return Proposal(service.unit, "memcached", (tuple(table),))


def _searchd(service: Service, names: frozenset[str], words: set[str],
             logins: Mapping[str, Login]) -> Proposal | None:
    if "searchd" not in names:
        return None
    what = "Sphinx/Manticore"
    tcp = [ln for ln in _tcp(service, [9306]) if ln.port == 9306]
    if tcp:
        return Proposal(service.unit, what, ((("kind", "mysql"), ("address", tcp[0].local)),),
                        ("SphinxQL greeting",))
    others = _tcp(service)
    if not others:
        return _no_socket(service, what)
    return Proposal(service.unit, what, ((("kind", "tcp"), ("address", others[0].local)),),
                    ("TODO: no SphinxQL port 9306 seen; point a mysql probe at the port "
                     "with listen = ...:mysql41 in the searchd config",))


def _web(service: Service, names: frozenset[str], words: set[str],
         logins: Mapping[str, Login]) -> Proposal | None:
    what = next((w for n, w in (("nginx", "nginx"), ("apache2", "Apache"), ("httpd", "Apache"))
                 if n in names), None)
    if what is None:
        return None
    probes: list[tuple[tuple[str, object], ...]] = []
    tls = [ln for ln in _tcp(service, [443]) if ln.port in (443, 8443)]
    plain = [ln for ln in _tcp(service, [80]) if ln.port not in (443, 8443)]
    if plain:
        probes.append((("kind", "http"), ("url", f"http://{plain[0].local}/")))
    else:
        probes.extend((("kind", "http"), ("url", _unix_url(ln.host, "/")))
                      for ln in _unix(service)[:1])
    if tls:
        probes.append((("kind", "tls"), ("address", tls[0].local), ("verify", False)))
    if not probes:
        return _no_socket(service, what)
    notes = ["TODO: / may redirect or need a virtual host: point url at a health path "
             "(e.g. /healthz) and set host = \"your.site\" if needed"]
    if tls:
        notes.append("the tls probe checks the certificate's expiry; set host = \"your.site\" "
                     "and drop verify = false to check its name and chain too")
    return Proposal(service.unit, what, tuple(probes), tuple(notes))


_APP_SERVERS = ("puma", "unicorn", "gunicorn", "uwsgi")


def _app_server(service: Service, names: frozenset[str], words: set[str],
                logins: Mapping[str, Login]) -> Proposal | None:
    found = {a for a in _APP_SERVERS if a in names or any(
        w == a or w.endswith(f"/{a}") or w.startswith(f"{a}_") for w in words)}
    if not found:
        return None
    what = sorted(found)[0]
    unix, tcp = _unix(service), _tcp(service)
    uwsgi_protocol = what == "uwsgi" and not words & {"--http-socket", "--http", "--https"}
    if uwsgi_protocol:
        target = unix[0].host if unix else (tcp[0].local if tcp else None)
        if target is None:
            return _no_socket(service, what)
        address = f"unix:{target}" if unix else target
        return Proposal(service.unit, what, ((("kind", "tcp"), ("address", address)),),
                        ("uwsgi protocol socket: the probe only connects; with --http-socket "
                         "an http probe can ask the app itself",))
    if unix:
        url = _unix_url(unix[0].host, "/")
    elif tcp:
        url = f"http://{tcp[0].local}/"
    else:
        return _no_socket(service, what)
    return Proposal(service.unit, what, ((("kind", "http"), ("url", url)),),
                    ("TODO: point url at the app's health path (e.g. /up for Rails 7.1+)",))


def _unix_url(path: str, request: str) -> str:
    """An http+unix URL with the socket path encoded as the host: unambiguous."""
    return "http+unix://" + path.replace("%", "%25").replace("/", "%2F") + request


def _no_socket(service: Service, what: str) -> Proposal:
    return Proposal(service.unit, what, (), (f"recognised as {what}, but no listening socket "
                                             "was seen: no probe proposed",))


# each: (facts, every name its processes go by, every word of their argv, logins) -> proposal
_RULES: tuple[Callable[[Service, frozenset[str], set[str], Mapping[str, Login]],
                       Proposal | None], ...] = (
    _mysql, _postgresql, _redis, _memcached, _searchd, _web, _app_server)


# -- rendering (pure) -----------------------------------------------------------------------


def toml_value(value: object) -> str:
    """Given a str, bool or int, return it as a TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    return '"' + "".join(_ESCAPES.get(c, c if c.isprintable() else f"\\U{ord(c):08x}")
                         for c in text) + '"'


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def render(proposals: Iterable[Proposal], unrecognised: Iterable[Service],
           skipped: Mapping[str, str] | None = None, header: str = "") -> str:
    """Given proposals, the services not recognised and the units left out (name -> why),
    return the TOML text: a table per proposal, comments for the rest."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    for p in proposals:
        lines += ["", _comment(f"{p.what}: {p.seen}" if p.seen else p.what)]
        lines += [_comment(note) for note in p.notes]
        if not p.probes and not p.memory_above:
            lines.append(_comment(f"[unit.{toml_value(p.unit)}]"))
            continue
        lines.append(f"[unit.{toml_value(p.unit)}]")
        if p.probes:
            lines.append("probe = [")
            lines += ["  { " + ", ".join(f"{k} = {toml_value(v)}" for k, v in probe) + " },"
                      for probe in p.probes]
            lines.append("]")
        if p.memory_above:
            now = f"{-(-(p.memory_now or 0) // MiB)}M"
            lines.append(f"# memory: {now} now; the limit is twice that, at least 128M more; "
                         f"then = \"restart\" to restart it instead")
            lines.append(f"memory = {{ above = {toml_value(p.memory_above)}, for = 3, "
                         f"then = \"alert\" }}")
    rest = list(unrecognised)
    if rest:
        lines += ["", "# Not recognised (no probe proposed):"]
        lines += [_comment(f"  {s.unit}: {seen(s)}") for s in rest]
    if skipped:
        lines += ["", "# Left out:"]
        lines += [_comment(f"  {unit}: {why}") for unit, why in sorted(skipped.items())]
    return "\n".join(lines).lstrip("\n") + "\n"


def _comment(text: str) -> str:
    """A TOML comment line; control characters (a newline in a path) are shown escaped."""
    return "# " + "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


# -- reading facts (I/O: /proc and systemd, nothing else) -----------------------------------


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


def read_services(sd: Systemd, exclude: Iterable[str] = ()) -> Iterator[Service]:
    """Given a sdwatch.systemd.Systemd, yield the facts of every running service, except
    the units in ``exclude``."""
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
        yield service_facts(summary.name, summary.description, cgroup_pids(info.control_group),
                            memory if memory is not None else info.memory_current)


def parse_login(text: str) -> tuple[str, Login]:
    """Given "KIND=USER:PASSWORD_FILE" (USER may be empty for Redis), return (kind, Login);
    raise ValueError."""
    kind, sep, rest = text.partition("=")
    user, sep2, path = rest.rpartition(":") if ":" in rest else ("", "", "")
    if not sep or not sep2 or kind not in LOGIN_KINDS or not path.startswith("/") or (
            not user and kind != "redis"):
        raise ValueError(f"expected KIND=USER:/path/to/password-file with KIND one of "
                         f"{', '.join(LOGIN_KINDS)}, got {text!r}")
    return kind, Login(user, path)


LOGIN_KINDS = ("mysql", "postgresql", "redis")


@dataclass(frozen=True)
class Plan:
    """The config ``sdwatch init`` proposes: its text and how many units it watches."""

    text: str
    units: int
    probes: int


def plan(services: Iterable[Service], logins: Mapping[str, Login] | None = None,
         skipped: Mapping[str, str] | None = None) -> Plan:
    """Given the running services' facts, return the proposed config (pure)."""
    proposals, unrecognised = [], []
    for service in services:
        proposal = recognise(service, logins)
        (proposals.append(proposal) if proposal is not None else unrecognised.append(service))
    header = ("Proposed by `sdwatch init` from the services running now.  Review it: probes",
              "speak each service's protocol; TODO lines need a decision.  Then",
              "`sdwatch validate`, `systemctl reload sdwatch`, `sdwatch status`.")
    text = render(proposals, unrecognised, skipped, "\n".join(header))
    active = [p for p in proposals if p.probes or p.memory_above]
    return Plan(text, len(active), sum(len(p.probes) for p in proposals))


def check_text(text: str) -> list[str]:
    """Given config text, return the problems ``sdwatch validate`` would report for it alone
    (empty when valid)."""
    import tempfile

    from sdwatch.config import ConfigError, load

    with tempfile.TemporaryDirectory(prefix="sdwatch-init-") as tmp:
        path = os.path.join(tmp, "sdwatch.toml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        try:
            load(path)
        except ConfigError as exc:
            return [m.replace(path, "<proposed>") for m in exc.messages]
    return []


def write_new(path: str, text: str) -> None:
    """Write ``text`` to a new file at ``path`` (mode 0644); raise FileExistsError if it
    exists, OSError otherwise."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
