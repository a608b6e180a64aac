"""What ``sdwatch init`` proposes for the services running now, from their facts.

From a :class:`~sdwatch.machine.Service` (read by :mod:`sdwatch.machine`), :func:`recognise`
proposes the probe that speaks the service's protocol and :func:`render` writes the
commented TOML; both are pure, as is :func:`tls_questions` (which listeners the reader asks
whether they speak TLS).  Secrets are never guessed: a login is proposed only for the
password files the caller names (``--login``).  :func:`check_text` and :func:`write_new` are
the command's two file operations.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Optional

from sdwatch.machine import Listener, Service

MiB = 1024 * 1024
Pairs = tuple[tuple[str, object], ...]  # a probe's keys and values, in order


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
    probes: tuple[Pairs, ...]
    notes: tuple[str, ...] = ()  # comments, TODOs
    memory_above: Optional[str] = None
    seen: str = ""
    memory_now: Optional[int] = None  # bytes


# -- recognition (pure) ---------------------------------------------------------------------


def recognise(service: Service, logins: Mapping[str, Login] | None = None) -> Proposal | None:
    """Given a service's facts (and the logins the caller named per kind), return the
    proposal for it, or None when nothing about it is recognised."""
    logins = logins or {}
    names = _names(service)
    argv_words = {w for p in service.processes for a in p.argv for w in a.split()}
    for rule in _RULES:
        proposal = rule(service, names, argv_words, logins)
        if proposal is not None:
            return Proposal(proposal.unit, proposal.what, proposal.probes, proposal.notes,
                            memory_proposal(service.memory), seen(service), service.memory)
    return None


def tls_questions(service: Service) -> tuple[Listener, ...]:
    """Given a service's facts, return the TCP listeners whose answer to a TLS ClientHello
    its proposal depends on (a web server's: TLS is told by what a port speaks, not its
    number); none for any other service, which is never connected to."""
    if _web_server(_names(service)) is None:
        return ()
    return tuple(ln for ln in service.listeners if ln.kind == "tcp")


def _names(service: Service) -> frozenset[str]:
    return frozenset().union(*(p.names for p in service.processes))


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


def _socket(path: str) -> Pairs:
    return (("socket", path),)


def _pg_socket(path: str) -> Pairs:
    """PostgreSQL names its socket directory, and the port when it is not the default."""
    directory, port = path.rsplit("/.s.PGSQL.", 1)
    return (("socket", directory),) + ((("port", int(port)),) if int(port) != 5432 else ())


@dataclass(frozen=True)
class _Server:
    """A server known by its process names, probed in its own protocol on its unix socket
    (the file name matching ``socket``) or else its TCP port (``tcp_first``: the other way)."""

    what: str
    names: frozenset[str]
    kind: str  # the probe's, and the logins' key
    port: int
    socket: str = r"\.sock$"
    unix: Callable[[str], Pairs] = _socket
    tcp_first: bool = False
    note: str = ""  # shown when no login is given

    def __call__(self, service: Service, names: frozenset[str], words: set[str],
                 logins: Mapping[str, Login]) -> Proposal | None:
        if not names & self.names:
            return None
        unix, tcp = _unix(service, self.socket), _tcp(service, [self.port])
        if not unix and not tcp:
            return _no_socket(service, self.what)
        if unix and not (tcp and self.tcp_first):
            table = self.unix(unix[0].host)
        else:
            table = (("address", tcp[0].local),)
        login = logins.get(self.kind)
        if login is not None:
            table += (("user", login.user),) if login.user else ()
            table += (("password_file", login.password_file),)
        notes = (self.note,) if self.note and login is None else ()
        return Proposal(service.unit, self.what, ((("kind", self.kind),) + table,), notes)


_SERVERS = (
    _Server("MariaDB/MySQL", frozenset({"mariadbd", "mysqld", "mariadb"}), "mysql", 3306,
            note="greeting only; for a real login: CREATE USER 'sdwatch'@'localhost' "
            "IDENTIFIED BY '...'; then add user = \"sdwatch\", password_file = "
            "\"/etc/sdwatch/mysql.pass\" (mode 0600)"),
    _Server("PostgreSQL", frozenset({"postgres", "postmaster"}), "postgresql", 5432,
            socket=r"^\.s\.PGSQL\.\d+$", unix=_pg_socket,
            note="proves the server accepts connections (as pg_isready); CREATE ROLE sdwatch "
            "LOGIN keeps the server's log quiet; for a real login add user and password_file"),
    _Server("Redis", frozenset({"redis-server", "valkey-server"}), "redis", 6379,
            note="if the server requires a password: password_file = "
            "\"/etc/sdwatch/redis.pass\" (and user = ... for an ACL user)"),
    _Server("memcached", frozenset({"memcached"}), "memcached", 11211, socket=".",
            tcp_first=True),
)


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


def _web_server(names: frozenset[str]) -> str | None:
    return next((w for n, w in (("nginx", "nginx"), ("apache2", "Apache"), ("httpd", "Apache"))
                 if n in names), None)


def _web(service: Service, names: frozenset[str], words: set[str],
         logins: Mapping[str, Login]) -> Proposal | None:
    what = _web_server(names)
    if what is None:
        return None
    probes: list[Pairs] = []
    tls = [ln for ln in _tcp(service, [443]) if ln.tls]
    # a listener that answered nothing in time is neither: never proposed as plain HTTP
    plain = [ln for ln in _tcp(service, [80]) if not ln.tls and not ln.silent]
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
    *_SERVERS, _searchd, _web, _app_server)


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
