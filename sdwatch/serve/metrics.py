"""``GET /metrics``: the daemon's figures in Prometheus' text format, through prometheus_client.

Names follow what Prometheus users already query: node_exporter's systemd collector
(``node_systemd_unit_state{name,state,type}``, ``node_systemd_service_restart_total``) and
blackbox_exporter (``probe_success``, ``probe_duration_seconds``); the rest is
``sdwatch_*``, counters end in ``_total``.  Labels are unit names, probe names and kinds only:
never a probe's target, reason or anything read from a secret.

A scrape of a thousand units is 25,000 samples, and most of them (states, health, flags,
restart counters) change rarely.  :class:`Exposition` keeps the text of each group of
families with the values it was made from, and makes it again only when one of those values
differs: the text is a function of the values alone, so it can never be stale.  Whole
families are concatenated, which is valid exposition text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence

from sdwatch.schedule import LATENESS_BOUNDS as LATENESS_BUCKETS
from sdwatch.states import Health

if TYPE_CHECKING:
    from prometheus_client.core import Metric

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# node_exporter's unitStatesName: one series per state, 1 for the current one
UNIT_STATES = ("active", "activating", "deactivating", "inactive", "failed")


@dataclass(frozen=True)
class Facts:
    """The daemon's own figures for metrics: version, start, reloads, schedule lateness."""

    version: str
    started_at: float
    reload_ok: bool = True
    reload_at: float = 0.0  # the last successful (re)load of the configuration
    lateness_buckets: tuple[int, ...] = ()  # cumulative counts per LATENESS_BUCKETS, then +Inf
    lateness_sum: float = 0.0


@dataclass(frozen=True)
class ProbeFigures:
    """One probe's series: its last run (None: no result yet) and its counters."""

    name: str
    kind: str
    ok: bool | None
    duration: float | None
    runs: int = 0
    failures: int = 0


@dataclass(frozen=True)
class UnitFigures:
    """Everything /metrics shows of one unit."""

    name: str
    active_state: str
    service_type: str  # the label node_exporter gives: Type= of a service, "" for most others
    health: Health
    gave_up: bool = False
    unmonitored: bool = False
    restarts_sdwatch: int = 0
    restarts_systemd: int = 0  # shown for services only
    memory: int | None = None
    cpu_seconds: float | None = None
    tasks: int | None = None
    probes: tuple[ProbeFigures, ...] = ()


Key = tuple
Build = Callable[[Key], Iterator["Metric"]]


class Exposition:
    """Renders figures, keeping each group's text while the values it shows are equal."""

    def __init__(self) -> None:
        self._texts: dict[str, tuple[Key, bytes]] = {}
        self.made = 0  # groups whose text was made, not reused: for tests and benchmarks

    def render(self, units: Sequence[UnitFigures], facts: Facts) -> bytes:
        """Return the exposition text of ``units`` and the daemon's ``facts``."""
        parts = []
        for name, key, build in _groups(units, facts):
            kept = self._texts.get(name)
            if kept is None or kept[0] != key:
                kept = (key, _text(build(key)))
                self._texts[name] = kept
                self.made += 1
            parts.append(kept[1])
        return b"".join(parts)


def _groups(units: Sequence[UnitFigures], facts: Facts) -> Iterator[tuple[str, Key, Build]]:
    """Each group of families: its name, the values its text is made of, how it is made."""
    yield "daemon", (facts.version, facts.started_at, facts.reload_ok, facts.reload_at,
                     facts.lateness_buckets, facts.lateness_sum), _daemon
    yield "state", tuple((u.name, u.active_state, u.service_type) for u in units), _state
    yield "health", tuple((u.name, u.health) for u in units), _health
    yield "flags", tuple((u.name, u.gave_up, u.unmonitored) for u in units), _flags
    yield "restarts", tuple((u.name, u.restarts_sdwatch, u.restarts_systemd)
                            for u in units), _restarts
    yield "memory", tuple((u.name, u.memory) for u in units if u.memory is not None), _memory
    yield "cpu", tuple((u.name, u.cpu_seconds) for u in units
                       if u.cpu_seconds is not None), _cpu
    yield "tasks", tuple((u.name, u.tasks) for u in units if u.tasks is not None), _tasks
    yield "success", tuple((u.name, p.name, p.kind, p.ok) for u in units for p in u.probes
                           if p.ok is not None), _success
    yield "duration", tuple((u.name, p.name, p.kind, p.duration) for u in units
                            for p in u.probes if p.duration is not None), _duration
    yield "runs", tuple((u.name, p.name, p.kind, p.runs) for u in units
                        for p in u.probes), _runs
    yield "failures", tuple((u.name, p.name, p.kind, p.failures) for u in units
                            for p in u.probes), _failures


def _text(families: Iterable[Metric]) -> bytes:
    # imported on the first scrape: prometheus_client is most of the API's memory
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(list(families)))
    return generate_latest(registry)


class _Families:
    """A collector of families made already."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def _gauge(name: str, doc: str, labels: Sequence[str] = ()) -> Metric:
    from prometheus_client.core import GaugeMetricFamily

    return GaugeMetricFamily(name, doc, labels=list(labels))


def _counter(name: str, doc: str, labels: Sequence[str]) -> Metric:
    from prometheus_client.core import CounterMetricFamily

    return CounterMetricFamily(name, doc, labels=list(labels))


def _daemon(key: Key) -> Iterator[Metric]:
    from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

    version, started_at, reload_ok, reload_at, lateness, lateness_sum = key
    info = _gauge("sdwatch_build_info", "sdwatch's version; always 1.", ["version"])
    info.add_metric([version], 1)
    yield info
    yield GaugeMetricFamily("sdwatch_start_time_seconds",
                            "When the sdwatch daemon started, seconds since the epoch.",
                            value=started_at)
    yield GaugeMetricFamily("sdwatch_config_last_reload_successful",
                            "Whether the last configuration reload succeeded.",
                            value=1 if reload_ok else 0)
    yield GaugeMetricFamily("sdwatch_config_last_reload_success_timestamp_seconds",
                            "When the configuration was last loaded successfully.",
                            value=reload_at)
    hist = HistogramMetricFamily("sdwatch_schedule_lateness_seconds",
                                 "How late scheduled probes and checks started.")
    counts = lateness or (0,) * (len(LATENESS_BUCKETS) + 1)
    buckets = [(_le(b), c) for b, c in zip(LATENESS_BUCKETS, counts[:-1], strict=True)]
    buckets.append(("+Inf", counts[-1]))
    hist.add_metric([], buckets, lateness_sum)
    yield hist


def _state(key: Key) -> Iterator[Metric]:
    state = _gauge("node_systemd_unit_state",
                   "systemd unit state (ActiveState), 1 for the current one.",
                   ["name", "state", "type"])
    for name, active, kind in key:
        for s in UNIT_STATES:
            state.add_metric([name, s, kind], 1 if active == s else 0)
    yield state


def _health(key: Key) -> Iterator[Metric]:
    health = _gauge("sdwatch_unit_health", "sdwatch's verdict on a unit, 1 for the current one.",
                    ["name", "health"])
    for name, verdict in key:
        for h in Health:
            health.add_metric([name, h.value], 1 if verdict is h else 0)
    yield health


def _flags(key: Key) -> Iterator[Metric]:
    gave_up = _gauge("sdwatch_unit_gave_up", "1 when sdwatch reached the unit's restart limit "
                     "and stopped acting.", ["name"])
    unmonitored = _gauge("sdwatch_unit_unmonitored", "1 when sdwatch no longer acts on the unit.",
                         ["name"])
    for name, gave, unwatched in key:
        gave_up.add_metric([name], 1 if gave else 0)
        unmonitored.add_metric([name], 1 if unwatched else 0)
    yield from (gave_up, unmonitored)


def _restarts(key: Key) -> Iterator[Metric]:
    by_us = _counter("sdwatch_unit_restarts", "Restarts (and starts) of a unit by sdwatch, kept "
                     "across sdwatch restarts.", ["name"])
    by_systemd = _counter("node_systemd_service_restart",
                          "Restarts of a service by systemd (NRestarts).", ["name"])
    for name, ours, systemd in key:
        by_us.add_metric([name], ours)
        if name.endswith(".service"):
            by_systemd.add_metric([name], systemd)
    yield from (by_us, by_systemd)


def _per_unit(family: Metric, key: Key) -> Iterator[Metric]:
    for name, value in key:
        family.add_metric([name], value)
    yield family


def _memory(key: Key) -> Iterator[Metric]:
    return _per_unit(_gauge("sdwatch_unit_memory_bytes", "Memory charged to the unit's cgroup.",
                            ["name"]), key)


def _cpu(key: Key) -> Iterator[Metric]:
    return _per_unit(_counter("sdwatch_unit_cpu_seconds", "CPU time of the unit's cgroup.",
                              ["name"]), key)


def _tasks(key: Key) -> Iterator[Metric]:
    return _per_unit(_gauge("sdwatch_unit_tasks", "Threads in the unit's cgroup.", ["name"]),
                     key)


_PROBE_LABELS = ("unit", "probe", "kind")


def _per_probe(family: Metric, key: Key) -> Iterator[Metric]:
    for unit, probe, kind, value in key:
        family.add_metric([unit, probe, kind], value)
    yield family


def _success(key: Key) -> Iterator[Metric]:
    return _per_probe(_gauge("probe_success", "Whether the probe's last run succeeded.",
                             _PROBE_LABELS), tuple(k[:3] + (1 if k[3] else 0,) for k in key))


def _duration(key: Key) -> Iterator[Metric]:
    return _per_probe(_gauge("probe_duration_seconds", "How long the probe's last run took.",
                             _PROBE_LABELS), key)


def _runs(key: Key) -> Iterator[Metric]:
    return _per_probe(_counter("sdwatch_probe_runs", "Probe runs since sdwatch started.",
                               _PROBE_LABELS), key)


def _failures(key: Key) -> Iterator[Metric]:
    return _per_probe(_counter("sdwatch_probe_failures", "Failed probe runs since sdwatch "
                               "started.", _PROBE_LABELS), key)


def _le(bound: float) -> str:
    return repr(float(bound))
