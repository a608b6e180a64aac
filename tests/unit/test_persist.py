"""Table tests for sdwatch.persist: what of policy's state survives an sdwatch restart or
reload, and how policy continues from it."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from test_policy import (
    ACTIVE,
    CASES,
    Case,
    active_since,
    bad,
    crash_loop,
    fails,
    limit,
    ok,
    over,
    probe,
    run,
    unit,
)

from sdwatch.config import Action as Then
from sdwatch.config import RestartLimit
from sdwatch.messages import Requested, Tick
from sdwatch.persist import from_persistent, key, to_persistent
from sdwatch.policy import health, initial, step
from sdwatch.states import Health


def test_persistent_round_trip() -> None:
    cfg = unit(restart_limit=RestartLimit(restarts=2, within=100.0, then=Then.UNMONITOR),
               probes=(probe(failures=1),))
    state, _ = run(cfg, crash_loop([1000, 1010, 1020]))
    assert state.gave_up and state.unmonitored
    data = json.loads(json.dumps(to_persistent(state)))
    back = from_persistent(cfg, data, 1030.0)
    assert back.restarts == state.restarts == (1000, 1010)
    assert (back.total_restarts, back.gave_up_at, back.unmonitored) == (2, 1020, True)
    assert back.grace_until is None  # until systemd says when the unit started


def test_persistent_history_keeps_counting() -> None:
    cfg = unit(restart_limit=RestartLimit(restarts=2, within=100.0), probes=(probe(failures=1),))
    state = from_persistent(cfg, {"restarts": [990, 995], "total_restarts": 7}, 1000.0)
    _, emitted = run(cfg, [(1000, ACTIVE), (1001, bad())], state)
    assert emitted == [(1001, ["failing", "gave_up"])]


def test_persistent_gave_up_rearms_on_time() -> None:
    cfg = unit(restart_limit=RestartLimit(rearm=100.0))
    state = from_persistent(cfg, {"gave_up": True, "gave_up_at": 950, "future_key": {}}, 1000.0)
    assert health(cfg, state, 1000.0) is Health.GAVE_UP
    _, emitted = run(cfg, [(1049, Tick()), (1050, Tick())], state)
    assert emitted == [(1050, ["rearmed"])]


@pytest.mark.parametrize("then", [Then.ALERT, Then.RESTART])
def test_persistent_failing_is_not_alerted_again(then: Then) -> None:
    """A daemon restart or reload restores what was alerted: no second "failing"."""
    cfg = unit(probes=(probe(failures=1),), memory=limit(for_cycles=1, then=Then.ALERT),
               action=then, restart_limit=RestartLimit(restarts=1, within=100.0))
    state, emitted = run(cfg, [(1000, ACTIVE), (1001, bad()), (1002, ACTIVE), (1003, bad()),
                               (1004, over())])
    alerts = [a for _, actions in emitted for a in actions if a not in ("restart",)]
    assert alerts == (["failing", "limit"] if then is Then.ALERT
                      else ["failing", "gave_up", "limit"])
    assert state.gave_up is (then is Then.RESTART)
    back = from_persistent(cfg, json.loads(json.dumps(to_persistent(state))), 1010.0)
    _, emitted = run(cfg, [(1010, ACTIVE), (1011, bad()), (1012, over())], back)
    assert emitted == []
    _, emitted = run(cfg, [(1010, ACTIVE), (1011, ok())], back)
    assert emitted == [(1011, ["recovered"])]  # the alerted failure ends with its recovery


def test_persistent_gave_up_without_time_rearms_from_now() -> None:
    cfg = unit()
    state = from_persistent(cfg, {"gave_up": True}, 1000.0)
    assert state.gave_up_at == 1000.0


@pytest.mark.parametrize("data", [None, "garbage", 42, [], [1, 2], b"x", {},
                                  {"version": 99, "something": "new"},
                                  {"restarts": "no", "total_restarts": -1, "gave_up": "yes",
                                   "gave_up_at": "then", "unmonitored": 1},
                                  {"restarts": None, "total_restarts": True, "gave_up": None}])
def test_persistent_garbage_gives_initial(data: object) -> None:
    cfg = unit()
    assert from_persistent(cfg, data, 5.0) == initial(cfg, 5.0)


def test_persistent_drops_unreadable_restart_times() -> None:
    cfg = unit()
    data = {"restarts": [1, "x", None, 2.5, True, float("nan"), -3]}
    assert from_persistent(cfg, data, 5.0).restarts == (1.0, 2.5)


def test_sdwatch_restart_opens_no_window() -> None:
    """A unit started long ago, sdwatch restarted (state from disk): judged at once."""
    cfg = unit(grace=30.0, probes=(probe(failures=2),))
    state = from_persistent(cfg, {"restarts": [], "total_restarts": 3}, 5000.0)
    _, emitted = run(cfg, [(5000, active_since(100)), *fails(5001, 5002)], state)
    assert emitted == [(5002, ["failing", "restart"])]


def test_sdwatch_restart_soon_after_a_confirmed_start_opens_no_window() -> None:
    """Restarted at 100, answering at 101 (seen by the previous sdwatch), sdwatch restarted at
    110: the start is confirmed, so a hang now is judged at once, not after grace."""
    cfg = unit(grace=30.0, probes=(probe(failures=2),))
    state, _ = run(cfg, [(99, active_since(50)), *fails(99.5, 99.8), (100.2, active_since(100)),
                         (101, ok())])
    assert state.confirmed_at == 101
    saved = json.loads(json.dumps(to_persistent(state)))
    _, emitted = run(cfg, [(110, active_since(100)), *fails(111, 112)],
                     from_persistent(cfg, saved, 110.0))
    assert emitted == [(112, ["failing", "restart"])]


def test_sdwatch_restart_during_an_unconfirmed_start_keeps_its_grace() -> None:
    cfg = unit(grace=30.0, probes=(probe(failures=2),))
    saved = to_persistent(replace(initial(cfg, 0.0), confirmed_at=90.0))
    _, emitted = run(cfg, [(110, active_since(100)), *fails(111, 112, 129.9, 130, 131)],
                     from_persistent(cfg, saved, 110.0))
    assert emitted == [(131, ["failing", "restart"])]


# what CASES never do: an administrator's commands, and restarts leaving their window
REQUESTS = [
    Case("admin_unmonitors_then_monitors", unit(),
         [(0, ACTIVE), (5, Requested("unmonitor")), (6, bad()), (7, Requested("unmonitor")),
          (8, Requested("monitor")), (9, Requested("monitor")), (10, Requested("restart")),
          (11, ACTIVE)], [], Health.HEALTHY),
    Case("restarts_age_out_of_the_limit_window",
         unit(probes=(probe(failures=1),), restart_limit=RestartLimit(restarts=3, within=60.0)),
         [(0, ACTIVE), *crash_loop([10, 20, 30]), *crash_loop([200, 300])], [], Health.HEALTHY),
]


@pytest.mark.parametrize("case", CASES + REQUESTS, ids=[c.id for c in CASES + REQUESTS])
def test_key_changes_exactly_when_the_saved_data_does(case: Case) -> None:
    """The daemon saves state.json when ``key`` changes: it must see every change of
    ``to_persistent``'s data, and no other."""
    state = initial(case.cfg, 0.0) if case.state is None else case.state
    for now, obs in case.steps:
        new, _ = step(case.cfg, state, obs, now)  # type: ignore[arg-type]
        assert (key(new) == key(state)) is (to_persistent(new) == to_persistent(state)), obs
        state = new
