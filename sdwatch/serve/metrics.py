"""``GET /metrics``: a status snapshot in Prometheus' text format, through prometheus_client.

Names follow what Prometheus users already query: node_exporter's systemd collector
(``node_systemd_unit_state{name,state,type}``, ``node_systemd_service_restart_total``) and
blackbox_exporter (``probe_success``, ``probe_duration_seconds``); the rest is
``sdwatch_*``, counters end in ``_total``.  Labels are unit names, probe names and kinds only:
never a probe's target, reason or anything read from a secret.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator, Mapping

from sdwatch.schedule import LATENESS_BOUNDS as LATENESS_BUCKETS
from sdwatch.states import Health
from sdwatch.status import Snapshot

if TYPE_CHECKING:
    from prometheus_client.core import Metric

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# node_exporter's unitStatesName: one series per state, 1 for the current one
UNIT_STATES = ("active", "activating", "deactivating", "inactive", "failed")


@dataclass(frozen=True)
class ProbeCounts:
    runs: int = 0
    failures: int = 0


@dataclass(frozen=True)
class Facts:
    """What the daemon adds to a snapshot for metrics: counters since it started."""

    version: str
    started_at: float
    reload_ok: bool = True
    reload_at: float = 0.0  # the last successful (re)load of the configuration
    probes: Mapping[tuple[str, str], ProbeCounts] = field(default_factory=dict)
    gave_up: Mapping[str, bool] = field(default_factory=dict)  # unit -> flag
    unmonitored: Mapping[str, bool] = field(default_factory=dict)
    service_types: Mapping[str, str] = field(default_factory=dict)  # unit -> Type=
    lateness_buckets: tuple[int, ...] = ()  # cumulative counts per LATENESS_BUCKETS, then +Inf
    lateness_sum: float = 0.0


def render(snap: Snapshot, facts: Facts) -> bytes:
    """Given a snapshot and the daemon's counters, return the exposition text."""
    # imported on the first scrape: prometheus_client is most of the API's memory (3.5 MiB)
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(snap, facts))
    return generate_latest(registry)


class _Collector:
    def __init__(self, snap: Snapshot, facts: Facts) -> None:
        self.snap, self.facts = snap, facts

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        facts = self.facts
        info = GaugeMetricFamily("sdwatch_build_info", "sdwatch's version; always 1.",
                                 labels=["version"])
        info.add_metric([facts.version], 1)
        yield info
        yield GaugeMetricFamily("sdwatch_start_time_seconds",
                                "When the sdwatch daemon started, seconds since the epoch.",
                                value=facts.started_at)
        yield GaugeMetricFamily("sdwatch_config_last_reload_successful",
                                "Whether the last configuration reload succeeded.",
                                value=1 if facts.reload_ok else 0)
        yield GaugeMetricFamily("sdwatch_config_last_reload_success_timestamp_seconds",
                                "When the configuration was last loaded successfully.",
                                value=facts.reload_at)
        yield self._lateness()
        yield from self._units()
        yield from self._probes()

    def _lateness(self) -> Metric:
        from prometheus_client.core import HistogramMetricFamily

        hist = HistogramMetricFamily("sdwatch_schedule_lateness_seconds",
                                     "How late scheduled probes and checks started.")
        counts = self.facts.lateness_buckets or (0,) * (len(LATENESS_BUCKETS) + 1)
        buckets = [(_le(b), c) for b, c in zip(LATENESS_BUCKETS, counts[:-1], strict=True)]
        buckets.append(("+Inf", counts[-1]))
        hist.add_metric([], buckets, self.facts.lateness_sum)
        return hist

    def _units(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        facts = self.facts
        state = GaugeMetricFamily("node_systemd_unit_state",
                                  "systemd unit state (ActiveState), 1 for the current one.",
                                  labels=["name", "state", "type"])
        health = GaugeMetricFamily("sdwatch_unit_health",
                                   "sdwatch's verdict on a unit, 1 for the current one.",
                                   labels=["name", "health"])
        gave_up = GaugeMetricFamily("sdwatch_unit_gave_up",
                                    "1 when sdwatch reached the unit's restart limit and "
                                    "stopped acting.", labels=["name"])
        unmonitored = GaugeMetricFamily("sdwatch_unit_unmonitored",
                                        "1 when sdwatch no longer acts on the unit.",
                                        labels=["name"])
        by_us = CounterMetricFamily("sdwatch_unit_restarts", "Restarts (and starts) of a unit "
                                    "by sdwatch, kept across sdwatch restarts.", labels=["name"])
        by_systemd = CounterMetricFamily("node_systemd_service_restart",
                                         "Restarts of a service by systemd (NRestarts).",
                                         labels=["name"])
        memory = GaugeMetricFamily("sdwatch_unit_memory_bytes",
                                   "Memory charged to the unit's cgroup.", labels=["name"])
        cpu = CounterMetricFamily("sdwatch_unit_cpu_seconds", "CPU time of the unit's cgroup.",
                                  labels=["name"])
        tasks = GaugeMetricFamily("sdwatch_unit_tasks", "Threads in the unit's cgroup.",
                                  labels=["name"])
        for u in self.snap.units:
            kind = facts.service_types.get(u.name, "")
            for s in UNIT_STATES:
                state.add_metric([u.name, s, kind], 1 if u.active_state == s else 0)
            for h in Health:
                health.add_metric([u.name, h.value], 1 if u.health is h else 0)
            gave_up.add_metric([u.name], 1 if facts.gave_up.get(u.name) else 0)
            unmonitored.add_metric([u.name], 1 if facts.unmonitored.get(u.name) else 0)
            by_us.add_metric([u.name], u.restarts_sdwatch or 0)
            if u.name.endswith(".service"):
                by_systemd.add_metric([u.name], u.restarts_systemd)
            if u.memory is not None:
                memory.add_metric([u.name], u.memory)
            if u.cpu_seconds is not None:
                cpu.add_metric([u.name], u.cpu_seconds)
            if u.tasks is not None:
                tasks.add_metric([u.name], u.tasks)
        yield from (state, health, gave_up, unmonitored, by_us, by_systemd, memory, cpu, tasks)

    def _probes(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        labels = ["unit", "probe", "kind"]
        success = GaugeMetricFamily("probe_success", "Whether the probe's last run succeeded.",
                                    labels=labels)
        duration = GaugeMetricFamily("probe_duration_seconds",
                                     "How long the probe's last run took.", labels=labels)
        runs = CounterMetricFamily("sdwatch_probe_runs", "Probe runs since sdwatch started.",
                                   labels=labels)
        failures = CounterMetricFamily("sdwatch_probe_failures",
                                       "Failed probe runs since sdwatch started.", labels=labels)
        for u in self.snap.units:
            for p in u.probes:
                key = [u.name, p.name, p.kind]
                last = p.last
                if last is not None and last.ok is not None:
                    success.add_metric(key, 1 if last.ok else 0)
                if last is not None and last.duration is not None:
                    duration.add_metric(key, last.duration)
                counts = self.facts.probes.get((u.name, p.name), ProbeCounts())
                runs.add_metric(key, counts.runs)
                failures.add_metric(key, counts.failures)
        yield from (success, duration, runs, failures)


def _le(bound: float) -> str:
    return repr(float(bound))

