"""sdwatch init's discovery on real servers started by the tests: the facts read from /proc for
their processes give a config that validates and whose probes pass, and fail when frozen."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psutil
import pytest

from sdwatch import checks, config, discover, machine

from . import servers

pytestmark = pytest.mark.integration


def facts(unit: str, *procs) -> machine.Service:
    pids = set()
    for proc in procs:
        pids.add(proc.pid)
        pids.update(c.pid for c in psutil.Process(proc.pid).children(recursive=True))
    return machine.service_facts(unit, "", pids, None)


def test_discovered_stack_validates_and_its_probes_pass(
        tmp_path: Path, memcached: servers.Server, nginx: servers.Server,
        mariadb: servers.Server, redis: servers.Server, postgresql: servers.Server) -> None:
    stack = [
        facts("memcached.service", memcached.proc),
        facts("nginx.service", nginx.proc),
        facts("mariadb.service", mariadb.proc),
        facts("redis-server.service", redis.proc),
        facts("postgresql@15-main.service", postgresql.proc),
    ]
    seen = {s.unit: {str(ln) for ln in s.listeners} for s in stack}
    assert memcached.address in seen["memcached.service"]
    assert {mariadb.socket, mariadb.address} <= seen["mariadb.service"]
    assert {redis.socket, redis.address} <= seen["redis-server.service"]
    assert postgresql.socket in seen["postgresql@15-main.service"]
    assert nginx.socket in seen["nginx.service"]

    plan = discover.plan(stack)
    assert plan.units == 5 and discover.check_text(plan.text) == []
    path = tmp_path / "sdwatch.toml"
    path.write_text(plan.text)
    cfg = config.load(str(path))
    kinds = {u: [p.kind for p in cfg.units[u].probes] for u in cfg.units}
    assert kinds == {"memcached.service": ["memcached"], "nginx.service": ["http"],
                     "mariadb.service": ["mysql"], "redis-server.service": ["redis"],
                     "postgresql@15-main.service": ["postgresql"]}, plan.text
    # this nginx's TLS port is not 443: nothing but probing could tell which port speaks TLS,
    # so its http proposal may point at either (the harness test runs nginx on port 80)
    results = asyncio.run(checks.check_units(cfg, [u for u in cfg.units if u != "nginx.service"]))
    probes = [r for r in results if r.kind != "limit"]
    assert len(probes) == 4 and all(r.ok for r in probes), probes

    with redis.stopped():
        frozen = asyncio.run(checks.check_units(cfg, ["redis-server.service"]))
    probe = next(r for r in frozen if r.kind == "redis")
    assert probe.outcome == "timeout" and "waiting for PONG" in probe.reason, probe
