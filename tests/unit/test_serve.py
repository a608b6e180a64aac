"""The API's pure parts: routes and who may act, /metrics (judged by promtool), the page."""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
import subprocess
import time
from dataclasses import dataclass, field

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_status_render import snap, unit

from sdwatch import status
from sdwatch.serve import metrics, page
from sdwatch.serve.api import Api, unit_http_status
from sdwatch.serve.httpd import Peer, Request
from sdwatch.snapshot import Failure, ProbeView
from sdwatch.states import Health
from sdwatch.status import ProbeStatus

LAST_OK = ProbeView("p", True, "ok", "ok", 0.0007, 1.7e9)
LAST_BAD = ProbeView("p", False, "timeout", "timeout after 1s", 1.0, 1.7e9,
                     last_failure=Failure("timeout after 1s", 1.7e9))


def units() -> tuple:
    return (
        unit("memcached.service", health=Health.FAILING, restarts_sdwatch=3, probes=(
            ProbeStatus("memcached", "memcached", "127.0.0.1:11211", 5.0, 1.0, 2, LAST_BAD),)),
        unit("nginx.service", restarts_sdwatch=0, probes=(
            ProbeStatus("http", "http", "https://admin:***@127.0.0.1/", 5.0, 1.0, 2, LAST_OK),)),
        unit("worker.service", health=Health.STARTING, active_state="activating",
             sub_state="start", memory=None, cpu_seconds=None, cpu_percent=None, tasks=None,
             probes=()),
        unit("db.service", health=Health.FAILED, active_state="failed", sub_state="failed",
             problem="failed (result: exit-code)", memory=None, cpu_seconds=None,
             cpu_percent=None, tasks=None),
    )


@dataclass
class Source:
    """A daemon's worth of answers, built by hand; records the commands it is given."""

    snap: status.Snapshot = field(default_factory=lambda: snap(*units()))
    commands: list = field(default_factory=list)
    identity: str | None = "1:2:3:4:5"

    def snapshot(self) -> status.Snapshot:
        return self.snap

    def facts(self) -> metrics.Facts:
        return metrics.Facts(
            version="0.1.0", started_at=1.7e9, reload_at=1.7e9,
            lateness_buckets=(1, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3), lateness_sum=0.02)

    def config_identity(self) -> str | None:
        return self.identity

    def metrics(self) -> tuple[tuple[metrics.UnitFigures, ...], metrics.Facts]:
        return figures_of(self.snapshot(), {("memcached.service", "memcached"): (10, 4)},
                          gave_up={"memcached.service"}), self.facts()

    def command(self, name: str, command: str) -> Health | None:
        if name not in [u.name for u in self.snap.units]:
            return None
        self.commands.append((name, command))
        return Health.STARTING


def figures_of(snap: status.Snapshot, runs: dict[tuple[str, str], tuple[int, int]],
               gave_up: set[str] = frozenset(), unmonitored: set[str] = frozenset(),
               types: dict[str, str] | None = None) -> tuple[metrics.UnitFigures, ...]:
    """What /metrics shows of a status snapshot's units, given what only the daemon counts:
    (unit, probe) -> (runs, failures), its flags and each service's Type=."""
    return tuple(metrics.UnitFigures(
        u.name, u.active_state, (types or {}).get(u.name, ""), u.health, u.name in gave_up,
        u.name in unmonitored, u.restarts_sdwatch or 0, u.restarts_systemd, u.memory,
        u.cpu_seconds, u.tasks, tuple(metrics.ProbeFigures(
            p.name, p.kind, p.last.ok if p.last else None,
            p.last.duration if p.last else None, *runs.get((u.name, p.name), (0, 0)))
            for p in u.probes)) for u in snap.units)


def exposition(source: Source) -> bytes:
    return metrics.Exposition().render(*source.metrics())


ROOT = Peer(tcp=False, uid=0, pid=1)
USER = Peer(tcp=False, uid=1000, pid=2)
TCP = Peer(tcp=True, address="127.0.0.1")


def call(api: Api, method: str, path: str, peer: Peer = ROOT, query: dict | None = None,
         **headers: str):
    return api(Request(method, path, query or {}, {k.lower().replace("_", "-"): v
                                                   for k, v in headers.items()}, b"", peer))


def families(body: bytes) -> dict:
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


def sample(fams: dict, metric: str, **labels: str) -> float:
    family = next(f for f in fams.values() if any(s.name == metric for s in f.samples))
    return next(s.value for s in family.samples
                if s.name == metric and all(s.labels.get(k) == v for k, v in labels.items()))


def test_metrics_use_the_names_prometheus_users_query() -> None:
    source = Source()
    fams = families(exposition(source))
    assert sample(fams, "node_systemd_unit_state", name="db.service", state="failed") == 1
    assert sample(fams, "node_systemd_unit_state", name="db.service", state="active") == 0
    assert sample(fams, "probe_success", unit="memcached.service", probe="memcached",
                  kind="memcached") == 0
    assert sample(fams, "probe_success", unit="nginx.service", probe="http", kind="http") == 1
    assert sample(fams, "probe_duration_seconds", unit="nginx.service") == 0.0007
    assert sample(fams, "sdwatch_probe_failures_total", unit="memcached.service") == 4
    assert sample(fams, "sdwatch_probe_runs_total", unit="memcached.service") == 10
    assert sample(fams, "sdwatch_unit_restarts_total", name="memcached.service") == 3
    assert sample(fams, "node_systemd_service_restart_total", name="nginx.service") == 2
    assert sample(fams, "sdwatch_unit_health", name="memcached.service", health="failing") == 1
    assert sample(fams, "sdwatch_unit_health", name="memcached.service", health="healthy") == 0
    assert sample(fams, "sdwatch_unit_gave_up", name="memcached.service") == 1
    assert sample(fams, "sdwatch_unit_memory_bytes", name="nginx.service") == 3 << 20
    assert sample(fams, "sdwatch_schedule_lateness_seconds_count") == 3
    assert sample(fams, "sdwatch_build_info", version="0.1.0") == 1
    # a unit without a cgroup has no memory series, and a probe without a result no success
    assert not [s for s in fams["sdwatch_unit_memory_bytes"].samples
                if s.labels["name"] == "worker.service"]


def test_metrics_carry_no_target_or_reason() -> None:
    source = Source()
    body = exposition(source).decode()
    for secret in ("admin", "127.0.0.1", "timeout after"):
        assert secret not in body


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian: prometheus)")
def test_metrics_pass_promtool_check_metrics() -> None:
    source = Source()
    body = exposition(source)
    out = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout + out.stderr == b""  # no lint warnings either


def test_status_is_the_status_json_document() -> None:
    source = Source()
    r = call(Api(source), "GET", "/api/v1/status", USER)
    assert r.status == 200 and r.content_type == "application/json"
    assert json.loads(r.body) == json.loads(json.dumps(status.to_json(source.snap)))
    assert r.body.count(b"timeout after 1s") >= 1


def test_status_json_round_trips() -> None:
    doc = status.to_json(snap(*units()))
    assert status.to_json(status.from_json(json.loads(json.dumps(doc)))) == doc
    with pytest.raises(ValueError):
        status.from_json({"schema": "sdwatch.status/1", "units": [{"name": 1}]})
    with pytest.raises(ValueError):
        status.from_json({"schema": "other"})


@pytest.mark.parametrize(("name", "code"), [("nginx.service", 200), ("worker.service", 429),
                                            ("memcached.service", 503), ("db.service", 503),
                                            ("nope.service", 404)])
def test_unit_status_code_is_for_load_balancers(name: str, code: int) -> None:
    r = call(Api(Source()), "GET", f"/api/v1/units/{name}", TCP)
    assert r.status == code
    if code != 404:
        assert json.loads(r.body)["name"] == name


def test_unit_http_status_for_every_health() -> None:
    assert {h: unit_http_status(h) for h in (Health.HEALTHY, Health.STARTING,
                                             Health.FAILING)} == {
        Health.HEALTHY: 200, Health.STARTING: 429, Health.FAILING: 503}
    assert all(unit_http_status(h) in (200, 429, 503) for h in Health)


def test_commands_from_root_on_the_socket() -> None:
    source = Source()
    r = call(Api(source), "POST", "/api/v1/units/memcached.service/monitor", ROOT)
    assert r.status == 202 and json.loads(r.body) == {
        "unit": "memcached.service", "command": "monitor", "health": "starting"}
    assert source.commands == [("memcached.service", "monitor")]


@pytest.mark.parametrize(("peer", "headers"), [
    (USER, {}), (TCP, {}), (TCP, {"Authorization": "Bearer wrong"}),
    (TCP, {"Authorization": "Basic c2VjcmV0"}), (TCP, {"Authorization": "Bearer "})])
def test_commands_refused_without_root_or_token(peer: Peer, headers: dict) -> None:
    source = Source()
    for api in (Api(source), Api(source, token="s3cret")):
        r = call(api, "POST", "/api/v1/units/memcached.service/restart", peer, **headers)
        assert r.status == 403
    assert source.commands == []


def test_commands_with_the_token_over_tcp() -> None:
    source = Source()
    api = Api(source, token="s3cret")
    r = call(api, "POST", "/api/v1/units/nginx.service/restart", TCP,
             Authorization="Bearer s3cret")
    assert r.status == 202
    r = call(api, "POST", "/api/v1/units/nope.service/restart", TCP,
             Authorization="Bearer s3cret")
    assert r.status == 404
    assert source.commands == [("nginx.service", "restart")]


def test_unknown_routes_commands_and_methods() -> None:
    api = Api(Source())
    assert call(api, "GET", "/nope").status == 404
    assert call(api, "POST", "/api/v1/units/nginx.service/explode").status == 404
    r = call(api, "GET", "/api/v1/units/nginx.service/restart")
    assert r.status == 405 and ("allow", "POST") in r.headers
    assert call(api, "DELETE", "/metrics").status == 405
    assert call(api, "POST", "/api/v1/units/nginx.service").status == 405


def test_page_shows_every_unit_health_and_is_self_contained() -> None:
    r = call(Api(Source()), "GET", "/", TCP)
    html = r.body.decode()
    assert r.status == 200 and r.content_type.startswith("text/html")
    for name, health in (("memcached.service", "failing"), ("nginx.service", "healthy"),
                         ("worker.service", "starting"), ("db.service", "failed")):
        assert f'data-unit="{name}" data-health="{health}"' in html
    assert "timeout after 1s" in html and "3 by sdwatch" in html
    assert 'http-equiv="refresh"' in html and 'name="viewport"' in html
    assert "http://" not in html and "https://" not in html.replace("***@127.0.0.1", "")
    assert "<script" not in html


def test_page_escapes_what_it_shows() -> None:
    hostile = unit("x.service", problem="<script>alert(1)</script>")
    html = page.render(snap(hostile)).decode()
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_status_hides_passwords_in_probe_urls() -> None:
    from sdwatch.status import _without_password

    assert _without_password("https://admin:pw@host/x") == "https://admin:***@host/x"
    assert _without_password("http://host/a@b") == "http://host/a@b"
    assert _without_password("127.0.0.1:11211") == "127.0.0.1:11211"


def report(source: Source, **query: str):
    return call(Api(source), "GET", "/api/v1/report", USER, query,
                x_sdwatch_config="1:2:3:4:5")


@pytest.mark.parametrize("form", status.FORMS)
def test_report_is_what_status_prints_with_its_exit_code(form: str) -> None:
    source = Source()
    r = report(source, form=form)
    assert (r.status, r.body.decode()) == (200, status.render(source.snap, form))
    assert dict(r.headers)["x-sdwatch-exit"] == "3"  # memcached is failing


@pytest.mark.parametrize("route", ["/api/v1/report", "/"])
def test_times_are_written_in_the_zone_the_machine_has_now(monkeypatch, route) -> None:
    source = Source()
    at = source.snap.generated_at
    monkeypatch.setenv("TZ", "UTC0")
    time.tzset()
    monkeypatch.setenv("TZ", "XYZ-9")  # as timedatectl set-timezone under a running daemon
    try:
        r = call(Api(source), "GET", route, USER, {}, x_sdwatch_config="1:2:3:4:5")
    finally:
        monkeypatch.undo()
        time.tzset()
    shown = ("%a, %d %b %Y %H:%M:%S" if route != "/" else "%Y-%m-%d %H:%M:%S")
    assert time.strftime(shown, time.gmtime(at + 9 * 3600)) in r.body.decode()


def test_report_of_named_units_in_the_order_named() -> None:
    source = Source()
    r = report(source, units="nginx.service,memcached.service,nginx.service")
    picked = status.pick(source.snap, ["nginx.service", "memcached.service"])
    assert [u.name for u in picked.units] == ["nginx.service", "memcached.service"]
    assert picked.selection == "units named on the command line"
    assert r.body.decode() == status.render(picked, "text")
    r = report(source, units="nginx.service")
    assert r.status == 200 and dict(r.headers)["x-sdwatch-exit"] == "0"


def test_report_only_for_the_same_files_and_watched_units() -> None:
    source = Source()
    assert report(source, units="nginx.service,other.service").status == 404
    assert report(source, units="bad name").status == 404
    assert report(source, form="yaml").status == 400
    r = call(Api(source), "GET", "/api/v1/report", USER, x_sdwatch_config="1:2:3:4:6")
    assert r.status == 409 and b"changed" in r.body
    assert call(Api(source), "GET", "/api/v1/report", USER).status == 409
    source.identity = None  # no unit configured: status lists systemd's services itself
    assert report(source).status == 404

def _samples(body: bytes) -> set:
    return {(s.name, tuple(sorted(s.labels.items())), s.value)
            for f in text_string_to_metric_families(body.decode()) for s in f.samples}


def test_exposition_reuses_what_did_not_change_and_shows_what_did() -> None:
    source = Source()
    units, facts = source.metrics()
    kept = metrics.Exposition()
    first = kept.render(units, facts)
    made = kept.made
    assert kept.render(units, facts) == first and kept.made == made  # nothing changed
    db = next(i for i, u in enumerate(units) if u.name == "db.service")
    changed = list(units)
    changed[db] = dataclasses.replace(units[db], active_state="active")
    body = kept.render(changed, facts)
    assert kept.made == made + 1  # only the state family was made again
    fams = families(body)
    assert sample(fams, "node_systemd_unit_state", name="db.service", state="active") == 1
    assert sample(fams, "node_systemd_unit_state", name="db.service", state="failed") == 0
    assert _samples(body) == _samples(metrics.Exposition().render(changed, facts))


def test_exposition_never_serves_a_stale_value() -> None:
    source = Source()
    units, facts = source.metrics()
    kept = metrics.Exposition()
    rng = random.Random(12)
    edits = [
        lambda u: dataclasses.replace(u, active_state=rng.choice(metrics.UNIT_STATES)),
        lambda u: dataclasses.replace(u, health=rng.choice(list(Health))),
        lambda u: dataclasses.replace(u, gave_up=not u.gave_up),
        lambda u: dataclasses.replace(u, restarts_sdwatch=u.restarts_sdwatch + 1),
        lambda u: dataclasses.replace(u, memory=rng.choice([None, rng.randrange(1 << 30)])),
        lambda u: dataclasses.replace(u, cpu_seconds=rng.random() * 100),
        lambda u: dataclasses.replace(u, tasks=rng.randrange(100), service_type="notify"),
        lambda u: dataclasses.replace(u, probes=tuple(dataclasses.replace(
            p, ok=rng.choice([True, False, None]), duration=rng.random(), runs=p.runs + 1,
            failures=p.failures + rng.randrange(2)) for p in u.probes)),
    ]
    for _ in range(200):
        i = rng.randrange(len(units))
        units = (*units[:i], rng.choice(edits)(units[i]), *units[i + 1:])
        facts = dataclasses.replace(facts, reload_ok=rng.random() < 0.5)
        assert kept.render(units, facts) == metrics.Exposition().render(units, facts)
    assert _samples(kept.render(units, facts)) == _samples(metrics.Exposition().render(
        units, facts))


def test_page_escapes_as_the_html_module_does() -> None:
    import html

    for text in ("<a href=\"x\">'&amp;'</a>", "plain", "&&<<>>\"\"''", "é ✓ \u2028"):
        assert page.escape(text) == html.escape(text, quote=True)
