"""policy.step's shortcut for observations that change nothing, against the full step.

``step`` returns the given state itself, and no actions, when a passing probe passes again;
``_step`` is the same function without that shortcut.  Both must agree on every table case of
test_policy.py and on random sequences of observations.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_policy import (
    ACTIVATING,
    ACTIVE,
    AUTO_RESTART,
    CASES,
    EXITED,
    RESTART_FAILED,
    STOPPED,
    Case,
    bad,
    crashed,
    ok,
    over,
    probe,
    unit,
)

from sdwatch.config import Action as Then
from sdwatch.config import RestartLimit, UnitConfig
from sdwatch.messages import ActionFinished, Requested, Restart, Start, SystemdObserved, Tick
from sdwatch.policy import UnitState, _step, initial, step


def both(cfg: UnitConfig, state: UnitState, obs: object, now: float) -> tuple[UnitState, bool]:
    """Step with and without the shortcut, assert they agree; return the new state and
    whether ``step`` returned the given state itself and no actions."""
    fast, fast_do = step(cfg, state, obs, now)  # type: ignore[arg-type]
    full, full_do = _step(cfg, state, obs, now)  # type: ignore[arg-type]
    assert (fast, fast_do) == (full, full_do), (obs, now)
    return full, fast is state and not fast_do


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_shortcut_agrees_with_the_full_step_on_the_table(case: Case) -> None:
    state = initial(case.cfg, 0.0) if case.state is None else case.state
    for now, obs in case.steps:
        state, _ = both(case.cfg, state, obs, now)


def test_shortcut_is_taken_on_the_table() -> None:
    taken = 0
    for case in CASES:
        state = initial(case.cfg, 0.0) if case.state is None else case.state
        for now, obs in case.steps:
            state, shortcut = both(case.cfg, state, obs, now)
            taken += shortcut
    assert taken > 0


def settled(cfg: UnitConfig, passes: int, start: float = 0.0) -> UnitState:
    """The unit active since ``start`` and its probes passed ``passes`` times each."""
    state, _ = step(cfg, initial(cfg, 0.0), SystemdObserved(
        "active", "running", "success", since=start), start)
    for i in range(passes):
        for p in cfg.probes:
            state, _ = step(cfg, state, ok(p.name), start + 1 + i)
    return state


TWO = (probe("a"), probe("b"))
X_OF_Y = unit(probes=(probe(failures=2, window=3),))
SHORTCUT = [  # (id, config, state, observation, time, the same state back and no actions)
    ("a_passing_probe_passes_again", unit(), settled(unit(), 3), ok(), 10.0, True),
    ("window_not_full_yet", unit(), settled(unit(), 2), ok(), 10.0, False),
    ("first_pass", unit(), settled(unit(), 0), ok(), 10.0, False),
    ("a_failure", unit(), settled(unit(), 3), bad(), 10.0, False),
    ("a_failure_still_in_the_window", X_OF_Y,
     step(X_OF_Y, step(X_OF_Y, step(X_OF_Y, settled(X_OF_Y, 3), bad(), 5.0)[0], ok(), 6.0)[0],
          ok(), 7.0)[0], ok(), 10.0, False),
    ("failing", unit(action=Then.ALERT),
     step(unit(action=Then.ALERT), step(unit(action=Then.ALERT), step(
         unit(action=Then.ALERT), settled(unit(action=Then.ALERT), 3), bad(), 5.0)[0],
         bad(), 6.0)[0], bad(), 7.0)[0], bad(), 10.0, False),
    ("another_probe_passing", unit(probes=TWO), settled(unit(probes=TWO), 3), ok("b"), 10.0,
     True),
    ("an_unknown_probe", unit(), settled(unit(), 3), ok("zz"), 10.0, True),
    ("in_grace", unit(grace=100.0, probes=TWO),
     step(unit(grace=100.0, probes=TWO), settled(unit(grace=100.0, probes=TWO), 0),
          ok("a"), 1.0)[0], ok("a"), 2.0, False),
    ("recovering", unit(action=Then.ALERT, probes=(probe(failures=1, recover=2),)),
     step(unit(action=Then.ALERT, probes=(probe(failures=1, recover=2),)),
          settled(unit(action=Then.ALERT, probes=(probe(failures=1, recover=2),)), 1),
          bad(), 5.0)[0], ok(), 10.0, False),
    ("restart_pending", unit(probes=(probe(failures=1),)),
     step(unit(probes=(probe(failures=1),)), settled(unit(probes=(probe(failures=1),)), 3),
          bad(), 5.0)[0], ok(), 10.0, False),
    ("gave_up", unit(), replace(settled(unit(), 3), gave_up_at=5.0), ok(), 10.0, False),
    ("systemd_repeats_itself", unit(), settled(unit(), 3), ACTIVE, 10.0, False),
]


@pytest.mark.parametrize("cfg,state,obs,now,unchanged", [c[1:] for c in SHORTCUT],
                         ids=[c[0] for c in SHORTCUT])
def test_shortcut_table(cfg: UnitConfig, state: UnitState, obs: object, now: float,
                        unchanged: bool) -> None:
    _, shortcut = both(cfg, state, obs, now)
    assert shortcut is unchanged


OBSERVATIONS = [*[ok("a")] * 12, *[ok("b")] * 4, *[bad("a")] * 5, bad("b"), ok("zz"),
                ACTIVE, ACTIVATING, AUTO_RESTART, STOPPED, EXITED, crashed(),
                crashed("start-limit-hit"), SystemdObserved("active", "running", "success",
                                                            since=1.0),
                RESTART_FAILED, ActionFinished(Restart(False, "x"), True),
                ActionFinished(Start("x"), False, "no"), Tick(), over(), over(is_over=False),
                Requested("restart"), Requested("monitor"), Requested("unmonitor")]

configs = st.builds(
    lambda failures, window, recover, grace, two, action, limit, memory: unit(
        probes=(probe("a", failures, failures + window, recover),
                *((probe("b", 1, 1, 1),) if two else ())),
        grace=grace, action=action,
        restart_limit=RestartLimit(restarts=limit, within=60.0, rearm=30.0),
        **({"memory": over_limit()} if memory else {})),
    st.integers(1, 3), st.integers(0, 2), st.integers(1, 3), st.sampled_from([0.0, 5.0, 30.0]),
    st.booleans(), st.sampled_from(list(Then)), st.integers(1, 3), st.booleans())


def over_limit():  # a memory limit, as test_policy's ``limit``
    from test_policy import limit

    return limit(for_cycles=2)


@settings(max_examples=1000, deadline=None)
@given(configs, st.lists(st.tuples(st.integers(0, 20), st.sampled_from(OBSERVATIONS)),
                         max_size=60))
def test_shortcut_agrees_with_the_full_step_on_random_sequences(
        cfg: UnitConfig, steps: list[tuple[int, object]]) -> None:
    state, now = initial(cfg, 0.0), 0.0
    for delta, obs in steps:
        now += delta
        state, _ = both(cfg, state, obs, now)
