"""One round of every configured check of some units: probes and resource limits, concurrently.

Used by ``sdwatch check`` and ``sdwatch wait-healthy``; the daemon schedules the same pieces
itself.  Results carry a reason; nothing here raises for a failing service.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Sequence

from sdwatch.config import Config, ProbeConfig, UnitConfig
from sdwatch.states import RESOURCES

if TYPE_CHECKING:
    from sdwatch.probes.errors import Metric
    from sdwatch.systemd import Systemd

CPU_WINDOW = 1.0  # seconds between the two samples that give a CPU percentage


@dataclass(frozen=True)
class CheckResult:
    """One check of one unit."""

    unit: str
    name: str  # the probe's name, or the resource
    kind: str  # a probe kind, or "limit"
    ok: bool
    outcome: str
    duration: float
    reason: str
    metrics: Mapping[str, Metric]


async def check_units(cfg: Config, units: Sequence[str],
                      sd: Systemd | None = None) -> list[CheckResult]:
    """Run every probe and resource check of ``units`` once, concurrently; return the results.

    ``sd`` (a connected systemd.Systemd) is needed for resource checks; without it they fail
    with a reason.
    """
    jobs = []
    for name in units:
        unit = cfg.units[name]
        jobs += [_probe(name, p) for p in unit.probes]
        if any(getattr(unit, r) for r in RESOURCES):
            jobs.append(_limits(unit, sd))
    results: list[CheckResult] = []
    for batch in await asyncio.gather(*jobs):
        results.extend(batch)
    return results


async def _probe(unit: str, probe: ProbeConfig) -> list[CheckResult]:
    from sdwatch.probes.base import run

    r = await run(probe.kind, probe.spec, probe.timeout)
    return [CheckResult(unit, probe.name, probe.kind, r.ok, r.outcome.value, r.duration,
                        r.reason, dict(r.metrics))]


async def _limits(unit: UnitConfig, sd: Systemd | None) -> list[CheckResult]:
    from sdwatch import resources
    from sdwatch.systemd import SystemdUnavailable, UnitError

    start = time.monotonic()
    configured = [r for r in RESOURCES if getattr(unit, r)]

    def failed(reason: str) -> list[CheckResult]:
        return [CheckResult(unit.name, r, "limit", False, "unknown", 0.0, reason, {})
                for r in configured]

    if sd is None:
        return failed("systemd is not reachable: cannot find the unit's cgroup")
    try:
        info = sd.unit_info(unit.name)
    except (UnitError, SystemdUnavailable) as exc:
        return failed(str(exc))
    if info.active_state != "active" or not info.control_group:
        return failed(f"unit is {info.active_state}: nothing to measure")
    first = resources.sample_unit(info.control_group, info.main_pid)
    cpu = None
    if unit.cpu is not None:
        await asyncio.sleep(CPU_WINDOW)
        second = resources.sample_unit(info.control_group, info.main_pid)
        cpu = resources.cpu_percent(first, second)
        first = second
    system = resources.sample_system()
    limits = {r: getattr(unit, r) for r in configured}
    duration = time.monotonic() - start
    return [CheckResult(unit.name, r.resource, "limit", not r.over,
                        "failed" if r.over else "ok", duration, r.reason,
                        {"value": r.value, "threshold": r.threshold})
            for r in resources.evaluate(limits, first, cpu, system.memory_total, system.cpus)]


def render(results: Sequence[CheckResult]) -> str:
    """One line per check: unit, check, outcome, latency, reason."""
    if not results:
        return "no checks configured\n"
    w_unit = max(len(r.unit) for r in results)
    w_name = max(len(r.name) for r in results)
    lines = []
    for r in results:
        ms = f"{r.duration * 1000:.1f}ms"
        lines.append(f"{r.unit:<{w_unit}}  {r.name:<{w_name}}  {r.outcome:<8} {ms:>9}  {r.reason}")
    failed = sum(not r.ok for r in results)
    lines.append(f"{len(results)} checks, {failed} failed")
    return "\n".join(lines) + "\n"
