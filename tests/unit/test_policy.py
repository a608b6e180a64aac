"""Table tests for sdwatch.policy: (time, observation) sequences -> exact actions and health."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from sdwatch.config import Action as Then
from sdwatch.config import Limit, ProbeConfig, RestartLimit, UnitConfig
from sdwatch.messages import (
    ActionFinished,
    Alert,
    LimitObserved,
    ProbeObserved,
    Requested,
    ResetFailed,
    Restart,
    Start,
    Stop,
    SystemdObserved,
    Tick,
    Unmonitor,
)
from sdwatch.policy import PENDING_TIMEOUT, UnitState, health, initial, step
from sdwatch.states import Health


def probe(name: str = "p", failures: int = 3, window: int = 0, recover: int = 1,
          startup: bool = False) -> ProbeConfig:
    return ProbeConfig(kind="tcp", name=name, interval=10.0, timeout=5.0, failures=failures,
                       window=window or failures, recover=recover, startup=startup, spec=None)


def unit(**kw: Any) -> UnitConfig:
    kw.setdefault("probes", (probe(),))
    kw.setdefault("grace", 0.0)
    return UnitConfig(name="app.service", **kw)


def limit(for_cycles: int = 3, then: Then = Then.RESTART) -> Limit:
    return Limit(above="1G", for_cycles=for_cycles, then=then)


def ok(name: str = "p") -> ProbeObserved:
    return ProbeObserved(name, True, "answered")


def bad(name: str = "p") -> ProbeObserved:
    return ProbeObserved(name, False, "connection refused")


def over(resource: str = "memory", is_over: bool = True) -> LimitObserved:
    return LimitObserved(resource, is_over, 2e9 if is_over else 1e8, "2G above 1G")


ACTIVE = SystemdObserved("active", "running", "success")
ACTIVATING = SystemdObserved("activating", "start", "success")
AUTO_RESTART = SystemdObserved("activating", "auto-restart", "exit-code")
STOPPED = SystemdObserved("inactive", "dead", "success", stop_job=True)  # systemctl stop
EXITED = SystemdObserved("inactive", "dead", "success")  # no stop job: it went by itself
RESTART_FAILED = ActionFinished(Restart(False, "x"), False, "Access denied")


def crashed(result: str = "exit-code") -> SystemdObserved:
    return SystemdObserved("failed", "failed", result)


def active_since(since: float) -> SystemdObserved:
    """systemd says active, and that it became active at ``since`` (its own record)."""
    return SystemdObserved("active", "running", "success", since=since)


def short(action: object) -> object:
    """Given an action, return a compact comparable form (alert texts are checked separately)."""
    if isinstance(action, Alert):
        return action.event
    if isinstance(action, Restart):
        return "restart!kill" if action.kill_first else "restart"
    return {Start: "start", Stop: "stop", ResetFailed: "reset-failed",
            Unmonitor: "unmonitor"}[type(action)]


def run(cfg: UnitConfig, steps: list[tuple[float, object]],
        state: UnitState | None = None) -> tuple[UnitState, list[tuple[float, list[object]]]]:
    """Given a config and (time, observation) steps, return the final state and every
    (time, actions) where actions were emitted."""
    state = initial(cfg, 0.0) if state is None else state
    emitted = []
    for now, obs in steps:
        state, actions = step(cfg, state, obs, now)
        if actions:
            emitted.append((now, [short(a) for a in actions]))
    return state, emitted


def fails(*times: float, name: str = "p") -> list[tuple[float, object]]:
    return [(t, bad(name)) for t in times]


def crash_loop(times: list[float]) -> list[tuple[float, object]]:
    """Probe fails at each time (failures=1) and the restarted unit is back a second later."""
    return [s for t in times for s in ((t, bad()), (t + 1, ACTIVE))]


@dataclass
class Case:
    id: str
    cfg: UnitConfig
    steps: list[tuple[float, object]]
    expected: list[tuple[float, list[object]]]
    health: Health | None = None
    at: float | None = None  # when to judge health; default: time of the last step
    state: UnitState | None = None
    extra: dict[str, Any] = field(default_factory=dict)


CASES = [
    # 1. probe verdicts
    Case("consecutive_failures_act_on_the_third", unit(),
         [(0, ACTIVE), *fails(10, 20, 30)], [(30, ["failing", "restart"])], Health.STARTING),
    Case("two_failures_do_not_act", unit(), [(0, ACTIVE), *fails(10, 20)], [], Health.HEALTHY),
    Case("single_failure_acts_when_failures_is_1", unit(probes=(probe(failures=1),)),
         [(0, ACTIVE), *fails(10)], [(10, ["failing", "restart"])]),
    Case("a_success_breaks_consecutive_failures", unit(),
         [(0, ACTIVE), *fails(10, 20), (30, ok()), *fails(40, 50)], [], Health.HEALTHY),
    Case("consecutive_failures_after_a_success_act", unit(),
         [(0, ACTIVE), *fails(10, 20), (30, ok()), *fails(40, 50, 60)],
         [(60, ["failing", "restart"])]),
    Case("x_of_last_y_acts_on_two_of_three", unit(probes=(probe(failures=2, window=3),)),
         [(0, ACTIVE), (10, bad()), (20, ok()), (30, bad())], [(30, ["failing", "restart"])]),
    Case("x_of_last_y_ignores_failures_out_of_the_window",
         unit(probes=(probe(failures=2, window=3),)),
         [(0, ACTIVE), (10, bad()), (20, ok()), (30, ok()), (40, bad()), (50, ok())], []),
    Case("x_of_last_y_slides", unit(probes=(probe(failures=2, window=3),)),
         [(0, ACTIVE), (10, bad()), (20, ok()), (30, ok()), (40, bad()), (50, ok()),
          (60, bad())], [(60, ["failing", "restart"])]),
    Case("kill_first_is_passed_on", unit(kill_first=True, probes=(probe(failures=1),)),
         [(0, ACTIVE), *fails(10)], [(10, ["failing", "restart!kill"])]),
    Case("action_alert_only_alerts", unit(action=Then.ALERT),
         [(0, ACTIVE), *fails(10, 20, 30, 40, 50, 60, 70)], [(30, ["failing"])],
         Health.FAILING),
    Case("action_stop", unit(action=Then.STOP), [(0, ACTIVE), *fails(10, 20, 30)],
         [(30, ["failing", "stop"])]),
    Case("action_start", unit(action=Then.START), [(0, ACTIVE), *fails(10, 20, 30)],
         [(30, ["failing", "start"])]),
    Case("action_unmonitor_then_silence", unit(action=Then.UNMONITOR),
         [(0, ACTIVE), *fails(10, 20, 30, 40, 50, 60), (70, crashed()), (80, over())],
         [(30, ["failing", "unmonitor"])], Health.UNMONITORED),
    Case("recovery_needs_recover_consecutive_successes",
         unit(action=Then.ALERT, probes=(probe(recover=2),)),
         [(0, ACTIVE), *fails(10, 20, 30), (40, ok()), (50, bad()), (60, ok()), (70, ok())],
         [(30, ["failing"]), (70, ["recovered"])], Health.HEALTHY),
    Case("one_success_is_not_recovery", unit(action=Then.ALERT, probes=(probe(recover=2),)),
         [(0, ACTIVE), *fails(10, 20, 30), (40, ok())], [(30, ["failing"])], Health.FAILING),
    Case("still_failing_after_restart_restarts_without_second_alert", unit(),
         [(0, ACTIVE), *fails(10, 20, 30), (31, ACTIVE), *fails(40, 50, 60)],
         [(30, ["failing", "restart"]), (60, ["restart"])]),
    Case("unit_alerts_once_for_two_probes_and_recovers_with_the_last",
         unit(action=Then.ALERT, probes=(probe("a"), probe("b"))),
         [(0, ACTIVE), *fails(10, 20, 30, name="a"), *fails(10, 20, 30, name="b"),
          (40, ok("a")), (50, ok("b"))], [(30, ["failing"]), (50, ["recovered"])]),
    Case("unknown_probe_is_ignored", unit(probes=(probe(failures=1),)),
         [(0, ACTIVE), *fails(10, name="nope")], [], Health.HEALTHY),
    Case("failures_while_stopped_are_not_counted", unit(probes=(probe(failures=1),)),
         [(0, ACTIVE), (5, STOPPED), *fails(10, 20, 30)], [], Health.STOPPED),
    # 2. startup grace
    Case("initial_grace_hides_failures", unit(grace=30.0),
         [(0, ACTIVE), *fails(10, 20, 29.9, 30, 40)], [], Health.HEALTHY),
    Case("grace_is_starting_until_the_probe_passes", unit(grace=30.0),
         [(0, ACTIVE), (10, bad())], [], Health.STARTING),
    Case("grace_ends_exactly_at_start_plus_grace", unit(grace=30.0, probes=(probe(failures=1),)),
         [(0, ACTIVE), *fails(29.9, 30)], [(30, ["failing", "restart"])]),
    Case("failures_count_after_grace", unit(grace=30.0),
         [(0, ACTIVE), *fails(10, 20, 30, 40, 50)], [(50, ["failing", "restart"])]),
    # grace anchored to the unit's own start, as systemd records it
    Case("unit_up_longer_than_its_grace_is_judged_from_the_first_probe",
         unit(grace=30.0, probes=(probe(failures=2),)),
         [(1000, active_since(10)), *fails(1001, 1002)], [(1002, ["failing", "restart"])]),
    Case("unit_started_recently_keeps_only_the_rest_of_its_grace",
         unit(grace=30.0, probes=(probe(failures=1),)),
         [(100, active_since(90)), *fails(101, 119.9, 120)], [(120, ["failing", "restart"])]),
    Case("grace_of_a_restart_runs_from_systemds_start_time",
         unit(grace=30.0, probes=(probe(failures=1),)),
         [(0, active_since(-100)), (10, bad()), (12, active_since(11)), *fails(40.9, 41)],
         [(10, ["failing", "restart"]), (41, ["restart"])]),
    Case("grace_after_a_start_seen_by_signal_runs_from_systemds_start_time",
         unit(grace=30.0, action=Then.ALERT, probes=(probe(failures=1),)),
         [(0, active_since(-100)), (40, AUTO_RESTART), (45, active_since(41)), *fails(70.9, 71)],
         [(71, ["failing"])]),
    # grace ends as soon as every probe passed once since the start
    Case("grace_ends_when_the_probe_first_passes", unit(grace=30.0, probes=(probe(failures=1),)),
         [(0, ACTIVE), (2, ok()), (3, bad())], [(3, ["failing", "restart"])]),
    Case("grace_ends_when_every_probe_passed",
         unit(grace=30.0, probes=(probe("up", failures=1), probe("p", failures=1))),
         [(0, ACTIVE), (5, ok("up")), (6, bad()), (7, ok()), (8, bad("up"))],
         [(8, ["failing", "restart"])]),
    Case("one_probe_passing_does_not_end_the_grace_of_two",
         unit(grace=30.0, probes=(probe("up"), probe("p", failures=1))),
         [(0, ACTIVE), (5, ok("up")), (6, bad())], [], Health.STARTING),
    Case("a_unit_that_never_answers_waits_its_grace_out",
         unit(grace=30.0, probes=(probe(failures=2),)),
         [(0, ACTIVE), *fails(1, 10, 29.9, 30, 31)], [(31, ["failing", "restart"])]),
    Case("passing_during_a_pending_restart_does_not_end_the_next_grace",
         unit(grace=30.0, probes=(probe(failures=1),)),
         [(0, active_since(-100)), (10, bad()), (11, ok()), (12, ACTIVE), (13, bad())],
         [(10, ["failing", "restart"])], Health.STARTING),
    Case("second_fault_inside_what_was_the_grace_window_is_acted_on",
         unit(grace=30.0, probes=(probe(failures=2),)),
         [(0, active_since(-100)), *fails(1, 2), (3, ACTIVE), (4, ok()), *fails(5, 6)],
         [(2, ["failing", "restart"]), (4, ["recovered"]), (6, ["failing", "restart"])]),
    Case("a_unit_without_probes_has_no_grace", unit(grace=30.0, probes=(),
                                                    memory=limit(for_cycles=1)),
         [(0, ACTIVE), (1, over())], [(1, ["limit", "restart"])]),
    Case("startup_key_changes_nothing",
         unit(grace=30.0, probes=(probe("up", startup=True), probe("p", failures=1))),
         [(0, ACTIVE), (5, ok("up")), (6, bad())], []),
    Case("grace_restarts_when_sdwatch_restarted_it",
         unit(grace=30.0, probes=(probe(failures=1),)),
         [(0, ACTIVE), (100, bad()), (105, ACTIVE), *fails(110, 134.9, 135)],
         [(100, ["failing", "restart"]), (135, ["restart"])]),
    Case("grace_restarts_when_systemd_restarted_it",
         unit(grace=30.0, action=Then.ALERT, probes=(probe(failures=1),)),
         [(0, ACTIVE), (40, AUTO_RESTART), (41, ACTIVATING), (42, ACTIVE), *fails(50, 72)],
         [(72, ["failing"])]),
    Case("successes_count_during_grace",
         unit(grace=30.0, action=Then.ALERT, probes=(probe(failures=1, recover=2),)),
         [(0, ACTIVE), (40, bad()), (50, AUTO_RESTART), (51, ACTIVE), (52, ok()), (53, ok())],
         [(40, ["failing"]), (53, ["recovered"])]),
    Case("pending_restart_ignores_probes", unit(probes=(probe(failures=1),)),
         [(0, ACTIVE), (10, bad()), (11, bad()), (12, ok()), (13, bad()), (14, ACTIVE),
          (15, bad())], [(10, ["failing", "restart"]), (15, ["restart"])]),
    Case("pending_restart_is_starting", unit(probes=(probe(failures=1),)),
         [(0, ACTIVE), (10, bad()), (11, bad())], [(10, ["failing", "restart"])],
         Health.STARTING),
    Case("pending_restart_ignores_successes", unit(probes=(probe(failures=1),)),
         [(0, ACTIVE), (10, bad()), (11, ok()), (12, ACTIVE), (13, ok())],
         [(10, ["failing", "restart"]), (13, ["recovered"])]),
    Case("pending_restart_ends_after_timeout", unit(probes=(probe(failures=1),)),
         [(0, ACTIVE), (10, bad()), (10 + PENDING_TIMEOUT - 1, bad()),
          (10 + PENDING_TIMEOUT, Tick()), (10 + PENDING_TIMEOUT + 1, bad())],
         [(10, ["failing", "restart"]), (10 + PENDING_TIMEOUT + 1, ["restart"])]),
    Case("restart_that_ends_failed_is_a_crash_at_once", unit(probes=(probe(failures=1),)),
         [(0, ACTIVE), (10, bad()), (11, ACTIVATING), (12, crashed()),
          (10 + PENDING_TIMEOUT - 1, Tick()), (10 + PENDING_TIMEOUT, Tick())],
         [(10, ["failing", "restart"]), (12, ["crashed", "restart"])]),
    Case("restart_never_seen_starting_is_a_crash_after_timeout",
         unit(probes=(probe(failures=1),)),
         [(0, ACTIVE), (10, bad()), (12, crashed()),
          (10 + PENDING_TIMEOUT - 1, Tick()), (10 + PENDING_TIMEOUT, Tick())],
         [(10, ["failing", "restart"]), (10 + PENDING_TIMEOUT, ["crashed", "restart"])]),
    # 3. restart limit
    Case("restart_limit_3_allows_exactly_3",
         unit(restart_limit=RestartLimit(restarts=3, within=100.0),
              probes=(probe(failures=1),)),
         crash_loop([0, 10, 20, 30, 40, 50]),
         [(0, ["failing", "restart"]), (10, ["restart"]), (20, ["restart"]), (30, ["gave_up"])],
         Health.GAVE_UP),
    Case("restart_exactly_within_seconds_ago_no_longer_counts",
         unit(restart_limit=RestartLimit(restarts=3, within=100.0),
              probes=(probe(failures=1),)),
         crash_loop([0, 10, 20, 100]),
         [(0, ["failing", "restart"]), (10, ["restart"]), (20, ["restart"]),
          (100, ["restart"])]),
    Case("restart_just_inside_within_counts",
         unit(restart_limit=RestartLimit(restarts=3, within=100.0),
              probes=(probe(failures=1),)),
         crash_loop([0, 10, 20, 99.9]),
         [(0, ["failing", "restart"]), (10, ["restart"]), (20, ["restart"]),
          (99.9, ["gave_up"])]),
    Case("rearm_after_rearm_seconds_and_restart_again",
         unit(restart_limit=RestartLimit(restarts=1, within=100.0, rearm=1000.0),
              probes=(probe(failures=1),)),
         [*crash_loop([0, 10]), (1009.9, Tick()), (1010, Tick()), (1011, ACTIVE),
          (1020, bad())],
         [(0, ["failing", "restart"]), (10, ["gave_up"]), (1010, ["rearmed", "restart"]),
          (1020, ["gave_up"])]),
    Case("rearm_restarts_a_unit_that_hit_start_limit",
         unit(restart_limit=RestartLimit(restarts=1, within=100.0, rearm=1000.0)),
         [(0, ACTIVE), (10, crashed()), (11, ACTIVE), (20, crashed("start-limit-hit")),
          (1020, Tick())],
         [(10, ["crashed", "restart"]), (20, ["crashed", "gave_up"]),
          (1020, ["rearmed", "reset-failed", "restart"])]),
    Case("rearm_of_a_healthy_unit_only_alerts",
         unit(restart_limit=RestartLimit(restarts=1, within=100.0, rearm=1000.0),
              probes=(probe(failures=1),)),
         [*crash_loop([0, 10]), (20, ok()), (1010, Tick())],
         [(0, ["failing", "restart"]), (10, ["gave_up"]), (20, ["recovered"]),
          (1010, ["rearmed"])], Health.HEALTHY),
    Case("gave_up_then_unmonitor",
         unit(restart_limit=RestartLimit(restarts=1, within=100.0, rearm=1000.0,
                                         then=Then.UNMONITOR), probes=(probe(failures=1),)),
         [*crash_loop([0, 10, 20]), (30, crashed()), (1009, Tick())],
         [(0, ["failing", "restart"]), (10, ["gave_up", "unmonitor"])], Health.UNMONITORED),
    Case("unmonitored_by_the_limit_is_monitored_again_on_rearm",
         unit(restart_limit=RestartLimit(restarts=1, within=100.0, rearm=1000.0,
                                         then=Then.UNMONITOR), probes=(probe(failures=1),)),
         [*crash_loop([0, 10]), (30, crashed()), (1010, Tick())],
         [(0, ["failing", "restart"]), (10, ["gave_up", "unmonitor"]),
          (1010, ["rearmed", "restart"])], Health.STARTING),
    Case("gave_up_then_stop",
         unit(restart_limit=RestartLimit(restarts=1, within=100.0, then=Then.STOP),
              probes=(probe(failures=1),)),
         crash_loop([0, 10]), [(0, ["failing", "restart"]), (10, ["gave_up", "stop"])]),
    Case("gave_up_alerts_once_and_keeps_reporting",
         unit(restart_limit=RestartLimit(restarts=1, within=100.0),
              probes=(probe(failures=1),)),
         [*crash_loop([0, 10, 20, 30]), (40, crashed()), (50, ACTIVE), (60, ok())],
         [(0, ["failing", "restart"]), (10, ["gave_up"]), (40, ["crashed"]),
          (60, ["recovered"])], Health.GAVE_UP),
    Case("keep_running_starts_count_toward_the_limit",
         unit(keep_running=True, restart_limit=RestartLimit(restarts=2, within=100.0)),
         [(0, ACTIVE), (10, STOPPED), (11, ACTIVE), (20, STOPPED), (21, ACTIVE),
          (30, STOPPED)],
         [(10, ["start"]), (20, ["start"]), (30, ["gave_up"])], Health.GAVE_UP),
    Case("rearm_starts_a_stopped_keep_running_unit",
         unit(keep_running=True,
              restart_limit=RestartLimit(restarts=1, within=100.0, rearm=1000.0)),
         [(0, ACTIVE), (10, STOPPED), (11, ACTIVE), (20, STOPPED), (1019, Tick()),
          (1020, Tick())],
         [(10, ["start"]), (20, ["gave_up"]), (1020, ["rearmed", "start"])], Health.STARTING),
    # 4. deliberate stops (a stop job), exits by itself (none) and crashes
    Case("deliberate_stop_is_left_alone", unit(), [(0, ACTIVE), (10, STOPPED), (20, STOPPED)],
         [], Health.STOPPED),
    Case("deliberate_stop_through_deactivating_is_left_alone", unit(),
         [(0, ACTIVE), (9, SystemdObserved("deactivating", "stop-sigterm", "", stop_job=True)),
          (10, STOPPED)], [], Health.STOPPED),
    Case("exit_0_by_itself_is_started_again", unit(), [(0, ACTIVE), (10, EXITED)],
         [(10, ["crashed", "start"])], Health.STARTING),
    Case("exit_by_itself_through_execstop_is_started_again", unit(),
         [(0, ACTIVE), (9, SystemdObserved("deactivating", "stop", "success")), (10, EXITED)],
         [(10, ["crashed", "start"])]),
    Case("exit_by_itself_with_action_alert_only_alerts", unit(action=Then.ALERT),
         [(0, ACTIVE), (10, EXITED)], [(10, ["crashed"])], Health.STOPPED),
    Case("exit_by_itself_with_action_start_starts", unit(action=Then.START),
         [(0, ACTIVE), (10, EXITED)], [(10, ["crashed", "start"])]),
    Case("exit_by_itself_counts_toward_the_restart_limit",
         unit(restart_limit=RestartLimit(restarts=1, within=100.0)),
         [(0, ACTIVE), (10, EXITED), (11, ACTIVE), (20, EXITED)],
         [(10, ["crashed", "start"]), (20, ["crashed", "gave_up"])], Health.GAVE_UP),
    Case("found_inactive_at_first_look_is_left_alone", unit(), [(0, EXITED), (5, EXITED)], [],
         Health.STOPPED),
    Case("stop_job_that_ends_failed_is_respected", unit(),
         [(0, ACTIVE), (10, SystemdObserved("failed", "failed", "timeout", stop_job=True))], [],
         Health.FAILED),
    Case("stop_job_that_ends_failed_is_started_with_keep_running", unit(keep_running=True),
         [(0, ACTIVE), (10, SystemdObserved("failed", "failed", "timeout", stop_job=True))],
         [(10, ["restart"])]),
    Case("keep_running_starts_a_stopped_unit_once", unit(keep_running=True),
         [(0, ACTIVE), (10, STOPPED), (11, STOPPED)], [(10, ["start"])], Health.STARTING),
    Case("found_stopped_at_first_read_with_keep_running", unit(keep_running=True),
         [(0, STOPPED)], [(0, ["start"])]),
    Case("crash_restarts", unit(), [(0, ACTIVE), (10, crashed())], [(10, ["crashed", "restart"])],
         Health.STARTING),
    Case("crash_is_failed_when_not_restarting", unit(action=Then.ALERT),
         [(0, ACTIVE), (10, crashed("signal"))], [(10, ["crashed"])], Health.FAILED),
    Case("crash_with_keep_running_restarts_despite_alert_action",
         unit(action=Then.ALERT, keep_running=True),
         [(0, ACTIVE), (10, crashed("core-dump"))], [(10, ["crashed", "restart"])]),
    Case("crash_with_stop_action_does_not_restart", unit(action=Then.STOP),
         [(0, ACTIVE), (10, crashed())], [(10, ["crashed"])]),
    Case("crash_restart_kills_first", unit(kill_first=True),
         [(0, ACTIVE), (10, crashed("watchdog"))], [(10, ["crashed", "restart!kill"])]),
    Case("start_limit_hit_resets_failed_first", unit(),
         [(0, ACTIVE), (10, crashed("start-limit-hit"))],
         [(10, ["crashed", "reset-failed", "restart"])]),
    Case("failed_at_first_read_is_a_crash", unit(), [(0, crashed("timeout"))],
         [(0, ["crashed", "restart"])]),
    Case("repeated_failed_observation_is_one_crash", unit(action=Then.ALERT),
         [(0, ACTIVE), (10, crashed()), (11, crashed()), (12, Tick())], [(10, ["crashed"])]),
    Case("auto_restart_is_left_to_systemd", unit(),
         [(0, ACTIVE), (10, AUTO_RESTART), (11, SystemdObserved("failed", "auto-restart", "x"))],
         [], Health.STARTING),
    Case("systemd_giving_up_after_auto_restarts_is_a_crash", unit(),
         [(0, ACTIVE), (10, AUTO_RESTART), (20, crashed("start-limit-hit"))],
         [(20, ["crashed", "reset-failed", "restart"])]),
    # 5. resource limits
    Case("limit_acts_after_for_cycles", unit(memory=limit()),
         [(0, ACTIVE), (10, over()), (20, over()), (30, over())], [(30, ["limit", "restart"])]),
    Case("limit_counter_resets_under", unit(memory=limit()),
         [(0, ACTIVE), (10, over()), (20, over()), (30, over(is_over=False)), (40, over()),
          (50, over())], [], Health.HEALTHY),
    Case("limit_ignored_during_grace", unit(grace=30.0, memory=limit()),
         [(0, ACTIVE), (10, over()), (20, over()), (29, over()), (30, over()), (40, over()),
          (50, over())], [(50, ["limit", "restart"])]),
    Case("limit_ignored_while_restart_pending", unit(memory=limit(for_cycles=1)),
         [(0, ACTIVE), (10, over()), (11, over()), (12, over()), (13, ACTIVE), (14, over())],
         [(10, ["limit", "restart"]), (14, ["limit", "restart"])]),
    Case("limit_alert_once_per_episode", unit(memory=limit(then=Then.ALERT)),
         [(0, ACTIVE), *[(t, over()) for t in range(10, 70, 10)], (70, over(is_over=False)),
          *[(t, over()) for t in range(80, 110, 10)]],
         [(30, ["limit"]), (100, ["limit"])]),
    Case("limit_is_failing_while_tripped", unit(memory=limit(then=Then.ALERT)),
         [(0, ACTIVE), (10, over()), (20, over()), (30, over())], [(30, ["limit"])],
         Health.FAILING),
    Case("limit_counter_resets_after_action", unit(memory=limit(for_cycles=2, then=Then.STOP)),
         [(0, ACTIVE), (10, over()), (20, over()), (30, over()), (40, over())],
         [(20, ["limit", "stop"]), (40, ["stop"])]),
    Case("limit_unmonitor", unit(tasks=limit(for_cycles=1, then=Then.UNMONITOR)),
         [(0, ACTIVE), (10, over("tasks")), (20, over("tasks"))], [(10, ["limit", "unmonitor"])],
         Health.UNMONITORED),
    Case("unconfigured_resource_is_ignored", unit(memory=limit(for_cycles=1)),
         [(0, ACTIVE), (10, over("cpu")), (20, over("bogus"))], []),
    # 6. unmonitored units
    Case("unmonitored_unit_never_acts", unit(memory=limit(for_cycles=1), keep_running=True),
         [(0, ACTIVE), *fails(10, 20, 30), (40, over()), (50, crashed()), (60, STOPPED),
          (70, ActionFinished(Restart(False, "x"), False, "boom"))], [], Health.UNMONITORED,
         state=replace(initial(unit(), 0.0), unmonitored=True)),
    # 7. results of actions
    Case("restart_call_succeeded_alerts_restarted", unit(probes=(probe(failures=1),)),
         [(0, ACTIVE), (10, bad()), (10.5, ActionFinished(Restart(False, "x"), True))],
         [(10, ["failing", "restart"]), (10.5, ["restarted"])]),
    Case("restart_call_failed_alerts_and_ends_pending", unit(probes=(probe(failures=1),)),
         [(0, ACTIVE), (10, bad()), (10.5, RESTART_FAILED), (20, bad())],
         [(10, ["failing", "restart"]), (10.5, ["failing"]), (20, ["restart"])]),
    Case("failed_restart_calls_count_toward_the_limit",
         unit(restart_limit=RestartLimit(restarts=1, within=100.0),
              probes=(probe(failures=1),)),
         [(0, ACTIVE), (10, bad()), (10.5, RESTART_FAILED), (20, bad())],
         [(10, ["failing", "restart"]), (10.5, ["failing"]), (20, ["gave_up"])]),
    Case("failed_alert_does_not_alert", unit(),
         [(0, ACTIVE), (10, ActionFinished(Alert("failing", "x"), False, "smtp down")),
          (11, ActionFinished(ResetFailed(), False, "no")),
          (12, ActionFinished(Unmonitor("x"), False, "no"))], []),
    Case("failed_stop_alerts", unit(),
         [(0, ACTIVE), (10, ActionFinished(Stop("x"), False, "timeout")),
          (11, ActionFinished(Stop("x"), True))], [(10, ["failing"])]),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_step_table(case: Case) -> None:
    state, emitted = run(case.cfg, case.steps, case.state)
    assert emitted == case.expected
    if case.health is not None:
        at = case.at if case.at is not None else case.steps[-1][0]
        assert health(case.cfg, state, at) is case.health


def test_step_restart_limit_counts_and_history() -> None:
    cfg = unit(restart_limit=RestartLimit(restarts=3, within=100.0), probes=(probe(failures=1),))
    state, _ = run(cfg, crash_loop([0, 10, 20, 30]))
    assert state.total_restarts == 3
    assert state.restarts == (0, 10, 20)
    assert state.gave_up_at == 30


def test_step_actions_carry_reasons() -> None:
    cfg = unit(probes=(probe(failures=1),))
    state, _ = step(cfg, initial(cfg, 0.0), ACTIVE, 0.0)
    _, actions = step(cfg, state, bad(), 10.0)
    assert actions[0] == Alert("failing", "app.service: probe p failed 1 of the last 1 times: "
                                          "connection refused")
    assert actions[1] == Restart(kill_first=False,
                                 reason="probe p failed 1 of the last 1 times: connection refused",
                                 stop_budget=cfg.stop_budget)
    _, actions = step(cfg, state, crashed("core-dump"), 10.0)
    assert actions[0] == Alert("crashed", "app.service failed (core-dump)")
    _, actions = step(cfg, state, RESTART_FAILED, 11.0)
    assert actions == [Alert("failing", "app.service: sdwatch could not restart it: "
                                        "Access denied")]


def test_health_new_states_are_not_ok() -> None:
    assert not Health.GAVE_UP.ok and not Health.UNMONITORED.ok
    assert Health.HEALTHY.ok and Health.STARTING.ok


def test_health_unknown_before_systemd_is_observed() -> None:
    cfg = unit()
    assert health(cfg, initial(cfg, 0.0), 5.0) is Health.UNKNOWN


def test_step_never_mutates_the_given_state() -> None:
    cfg = unit(probes=(probe(failures=1),), memory=limit(for_cycles=1))
    state = initial(cfg, 0.0)
    snapshot = repr(state)
    for obs in (ACTIVE, bad(), over(), crashed(), Tick()):
        step(cfg, state, obs, 10.0)
    assert repr(state) == snapshot


def test_step_probe_added_by_a_config_reload() -> None:
    old = unit(action=Then.ALERT)
    new = unit(action=Then.ALERT, probes=(probe(), probe("extra", failures=1)))
    state, _ = step(old, initial(old, 0.0), ACTIVE, 0.0)
    state, actions = step(new, state, bad("extra"), 10.0)
    assert [short(a) for a in actions] == ["failing"]
    assert [p.name for p in state.probes] == ["p", "extra"]


def test_restarted_unit_is_starting_in_grace_then_failing_if_still_failing() -> None:
    cfg = unit(probes=(probe(failures=1),), grace=10.0)
    s = initial(cfg, 0.0)
    s, _ = step(cfg, s, ACTIVE, 0.0)
    s, acts = step(cfg, s, bad(), 20.0)
    assert [type(a) for a in acts] == [Alert, Restart]
    s, _ = step(cfg, s, ActionFinished(acts[-1], True, ""), 20.01)
    s, _ = step(cfg, s, SystemdObserved("deactivating", "stop-sigterm", "success"), 20.02)
    s, _ = step(cfg, s, ACTIVE, 20.1)
    assert health(cfg, s, 20.1) is Health.STARTING  # the probe is still marked failing
    assert health(cfg, s, 31.0) is Health.FAILING  # grace over, no success seen
    s, acts = step(cfg, s, ok(), 21.0)
    assert [short(a) for a in acts] == ["recovered"]
    assert health(cfg, s, 31.0) is Health.HEALTHY


def test_restart_refused_by_the_start_rate_limit_resets_and_retries() -> None:
    cfg = unit(probes=(probe(failures=1),), restart_limit=RestartLimit(restarts=5))
    s = initial(cfg, 0.0)
    s, _ = step(cfg, s, ACTIVE, 0.0)
    s, acts = step(cfg, s, bad(), 10.0)
    assert [type(a) for a in acts] == [Alert, Restart]
    s, acts = step(cfg, s, SystemdObserved("failed", "failed", "start-limit-hit"), 10.01)
    assert [short(a) for a in acts][:1] == ["crashed"]
    assert [type(a) for a in acts][1:] == [ResetFailed, Restart]
    assert s.total_restarts == 2 and s.pending_until is not None


def test_failure_while_our_restart_starts_the_unit_is_a_crash() -> None:
    cfg = unit(probes=(probe(failures=1),), restart_limit=RestartLimit(restarts=5))
    s = initial(cfg, 0.0)
    s, _ = step(cfg, s, ACTIVE, 0.0)
    s, acts = step(cfg, s, bad(), 10.0)
    s, _ = step(cfg, s, SystemdObserved("failed", "failed", "signal"), 10.01)  # kill_first
    assert s.pending_until is not None  # the old process going: still our restart
    s, acts = step(cfg, s, ACTIVATING, 10.02)
    assert acts == [] and s.pending_started
    s, acts = step(cfg, s, crashed("exit-code"), 10.03)  # died while starting
    assert [short(a) for a in acts][:1] == ["crashed"] and type(acts[-1]) is Restart


def _restart_of(cfg: UnitConfig, steps: list[tuple[float, object]]) -> Restart:
    state = initial(cfg, 0.0)
    actions: list = []
    for now, obs in steps:
        state, actions = step(cfg, state, obs, now)
    return next(a for a in actions if isinstance(a, Restart))


def test_restart_of_a_unit_that_stopped_answering_has_the_stop_budget() -> None:
    cfg = unit(stop_budget=1.5, probes=(probe(failures=2),))
    restart = _restart_of(cfg, [(0, ACTIVE), *fails(10, 11)])
    assert (restart.kill_first, restart.stop_budget) == (False, 1.5)


def test_restart_over_a_limit_has_the_stop_budget() -> None:
    cfg = unit(stop_budget=3.0, memory=limit(for_cycles=1))
    assert _restart_of(cfg, [(0, ACTIVE), (10, over())]).stop_budget == 3.0


def test_restart_of_a_crashed_unit_has_nothing_to_stop() -> None:
    cfg = unit(stop_budget=3.0)
    assert _restart_of(cfg, [(0, ACTIVE), (10, crashed("signal"))]).stop_budget is None


def test_kill_first_always_kills_and_needs_no_budget() -> None:
    cfg = unit(kill_first=True, stop_budget=3.0, probes=(probe(failures=1),))
    restart = _restart_of(cfg, [(0, ACTIVE), (10, bad())])
    assert (restart.kill_first, restart.stop_budget) == (True, None)


def test_grace_ended_by_the_first_pass_turns_starting_to_healthy() -> None:
    cfg = unit(grace=30.0, probes=(probe("a"), probe("b")))
    state, _ = run(cfg, [(0, ACTIVE), (1, ok("a"))])
    assert health(cfg, state, 1.0) is Health.STARTING
    state, _ = step(cfg, state, ok("b"), 1.5)
    assert health(cfg, state, 1.5) is Health.HEALTHY
    assert state.grace_until == 1.5


def test_exit_by_itself_alert_names_the_result() -> None:
    cfg = unit()
    state, _ = step(cfg, initial(cfg, 0.0), ACTIVE, 0.0)
    _, actions = step(cfg, state, EXITED, 10.0)
    assert actions == [Alert("crashed", "app.service exited by itself (success, no stop job)"),
                       Start("app.service exited by itself (success, no stop job)")]


def test_request_monitor_rearms_a_unit_that_gave_up() -> None:
    cfg = unit(restart_limit=RestartLimit(restarts=1, within=100.0, rearm=3600.0,
                                          then=Then.UNMONITOR), probes=(probe(failures=1),))
    state, _ = run(cfg, crash_loop([0, 10]))
    assert health(cfg, state, 11.0) is Health.UNMONITORED and state.gave_up
    state, actions = step(cfg, state, Requested("monitor"), 12.0)
    assert [short(a) for a in actions] == ["rearmed"]
    assert not state.gave_up and not state.unmonitored and state.restarts == ()
    assert health(cfg, state, 12.0) is Health.HEALTHY
    # it acts again: the next failure restarts it
    _, emitted = run(cfg, [(20, bad())], state)
    assert emitted == [(20, ["failing", "restart"])]


def test_request_monitor_ends_unmonitor_by_action() -> None:
    cfg = unit(action=Then.UNMONITOR, probes=(probe(failures=1),))
    state, emitted = run(cfg, [(0, ACTIVE), (5, bad())])
    assert emitted == [(5, ["failing", "unmonitor"])]
    state, actions = step(cfg, state, Requested("monitor"), 6.0)
    assert [short(a) for a in actions] == ["rearmed"] and not state.unmonitored
    assert health(cfg, state, 6.0) is Health.HEALTHY


def test_request_monitor_of_a_watched_unit_does_nothing() -> None:
    cfg = unit()
    state, _ = run(cfg, [(0, ACTIVE)])
    assert step(cfg, state, Requested("monitor"), 1.0) == (state, [])


def test_request_unmonitor_silences_until_monitored() -> None:
    cfg = unit(probes=(probe(failures=1),))
    state, _ = run(cfg, [(0, ACTIVE)])
    state, actions = step(cfg, state, Requested("unmonitor"), 1.0)
    assert [short(a) for a in actions] == ["unmonitor"]
    assert health(cfg, state, 1.0) is Health.UNMONITORED
    state, emitted = run(cfg, [(2, bad()), (3, crashed())], state)
    assert emitted == []
    assert step(cfg, state, Requested("unmonitor"), 4.0) == (state, [])


def test_request_restart_happens_even_after_giving_up_and_is_pending() -> None:
    cfg = unit(restart_limit=RestartLimit(restarts=1, within=100.0), probes=(probe(failures=1),))
    state, _ = run(cfg, crash_loop([0, 10]))
    assert state.gave_up
    state, actions = step(cfg, state, Requested("restart"), 12.0)
    assert actions == [Restart(kill_first=False, reason="restart on request")]
    assert state.total_restarts == 2 and state.restarts == (0,)  # not toward the limit
    assert health(cfg, state, 12.0) is Health.GAVE_UP
    _, emitted = run(cfg, [(13, ActionFinished(actions[0], True))], state)
    assert emitted == [(13, ["restarted"])]


def test_request_restart_of_a_start_limited_unit_resets_it_first() -> None:
    cfg = unit()
    state, _ = run(cfg, [(0, crashed("start-limit-hit"))])
    _, actions = step(cfg, state, Requested("restart"), 1.0)
    assert [short(a) for a in actions] == ["reset-failed", "restart"]
