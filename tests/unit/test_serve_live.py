"""The daemon as the API's source, without a systemd: /metrics read straight from the watches
says what the status snapshot says."""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib
import time

from test_serve import figures_of

from sdwatch import policy
from sdwatch.config import load
from sdwatch.daemon import Supervisor
from sdwatch.daemon.watch import Watch
from sdwatch.serve import metrics
from sdwatch.serve.api import Api
from sdwatch.serve.httpd import Peer, Request
from sdwatch.serve.live import Live
from sdwatch.snapshot import Failure, ProbeRun
from sdwatch.unitinfo import UnitInfo

UNITS = ("web.service", "db.service", "unread.service", "worker.service", "data.mount")


def _info(name: str, active: str, sub: str, **kw: object) -> UnitInfo:
    base = dict(id=name, description=name, load_state="loaded", active_state=active,
                sub_state=sub, unit_file_state="", result="success", main_pid=0,
                control_group="", n_restarts=0, active_enter_timestamp=0,
                exec_main_start_timestamp=0, memory_current=None, tasks_current=None,
                cpu_usage_nsec=None)
    base.update(kw)
    return UnitInfo(**base)  # type: ignore[arg-type]


def _supervisor(tmp_path: pathlib.Path) -> Supervisor:
    conf = tmp_path / "sdwatch.toml"
    conf.write_text(f'[sdwatch]\nstate_dir = "{tmp_path}/state"\nruntime_dir = "{tmp_path}/run"\n'
                    + "".join(f'[unit."{n}"]\nprobe = [{{ kind = "exec", name = "p", '
                              'command = ["/bin/true"] }]\n' for n in UNITS))
    cfg = load(str(conf))
    sup = Supervisor(cfg, str(conf))
    now = time.time()
    for name, unit in cfg.units.items():
        sup.watches[name] = Watch(cfg=unit, state=policy.initial(unit, now))
    return sup


def _seen(w: Watch, info: UnitInfo, **state: object) -> None:
    w.took(info)
    w.seen = (info.active_state, info.sub_state, info.main_pid)
    w.state = dataclasses.replace(w.state, active_state=info.active_state,
                                  sub_state=info.sub_state, **state)  # type: ignore[arg-type]


def test_metrics_from_the_watches_equal_those_of_the_status_snapshot(
        tmp_path: pathlib.Path) -> None:
    sup = _supervisor(tmp_path)
    now = time.time()
    own_cgroup = pathlib.Path("/proc/self/cgroup").read_text().splitlines()[0].split(":", 2)[2]
    web = sup.watches["web.service"]
    _seen(web, _info("web.service", "active", "running", control_group=own_cgroup,
                     n_restarts=2, service_type="notify"), total_restarts=3)
    web.probes["p"] = ProbeRun(True, "ok", "ok", 0.004, now)
    web.runs["p"] = (7, 2)
    db = sup.watches["db.service"]
    _seen(db, _info("db.service", "failed", "failed", result="exit-code",
                    service_type="simple"), gave_up_at=now, unmonitored=True)
    db.probes["p"] = ProbeRun(False, "refused", "connection refused", 0.001, now,
                              last_failure=Failure("connection refused", now))
    db.runs["p"] = (4, 4)
    _seen(sup.watches["worker.service"], _info("worker.service", "activating", "start",
                                               tasks_current=3, service_type="oneshot"))
    _seen(sup.watches["data.mount"], _info("data.mount", "active", "mounted",
                                           service_type="ext4"))
    live = Live(sup, str(tmp_path / "sdwatch.sock"))

    figures = figures_of(  # what the status snapshot says, with the daemon's counters
        live.snapshot(), {(n, p): c for n, w in sup.watches.items() for p, c in w.runs.items()},
        {n for n, w in sup.watches.items() if w.state.gave_up},
        {n for n, w in sup.watches.items() if w.state.unmonitored},
        {n: w.service_type for n, w in sup.watches.items()})
    units, facts = live.metrics()
    shown = metrics.Exposition().render(units, facts)
    use = live.usages["web.service"][2]  # the cgroup's usage, not status's sample
    reference = metrics.Exposition().render(tuple(
        dataclasses.replace(f, memory=use.memory, cpu_seconds=use.cpu_seconds, tasks=use.tasks)
        if f.name == "web.service" else f for f in figures), facts)
    # systemd's TasksCurrent of a unit without a cgroup sample: status's brief view never reads it
    worker_tasks = b'sdwatch_unit_tasks{name="worker.service"} 3.0\n'
    assert worker_tasks in shown and shown.replace(worker_tasks, b"") == reference
    text = reference.decode()
    assert 'node_systemd_unit_state{name="web.service",state="active",type="notify"} 1.0' in text
    assert 'type="oneshot"' in text and 'type="ext4"' in text
    assert 'sdwatch_unit_health{health="missing",name="unread.service"} 1.0' in text
    assert 'sdwatch_unit_gave_up{name="db.service"} 1.0' in text
    assert 'sdwatch_probe_failures_total{kind="exec",probe="p",unit="web.service"} 2.0' in text
    assert "web.service" in live.samples  # our own cgroup, sampled for status


def test_a_scrape_reads_usage_and_status_still_samples_everything(
        tmp_path: pathlib.Path) -> None:
    sup = _supervisor(tmp_path)
    own_cgroup = pathlib.Path("/proc/self/cgroup").read_text().splitlines()[0].split(":", 2)[2]
    _seen(sup.watches["web.service"], _info("web.service", "active", "running",
                                            control_group=own_cgroup))
    live = Live(sup, str(tmp_path / "sdwatch.sock"))
    live.metrics()  # the cgroup's usage only: /metrics shows no open files, no processes
    assert "web.service" in live.usages and "web.service" not in live.samples
    web = next(u for u in live.snapshot().units if u.name == "web.service")
    assert web.fds is not None and web.fds > 0 and web.processes > 0
    when, key, use = live.usages["web.service"]
    live.samples["web.service"] = (when, key, dataclasses.replace(  # status's, with other tasks
        live.samples["web.service"][2], tasks=use.tasks + 100))
    units, _ = live.metrics()  # its own reading again: the gauge does not flip
    shown = next(u for u in units if u.name == "web.service")
    assert (shown.memory, shown.cpu_seconds, shown.tasks) == (use.memory, use.cpu_seconds,
                                                              use.tasks)


def test_a_restarted_unit_is_read_again_within_the_sample_ttl(tmp_path: pathlib.Path) -> None:
    sup = _supervisor(tmp_path)
    own_cgroup = pathlib.Path("/proc/self/cgroup").read_text().splitlines()[0].split(":", 2)[2]
    web = sup.watches["web.service"]
    _seen(web, _info("web.service", "active", "running", control_group=own_cgroup))
    live = Live(sup, str(tmp_path / "sdwatch.sock"))
    live.metrics()
    first = live.usages["web.service"]
    live.metrics()
    assert live.usages["web.service"] is first  # within SAMPLE_TTL: read once
    web.main_pid = 4242  # a new main process: what was read is of the old one
    live.metrics()
    assert live.usages["web.service"] is not first
    assert live.usages["web.service"][1] == (own_cgroup, 4242)


def test_units_are_listed_in_the_configurations_order_after_a_reload(
        tmp_path: pathlib.Path) -> None:
    sup = _supervisor(tmp_path)
    sup.watches["web.service"] = sup.watches.pop("web.service")  # as a reload re-adds a change
    assert list(sup.watches) != list(UNITS)
    live = Live(sup, str(tmp_path / "sdwatch.sock"))
    assert [u.name for u in live.snapshot().units] == list(UNITS)
    assert [u.name for u in live.metrics()[0]] == list(UNITS)


def test_no_report_while_a_reload_runs(tmp_path: pathlib.Path) -> None:
    sup = _supervisor(tmp_path)
    api = Api(Live(sup, str(tmp_path / "sdwatch.sock")))
    ask = Request("GET", "/api/v1/report", {"form": "text"},
                  {"x-sdwatch-config": sup.cfg.identity}, b"", Peer(tcp=False, uid=0, pid=1))

    async def during_a_reload() -> int:
        async with sup._reloading:  # what Supervisor.reload holds until the watches follow
            assert sup.reload_running
            return api(ask).status

    assert asyncio.run(during_a_reload()) == 404  # the command asks systemd itself
    assert api(ask).status == 200 and not sup.reload_running
