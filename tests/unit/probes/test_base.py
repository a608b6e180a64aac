"""The runner: outcome mapping, deadline, timing, no escaping exception, no leaked thread."""

from __future__ import annotations

import asyncio
import sys
import threading
import types
from dataclasses import dataclass

import pytest

from sdwatch import threads
from sdwatch.probes import REGISTRY, Kind, base, errors
from sdwatch.probes.base import run
from sdwatch.probes.errors import Outcome


@dataclass(frozen=True)
class FakeSpec:
    action: str


async def fake_probe(spec: FakeSpec):
    errors.stage("reading greeting")
    if spec.action == "ok":
        return {"answer": 42}
    if spec.action == "hang":
        await asyncio.Event().wait()
    if spec.action == "linger":  # cleanup that outlives the deadline
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0.2)
    if spec.action == "bug":
        raise KeyError("oops")
    if spec.action == "thread":
        gate = threading.Event()
        await threads.in_thread(lambda: gate.wait(10), gate.set)
    by_action = {"connect": errors.ConnectError, "protocol": errors.ProtocolError,
              "failed": errors.CheckFailed, "warning": errors.CheckWarning,
              "unknown": errors.CheckUnknown}
    raise by_action[spec.action](f"{spec.action} happened", {"m": 1})


@pytest.fixture(autouse=True)
def fake_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("sdwatch_fake_kind")
    module.Spec, module.probe = FakeSpec, fake_probe
    monkeypatch.setitem(sys.modules, "sdwatch_fake_kind", module)
    monkeypatch.setitem(REGISTRY, "fake", Kind("fake", "sdwatch_fake_kind", "action"))


def test_run_ok_returns_metrics() -> None:
    result = asyncio.run(run("fake", FakeSpec("ok"), 1.0))
    assert (result.ok, result.outcome, result.reason, dict(result.metrics)) == (
        True, Outcome.OK, "ok", {"answer": 42})
    assert 0 <= result.duration < 0.5


@pytest.mark.parametrize("action", ["connect", "protocol", "failed", "warning", "unknown"])
def test_run_maps_errors_to_outcomes(action: str) -> None:
    result = asyncio.run(run("fake", FakeSpec(action), 1.0))
    assert (result.ok, result.outcome.value, result.reason, dict(result.metrics)) == (
        False, action, f"{action} happened", {"m": 1})


def test_run_times_out_at_the_deadline_naming_the_stage() -> None:
    result = asyncio.run(run("fake", FakeSpec("hang"), 0.3))
    assert result.outcome is Outcome.TIMEOUT
    assert result.reason == "timeout after 300ms reading greeting"
    assert 0.24 <= result.duration <= 0.36


def test_attempts_running_together_each_time_out_at_their_own_deadline() -> None:
    async def together() -> list[base.ProbeResult]:
        return await asyncio.gather(*(run("fake", FakeSpec(action), timeout) for action, timeout
                                      in (("hang", 0.2), ("hang", 0.4), ("ok", 0.1),
                                          ("hang", 0.3), ("hang", 0.2))))

    results = asyncio.run(together())
    assert [r.reason for r in results] == [
        "timeout after 200ms reading greeting", "timeout after 400ms reading greeting", "ok",
        "timeout after 300ms reading greeting", "timeout after 200ms reading greeting"]
    for result, timeout in zip(results, (0.2, 0.4, 0.1, 0.3, 0.2), strict=True):
        assert result.duration >= timeout - 0.001 or result.ok
    assert results[0].duration < results[3].duration < results[1].duration


def test_a_timed_out_attempt_leaves_its_task_uncancelled_and_no_timer_per_attempt() -> None:
    async def many() -> tuple[base.ProbeResult, int, int]:
        timed_out = await run("fake", FakeSpec("hang"), 0.05)
        await asyncio.sleep(0.01)  # would raise if the deadline's cancellation were left over
        for _ in range(100):
            assert (await run("fake", FakeSpec("ok"), 1.0)).ok
        loop = asyncio.get_running_loop()
        return timed_out, asyncio.current_task().cancelling(), len(loop._scheduled)

    timed_out, cancelling, timers = asyncio.run(many())
    assert timed_out.outcome is Outcome.TIMEOUT and cancelling == 0
    assert timers <= 1  # one deadline timer for the hundred attempts, not one each


def test_a_caller_cancelling_an_attempt_is_never_swallowed() -> None:
    async def cancel_at(seconds: float) -> None:
        attempt = asyncio.ensure_future(run("fake", FakeSpec("linger"), 0.1))
        await asyncio.sleep(seconds)
        attempt.cancel()
        with pytest.raises(asyncio.CancelledError):
            await attempt

    asyncio.run(cancel_at(0.05))  # before the deadline
    asyncio.run(cancel_at(0.2))  # after it, while the attempt cleans up


def test_run_turns_a_bug_into_protocol_outcome() -> None:
    result = asyncio.run(run("fake", FakeSpec("bug"), 1.0))
    assert (result.outcome, result.reason) == (Outcome.PROTOCOL, "KeyError: 'oops'")


def test_run_unknown_kind_is_a_result_not_an_exception() -> None:
    result = asyncio.run(run("nope", FakeSpec("ok"), 1.0))
    assert (result.ok, result.outcome) == (False, Outcome.UNKNOWN)


def test_in_thread_interrupts_and_joins_on_timeout() -> None:
    before = threading.active_count()
    result = asyncio.run(run("fake", FakeSpec("thread"), 0.2))
    assert result.outcome is Outcome.TIMEOUT
    assert threading.active_count() == before


def test_registry_specs_are_dataclasses_with_their_target_field() -> None:
    import dataclasses
    for kind in REGISTRY.values():
        if kind.name == "fake":
            continue
        names = {f.name for f in dataclasses.fields(kind.spec)}
        assert kind.target in names and not {"kind", "name", "interval", "timeout"} & names
