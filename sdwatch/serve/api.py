"""The daemon's HTTP API: routes, the status codes a load balancer reads, and who may act.

  GET  /                                 the status page
  GET  /metrics                          Prometheus text format
  GET  /api/v1/status                    the document ``sdwatch status --json`` prints
  GET  /api/v1/report?form=&units=       what ``sdwatch status|summary [--json] [UNIT...]``
                                         prints, rendered here, its exit code in X-Sdwatch-Exit;
                                         409 unless X-Sdwatch-Config is the identity of the
                                         configuration in force, 404 for a unit not watched
  GET  /api/v1/units/NAME                one unit: 200 healthy, 429 starting or degraded,
                                         503 failing, 404 not watched (Consul's convention)
  POST /api/v1/units/NAME/restart|monitor|unmonitor

Reading is open to whoever reaches the socket (the runtime directory is root's; TCP is
loopback unless the admin says otherwise).  Acting needs root on the unix socket (its peer
credentials) or ``Authorization: Bearer TOKEN`` with the token file's first line; without a
token file, TCP clients can never act.
"""

from __future__ import annotations

import hmac
import json
import time
from typing import Any, Callable, Protocol, Sequence

from sdwatch import exits, status
from sdwatch.serve import metrics
from sdwatch.serve.httpd import Request, Response, text
from sdwatch.states import Health

UNITS = "/api/v1/units/"
JSON = "application/json"
# Consul's agent health endpoint: passing 200, warning 429, critical 503
_UNIT_STATUS = {Health.HEALTHY: 200, Health.STARTING: 429, Health.UNKNOWN: 429,
                Health.GAVE_UP: 503, Health.UNMONITORED: 429, Health.FAILING: 503,
                Health.FAILED: 503, Health.STOPPED: 503, Health.MISSING: 503}


class Source(Protocol):
    """What the API serves: the daemon, or anything shaped like it."""

    def snapshot(self) -> status.Snapshot: ...

    def metrics(self) -> tuple[Sequence[metrics.UnitFigures], metrics.Facts]:
        """Each unit's figures and the daemon's counters, for /metrics."""

    def command(self, unit: str, command: str) -> Health | None:
        """Carry out a command; return the unit's health after it, None if not watched."""

    def config_identity(self) -> str | None:
        """The identity of the configuration files in force (configfiles.identity); None
        when no unit is configured (status then lists systemd's services itself) or while a
        reload runs (status then asks systemd)."""


def unit_http_status(health: Health) -> int:
    """The HTTP status that tells a load balancer what a unit's health means."""
    return _UNIT_STATUS.get(health, 503)


class Api:
    """Routes requests to ``source``; ``token`` (may be empty) lets TCP clients act."""

    def __init__(self, source: Source, token: str = "") -> None:
        self.source = source
        self.token = token
        self.exposition = metrics.Exposition()  # keeps the text of what did not change

    def __call__(self, req: Request) -> Response:
        if req.path.startswith(UNITS):
            return self._unit(req, req.path[len(UNITS):])
        route: Callable[[], Response] | None = {
            "/": self._page, "/metrics": self._metrics, "/api/v1/status": self._status,
            "/api/v1/report": lambda: self._report(req),
        }.get(req.path)
        if route is None:
            return text(404, "not found")
        if req.method not in ("GET", "HEAD"):
            return _not_allowed("GET, HEAD")
        return route()

    def _page(self) -> Response:
        from sdwatch.serve import page  # a daemon only Prometheus asks never loads the page

        time.tzset()  # the machine's zone now: timedatectl set-timezone while the daemon runs
        return Response(200, page.render(self.source.snapshot()), "text/html; charset=utf-8",
                        (("content-security-policy", "default-src 'none'; style-src "
                          "'unsafe-inline'"), ("x-frame-options", "DENY")))

    def _metrics(self) -> Response:
        units, facts = self.source.metrics()
        return Response(200, self.exposition.render(units, facts), metrics.CONTENT_TYPE)

    def _status(self) -> Response:
        return _json(200, status.to_json(self.source.snapshot()))

    def _report(self, req: Request) -> Response:
        """The report ``sdwatch status`` prints, when this daemon's answer is the one the
        command would print itself: same configuration files, every named unit watched."""
        form = req.query.get("form", "text")
        if form not in status.FORMS:
            return text(400, f"form: one of {', '.join(status.FORMS)}")
        identity = self.source.config_identity()
        if identity is None:
            return text(404, "no unit configured, or a reload running: status asks systemd")
        if req.headers.get("x-sdwatch-config") != identity:
            return text(409, "other configuration files, or changed since the daemon loaded them")
        names = [n for n in req.query.get("units", "").split(",") if n]
        snap = status.pick(self.source.snapshot(), names)
        if snap is None:
            return text(404, "a unit named is not watched by sdwatch")
        time.tzset()  # as the command would: the zone the machine has now, not at our start
        return Response(200, status.render(snap, form).encode(), "text/plain; charset=utf-8",
                        (("x-sdwatch-exit", str(exits.OK if snap.healthy else exits.UNHEALTHY)),))

    def _unit(self, req: Request, rest: str) -> Response:
        name, _, command = rest.partition("/")
        if command:
            if req.method != "POST":
                return _not_allowed("POST")
            return self._command(req, name, command)
        if req.method not in ("GET", "HEAD"):
            return _not_allowed("GET, HEAD")
        snap = self.source.snapshot()
        unit = next((u for u in snap.units if u.name == name), None)
        if unit is None:
            return _json(404, {"error": f"{name} is not watched by sdwatch"})
        return _json(unit_http_status(unit.health), unit.to_json())

    def _command(self, req: Request, name: str, command: str) -> Response:
        from sdwatch.messages import COMMANDS

        if command not in COMMANDS:
            return text(404, f"no such command {command!r} (one of: {', '.join(COMMANDS)})")
        if not self.may_act(req):
            return _json(403, {"error": "not allowed: root on the unix socket, or a token "
                                        "(Authorization: Bearer, see token_file)"})
        health = self.source.command(name, command)
        if health is None:
            return _json(404, {"error": f"{name} is not watched by sdwatch"})
        return _json(202, {"unit": name, "command": command, "health": health.value})

    def may_act(self, req: Request) -> bool:
        """Root on the unix socket, or the right bearer token."""
        if not req.peer.tcp and req.peer.uid == 0:
            return True
        scheme, _, given = req.headers.get("authorization", "").partition(" ")
        return bool(self.token) and scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), self.token.encode())


def _json(code: int, data: Any) -> Response:
    return Response(code, json.dumps(data, separators=(",", ":")).encode(), JSON)


def _not_allowed(allow: str) -> Response:
    r = text(405, "method not allowed")
    return Response(r.status, r.body, r.content_type, (("allow", allow),))
