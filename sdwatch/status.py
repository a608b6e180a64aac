"""The one status snapshot producer, shared by ``status``, ``summary`` and ``--json``.

``collect`` asks systemd and the cgroups; the renderers are pure functions of a Snapshot.
JSON schema: docs/status-json.md (``"schema": "sdwatch.status/1"``).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from sdwatch import __version__
from sdwatch.config import Config, ProbeConfig
from sdwatch.quantities import format_duration, format_size
from sdwatch.resources import SystemSample, UnitSample, average_cpu_percent
from sdwatch.states import Health, judge_health, unit_name_problem

if TYPE_CHECKING:
    from sdwatch.snapshot import DaemonSnapshot, Failure, LimitView, ProbeView, UnitView
    from sdwatch.systemd import Systemd
    from sdwatch.unitinfo import UnitInfo

SCHEMA = "sdwatch.status/1"
JSON = dict[str, object]


@dataclass(frozen=True)
class ProbeStatus:
    """A configured probe as status shows it."""

    name: str
    kind: str
    target: str
    interval: float
    timeout: float
    failures: int
    last: ProbeView | None = None  # the running daemon's view of it

    @property
    def last_failure(self) -> Failure | None:
        """The daemon's last failure of this probe."""
        return self.last.last_failure if self.last else None

    def to_json(self) -> JSON:
        last = self.last
        return {"name": self.name, "kind": self.kind, "target": self.target,
                "interval": self.interval, "timeout": self.timeout, "failures": self.failures,
                "last": {"ok": last.ok, "outcome": last.outcome, "reason": last.reason,
                         "duration": last.duration, "at": last.at}
                if last and last.at is not None else None,
                "last_failure": self.last_failure.to_json() if self.last_failure else None}


@dataclass(frozen=True)
class UnitStatus:
    """Everything status shows about one unit.  Sizes in bytes, times in seconds."""

    name: str
    description: str
    health: Health
    load_state: str
    active_state: str
    sub_state: str
    result: str
    unit_file_state: str
    main_pid: int
    uptime: float | None
    restarts_systemd: int
    processes: int
    children: int
    tasks: int | None
    memory: int | None
    rss: int | None
    cpu_percent: float | None
    cpu_seconds: float | None
    cpu_window: str  # what cpu_percent is averaged over
    fds: int | None
    configured: bool
    probes: tuple[ProbeStatus, ...] = ()
    problem: str = ""  # why the unit is not healthy, in a few words
    collected_at: float = 0.0  # seconds since the epoch
    restarts_sdwatch: int | None = None  # None: the daemon is not running
    last_failure: Failure | None = None  # the daemon's
    limits: tuple[LimitView, ...] = ()  # the daemon's last readings of the unit's limits

    def to_json(self) -> JSON:
        d: JSON = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["health"] = self.health.value
        d["probes"] = [p.to_json() for p in self.probes]
        d["last_failure"] = self.last_failure.to_json() if self.last_failure else None
        d["limits"] = {lim.resource: lim.to_json() for lim in self.limits}
        return d


@dataclass(frozen=True)
class DaemonInfo:
    """Whether ``sdwatch run`` is running, and its snapshot when it is."""

    running: bool | None  # None: cannot be known (its runtime directory is unreadable)
    path: str  # where it was read: its status.json, or its API socket
    pid: int | None = None
    status: str = ""
    updated_at: float | None = None
    last_pid: int | None = None  # of a daemon that wrote status.json and is gone
    problem: str = ""  # why running is None
    snapshot: DaemonSnapshot | None = None

    def to_json(self) -> JSON:
        d: JSON = {"running": self.running, "path": self.path}
        if self.running:
            d.update(pid=self.pid, status=self.status, updated_at=self.updated_at)
        if self.last_pid is not None:
            d["last_pid"] = self.last_pid
        if self.problem:
            d["problem"] = self.problem
        return d


@dataclass(frozen=True)
class Snapshot:
    """A whole status report."""

    generated_at: float
    system: SystemSample
    units: tuple[UnitStatus, ...]
    config_files: tuple[str, ...] = ()
    selection: str = ""  # how units were chosen, for the reader
    daemon: DaemonInfo | None = None

    @property
    def healthy(self) -> bool:
        """True when every shown unit is healthy or starting."""
        return all(u.health.ok for u in self.units)


def select_units(sd: Systemd, config: Config, names: Sequence[str], all_units: bool) -> tuple[
        list[str], str]:
    """Return the unit names to show and a phrase saying how they were chosen."""
    if names:
        return list(dict.fromkeys(names)), "units named on the command line"
    if all_units:
        return [u.name for u in sd.list_units()], "all loaded services"
    if not config.zero_config:
        return list(config.units), "configured units"
    return ([u.name for u in sd.list_units(states=("active", "failed"))],
            "active or failed services (no unit configured)")


def collect(sd: Systemd, config: Config, names: Sequence[str] = (), all_units: bool = False,
            ) -> Snapshot:
    """Ask systemd about the selected units and sample their cgroups; return a Snapshot."""
    from sdwatch import resources
    from sdwatch.systemd import UnitError

    daemon = read_daemon(config.settings.runtime_dir)
    chosen, how = select_units(sd, config, names, all_units)
    valid = [n for n in chosen if not unit_name_problem(n)]
    rows = {row.name: row for row in sd.units_by_name(valid)}
    units = []
    for name in chosen:
        problem = unit_name_problem(name)
        try:
            if problem:
                raise UnitError(problem)
            info = sd.unit_info(name, rows.get(name), brief=True)
        except UnitError as exc:
            units.append(missing_unit(name, str(exc), name in config.units))
            continue
        sample = None
        if info.control_group and info.active_state in ("active", "reloading", "deactivating",
                                                        "activating"):
            sample = resources.sample_unit(info.control_group, info.main_pid, info.cpu_usage_nsec,
                                           info.memory_current)
        seen = daemon.snapshot.unit(name) if daemon.snapshot else None
        units.append(with_daemon(unit_status(info, sample, config), seen))
    return Snapshot(generated_at=time.time(), system=resources.sample_system(),
                    units=tuple(units), config_files=config.files, selection=how,
                    daemon=daemon)


def read_daemon(runtime_dir: str) -> DaemonInfo:
    """Return whether the daemon that wrote ``runtime_dir``/status.json still runs, with
    its snapshot when it does."""
    import os

    from sdwatch.resources import process_start

    path = os.path.join(runtime_dir, "status.json")
    try:
        with open(path) as f:
            import json  # here: no daemon, no file, no json to import

            data = json.load(f)
        from sdwatch.snapshot import DaemonSnapshot  # here: its records cost ~5 ms to import

        snap = DaemonSnapshot.from_json(data)
    except PermissionError:
        return DaemonInfo(None, path, problem="permission denied")
    except (OSError, ValueError):  # none, bad JSON, or not a snapshot of this version
        return DaemonInfo(False, path)
    # the same process that wrote it, not another one that got its PID since
    if snap.pid_start is None or process_start(snap.pid) != snap.pid_start:
        return DaemonInfo(False, path, last_pid=snap.pid)
    return DaemonInfo(True, path, snap.pid, snap.status, snap.updated_at, snapshot=snap)


def with_daemon(u: UnitStatus, seen: UnitView | None) -> UnitStatus:
    """Given a unit as systemd shows it and the daemon's view of it, add what the daemon
    knows: probe results, its verdict, restarts."""
    if seen is None:
        return u
    probes = tuple(dataclasses.replace(p, last=seen.probe(p.name) or p.last)
                   for p in u.probes)
    health, problem = u.health, u.problem
    if merged_health(u.health, seen.health) is not u.health:
        health = seen.health
        problem = seen.last_failure.reason if seen.last_failure else ""
    return dataclasses.replace(u, probes=probes, health=health, problem=problem,
                               restarts_sdwatch=seen.restarts_by_sdwatch,
                               last_failure=seen.last_failure, limits=seen.limits)


def merged_health(systemd: Health, daemon: Health) -> Health:
    """A unit's health from systemd's view and the daemon's verdict: systemd's stands for
    failed and stopped units; the daemon adds failing, gave-up, ..."""
    return daemon if systemd.ok and not daemon.ok else systemd


def _probe_target(probe: ProbeConfig) -> str:
    from sdwatch.probes import REGISTRY

    kind = REGISTRY.get(probe.kind)
    fields = ((kind.target,) if kind else ()) + ("socket", "url", "address", "path", "command")
    for name in fields:
        value = getattr(probe.spec, name, None)
        if value:
            return _without_password(value if isinstance(value, str) else
                                     " ".join(map(str, value)))
    return ""


def _without_password(target: str) -> str:
    """A URL's password never leaves the machine: status is also served over the API."""
    scheme, sep, rest = target.partition("://")
    userinfo, at, host = rest.partition("@")
    if sep and at and ":" in userinfo and "/" not in userinfo:
        return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"
    return target


def unit_status(info: UnitInfo, sample: UnitSample | None, config: Config) -> UnitStatus:
    now = time.time()
    health = judge_health(info.active_state, info.sub_state, info.load_state)
    uptime = None
    if info.active_state == "active" and info.active_enter_timestamp:
        uptime = max(0.0, now - info.active_enter_timestamp / 1e6)
    cpu_pct = cpu_window = None
    if sample is not None and uptime is not None:
        since = info.exec_main_start_timestamp or info.active_enter_timestamp
        cpu_pct = average_cpu_percent(sample, now - since / 1e6)
        cpu_window = "average since start"
    unit_cfg = config.units.get(info.id)
    probes = tuple(ProbeStatus(p.name, p.kind, _probe_target(p), p.interval, p.timeout,
                               p.failures) for p in (unit_cfg.probes if unit_cfg else ()))
    problem = ""
    if health is Health.FAILED:
        problem = f"failed (result: {info.result})" if info.result else "failed"
    elif health is Health.STOPPED:
        problem = "not running"
    return UnitStatus(
        name=info.id, description=info.description, health=health, load_state=info.load_state,
        active_state=info.active_state, sub_state=info.sub_state, result=info.result,
        unit_file_state=info.unit_file_state, main_pid=info.main_pid, uptime=uptime,
        restarts_systemd=info.n_restarts,
        processes=len(sample.pids) if sample else 0,
        children=sample.children if sample else 0,
        tasks=sample.tasks if sample else info.tasks_current,
        memory=sample.memory if sample else None,
        rss=sample.rss if sample else None,
        cpu_percent=cpu_pct, cpu_seconds=sample.cpu_seconds if sample else None,
        cpu_window=cpu_window or "", fds=sample.fds if sample else None,
        configured=unit_cfg is not None, probes=probes, problem=problem, collected_at=now)


def missing_unit(name: str, why: str, configured: bool) -> UnitStatus:
    return UnitStatus(
        name=name, description="", health=Health.MISSING, load_state="not-found",
        active_state="inactive", sub_state="dead", result="", unit_file_state="", main_pid=0,
        uptime=None, restarts_systemd=0, processes=0, children=0, tasks=None, memory=None,
        rss=None, cpu_percent=None, cpu_seconds=None, cpu_window="", fds=None,
        configured=configured, problem=why, collected_at=time.time())


# -- renderers ------------------------------------------------------------------------------------

_W = 30  # label column width, as monit's


def _line(label: str, value: str) -> str:
    return f"  {label:<{_W}}{value}"


def _when(ts: float) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S", time.localtime(ts))


def render_text(snap: Snapshot) -> str:
    """Return the monit-like text report."""
    s = snap.system
    mem_pct = 100.0 * s.memory_used / s.memory_total if s.memory_total else 0.0
    swap_pct = 100.0 * s.swap_used / s.swap_total if s.swap_total else 0.0
    out = [f"sdwatch {__version__}: {len(snap.units)} {_plural(len(snap.units), 'unit')} "
           f"({snap.selection}) on {s.hostname}", "",
           f"System '{s.hostname}'",
           _line("uptime", format_duration(s.uptime)),
           _line("load average", "[{:.2f}] [{:.2f}] [{:.2f}]".format(*s.load)),
           _line("cpu (since boot)", f"{s.cpu_user:.1f}%usr {s.cpu_system:.1f}%sys "
                                     f"{s.cpu_iowait:.1f}%iowait, {s.cpus} cores"),
           _line("memory usage", f"{format_size(s.memory_used)} of {format_size(s.memory_total)}"
                                 f" [{mem_pct:.1f}%]"),
           _line("swap usage", f"{format_size(s.swap_used)} of {format_size(s.swap_total)} "
                               f"[{swap_pct:.1f}%]"),
           _line("data collected", _when(snap.generated_at)),
           _line("sdwatch daemon", _daemon_line(snap.daemon))]
    for u in snap.units:
        out += ["", *_unit_block(u)]
    return "\n".join(out) + "\n"


def _unit_block(u: UnitStatus) -> list[str]:
    kind = u.name.rsplit(".", 1)[-1].capitalize()
    lines = [f"{kind} '{u.name}'",
             _line("status", u.health.value + (f" - {u.problem}" if u.problem else "")),
             _line("systemd state", f"{u.active_state} ({u.sub_state})" +
                   (f", result {u.result}" if u.result and u.result != "success" else ""))]
    if u.description and u.description != u.name:
        lines.append(_line("description", u.description))
    if u.unit_file_state:
        lines.append(_line("unit file", u.unit_file_state))
    if u.main_pid:
        lines.append(_line("main pid", str(u.main_pid)))
    if u.uptime is not None:
        lines.append(_line("uptime", format_duration(u.uptime)))
    if u.health is not Health.MISSING:
        by_us = f", {u.restarts_sdwatch} by sdwatch" if u.restarts_sdwatch is not None else ""
        lines.append(_line("restarts", f"{u.restarts_systemd} by systemd{by_us}"))
    if u.processes:
        lines.append(_line("tasks", f"{u.tasks} ({u.processes} "
                                    f"{_plural(u.processes, 'process', 'processes')}, "
                                    f"{u.children} {_plural(u.children, 'child', 'children')})"))
    if u.memory is not None:
        lines.append(_line("memory (cgroup)", format_size(u.memory) +
                           (f" (rss {format_size(u.rss)})" if u.rss is not None else "")))
    if u.cpu_percent is not None:
        lines.append(_line("cpu", f"{u.cpu_percent:.1f}% {u.cpu_window} "
                                  f"({u.cpu_seconds:.2f}s total)"))
    if u.fds is not None:
        lines.append(_line("open files", str(u.fds)))
    elif u.processes:
        lines.append(_line("open files", "unknown (another user's processes: run as root)"))
    for p in u.probes:
        lines.append(_line(f"probe {p.name}", f"{p.kind} {p.target} every "
                                              f"{format_duration(p.interval)}, timeout "
                                              f"{format_duration(p.timeout)}"))
        if p.last and p.last.at is not None:
            ms = (p.last.duration or 0) * 1000
            lines.append(_line("  last result", f"{p.last.outcome} in {ms:.1f}ms: "
                                                f"{p.last.reason} ({_ago(p.last.at)})"))
        if p.last_failure:
            lines.append(_line("  last failure", f"{p.last_failure.reason} "
                                                 f"({_ago(p.last_failure.at)})"))
    for lim in u.limits:
        if lim.at is not None:
            over = f", over for {lim.over_for} cycles" if lim.over_for else ""
            lines.append(_line(f"limit {lim.resource}", f"{lim.reason}{over}"
                                                        f"{' (acted on)' if lim.tripped else ''}"
                                                        f" ({_ago(lim.at)})"))
    lines.append(_line("data collected", _when(u.collected_at)))
    return lines


def _ago(at: float | None) -> str:
    if at is None:
        return "at an unknown time"
    return f"{format_duration(max(0.0, time.time() - at))} ago"


def _daemon_line(daemon: DaemonInfo | None) -> str:
    if daemon is not None and daemon.running:
        return f"running, pid {daemon.pid}: {daemon.status}"
    if daemon is not None and daemon.running is None:
        return (f"unknown: {daemon.problem} reading {daemon.path} (run as root, or as a "
                "member of the group that may read it)")
    return "not running: probes are not being checked (systemctl start sdwatch)"


def render_summary(snap: Snapshot) -> str:
    """Return one line per unit: name, health, systemd state, memory, cpu."""
    width = max([len(u.name) for u in snap.units] + [10])
    out = [f"{'Unit':<{width}}  {'Health':<11} {'State':<22} {'Memory':>10} {'CPU':>6} {'Up':>8}"]
    for u in snap.units:
        state = f"{u.active_state} ({u.sub_state})"
        mem = format_size(u.memory) if u.memory is not None else "-"
        cpu = f"{u.cpu_percent:.1f}%" if u.cpu_percent is not None else "-"
        up = format_duration(u.uptime) if u.uptime is not None else "-"
        out.append(f"{u.name:<{width}}  {u.health.value:<11} {state:<22} {mem:>10} {cpu:>6} "
                   f"{up:>8}")
    return "\n".join(out) + "\n"


FORMS = ("text", "summary", "json")  # what ``render`` can make


def render(snap: Snapshot, form: str) -> str:
    """Return the report as ``sdwatch status`` (text), ``summary`` or ``status --json``
    prints it."""
    if form == "summary":
        return render_summary(snap)
    if form == "json":
        import json

        return json.dumps(to_json(snap), indent=2) + "\n"
    return render_text(snap)


def pick(snap: Snapshot, names: Sequence[str]) -> Snapshot | None:
    """The report of the named units only, in the order named (all when none is named);
    None when one of them is not in ``snap``."""
    if not names:
        return snap
    by_name = {u.name: u for u in snap.units}
    if any(name not in by_name for name in names):
        return None
    return dataclasses.replace(snap, units=tuple(by_name[n] for n in dict.fromkeys(names)),
                               selection="units named on the command line")


def to_json(snap: Snapshot) -> JSON:
    """Return the documented JSON form of a snapshot."""
    return {
        "schema": SCHEMA,
        "version": __version__,
        "generated_at": snap.generated_at,
        "selection": snap.selection,
        "config_files": list(snap.config_files),
        "healthy": snap.healthy,
        "daemon": snap.daemon.to_json() if snap.daemon else {},
        "system": dataclasses.asdict(snap.system),
        "units": [u.to_json() for u in snap.units],
    }


def _plural(n: int, one: str, many: str | None = None) -> str:
    return one if n == 1 else (many or one + "s")


def from_json(data: object) -> Snapshot:
    """Given what ``to_json`` returned (e.g. by the daemon over its socket), return the
    Snapshot; raise ValueError when it is not that document."""
    from sdwatch.snapshot import Failure, LimitView, ProbeView

    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ValueError(f"not a {SCHEMA} document")
    try:
        units = []
        for d in data["units"]:
            d = dict(d)
            d["health"] = Health(d["health"])
            probes = []
            for p in d.get("probes", ()):
                p = dict(p)
                last, failure = p.pop("last", None), p.pop("last_failure", None)
                view = None
                if last or failure:
                    last = last or {}
                    view = ProbeView(p["name"], last.get("ok"), last.get("outcome"),
                                     last.get("reason", ""), last.get("duration"),
                                     last.get("at"), last_failure=Failure.from_json(failure))
                probes.append(ProbeStatus(**p, last=view))
            d["probes"] = tuple(probes)
            d["last_failure"] = Failure.from_json(d.get("last_failure"))
            d["limits"] = tuple(LimitView.from_json(k, v)
                                for k, v in (d.get("limits") or {}).items())
            units.append(UnitStatus(**d))
        system = dict(data["system"])
        system["load"] = tuple(system["load"])
        daemon = data.get("daemon") or {}
        info = DaemonInfo(daemon.get("running"), daemon.get("path", ""), daemon.get("pid"),
                          daemon.get("status", ""), daemon.get("updated_at"),
                          daemon.get("last_pid"), daemon.get("problem", "")) if daemon else None
        return Snapshot(generated_at=data["generated_at"], system=SystemSample(**system),
                        units=tuple(units), config_files=tuple(data.get("config_files", ())),
                        selection=data.get("selection", ""), daemon=info)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"bad {SCHEMA} document: {exc}") from None
