"""The daemon's typed snapshot: built from policy's state, JSON both ways."""

from __future__ import annotations

import json

import pytest
from test_policy import ACTIVE, bad, limit, ok, over, run, unit

from sdwatch.policy import health
from sdwatch.snapshot import (
    DaemonSnapshot,
    Failure,
    LimitRun,
    ProbeRun,
    SchedulerView,
    SnapshotError,
    build_unit,
)
from sdwatch.states import Health


def test_unit_view_is_json_and_complete() -> None:
    cfg = unit(memory=limit(), grace=30.0)
    state, _ = run(cfg, [(0, ACTIVE), (40, bad()), (50, over())])
    run_ = ProbeRun(False, "connect", "connection refused", 0.002, 40, {},
                    Failure("connection refused", 40))
    view = build_unit("app.service", health(cfg, state, 50), state, {"p": run_}, {})
    data = json.loads(json.dumps(view.to_json()))
    expected = {"ok": False, "outcome": "connect", "reason": "connection refused", "at": 40,
                "failing": False, "consecutive_failures": 1, "consecutive_successes": 0,
                "recent_failures": 1}
    assert {k: data["probes"]["p"][k] for k in expected} == expected
    assert data["limits"]["memory"]["over_for"] == 1
    assert data["last_failure"] == {"reason": "probe p: connection refused", "at": 40}
    assert data["grace_until"] == 30.0
    assert (data["restarts_by_sdwatch"], data["gave_up"], data["unmonitored"]) == (0, False,
                                                                                   False)
    assert data["systemd"] == {"active_state": "active", "sub_state": "running",
                               "result": "success"}


def test_a_probe_not_run_yet_has_no_result() -> None:
    cfg = unit()
    state, _ = run(cfg, [(0, ACTIVE)])
    probe = build_unit("app.service", Health.HEALTHY, state, {}, {}).probe("p")
    assert probe is not None and (probe.ok, probe.outcome, probe.at, probe.reason) == (
        None, None, None, "")


def test_consecutive_successes_are_the_daemons_passes_in_a_row() -> None:
    cfg = unit()
    state, _ = run(cfg, [(0, ACTIVE), *((t, ok()) for t in range(1, 8))])
    passes = ProbeRun(True, "ok", "ok", 0.001, 7.0, {}, None, streak=7)
    view = build_unit("app.service", Health.HEALTHY, state, {"p": passes}, {})
    assert view.probe("p").consecutive_successes == 7  # type: ignore[union-attr]
    failed = ProbeRun(False, "timeout", "timeout", 1.0, 8.0, {}, None, streak=2)
    view = build_unit("app.service", Health.HEALTHY, state, {"p": failed}, {})
    assert view.probe("p").consecutive_successes == 0  # type: ignore[union-attr]


def test_the_daemons_last_runs_and_readings_are_shown() -> None:
    cfg = unit(memory=limit(), grace=0.0)
    state, _ = run(cfg, [(0, ACTIVE), (40, bad()), (50, over())])
    run_ = ProbeRun(False, "connect", "connection refused", 0.002, 40.5, {"bytes": 0},
                    Failure("connection refused", 40.5))
    reading = LimitRun(2e9, True, "memory 1.9 GiB above 1.0 GiB", 50.5)
    view = build_unit("app.service", Health.HEALTHY, state, {"p": run_}, {"memory": reading})
    probe = view.probe("p")
    assert probe is not None and (probe.outcome, probe.duration, probe.at) == ("connect", 0.002,
                                                                               40.5)
    assert probe.last_failure == Failure("connection refused", 40.5)
    (mem,) = view.limits
    assert (mem.value, mem.over, mem.reason, mem.at, mem.over_for) == (
        2e9, True, "memory 1.9 GiB above 1.0 GiB", 50.5, 1)


def test_daemon_snapshot_round_trips_through_json() -> None:
    cfg = unit(memory=limit(), grace=0.0)
    state, _ = run(cfg, [(0, ACTIVE), (40, bad()), (50, over())])
    run_ = ProbeRun(False, "connect", "refused", 0.002, 40.5, {"server": "x", "n": 3},
                    Failure("refused", 40.5))
    snap = DaemonSnapshot(
        pid=42, pid_start=1234, started_at=1.0, updated_at=2.0, status="1 units: 1 healthy",
        units=(build_unit("app.service", Health.FAILING, state, {"p": run_}, {}),),
        config_files=("/etc/sdwatch/sdwatch.toml",), scheduler=SchedulerView(7, 0.5, 3.0))
    data = json.loads(json.dumps(snap.to_json()))
    assert data["schema"] == "sdwatch.daemon/1" and data["units"]["app.service"]["health"] == \
        "failing"
    assert DaemonSnapshot.from_json(data) == snap


def test_daemon_snapshot_rejects_wrong_types_and_other_schemas() -> None:
    with pytest.raises(SnapshotError):
        DaemonSnapshot.from_json({"pid": "42"})
    with pytest.raises(SnapshotError):
        DaemonSnapshot.from_json({"pid": 42, "units": {"a.service": {"probes": ["p"]}}})
    with pytest.raises(SnapshotError):
        DaemonSnapshot.from_json({"schema": "sdwatch.daemon/2", "pid": 42})
    assert DaemonSnapshot.from_json({"pid": 42}).units == ()
