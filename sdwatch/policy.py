"""What to do about one unit: a pure state machine with an injected clock.

The daemon feeds ``step(cfg, state, observation, now)`` and executes the returned ``Do`` list in
order; ``now`` is wall-clock seconds (``time.time()``).  No I/O, no clock reads, no mutation.
``Do`` is the union of actions (records of messages.py, with the observations;
``config.Action`` is the configured reaction, e.g. "restart").

Decisions beyond the plain rules:
- Startup grace runs from the unit's own start as systemd records it (``SystemdObserved.since``),
  never from sdwatch's: a unit up longer than its grace is judged from the first probe.  Grace is
  the longest a start may take: it ends as soon as every probe has passed once since that start.
- A unit that went inactive or failed with no job queued for it exited by itself, whatever its
  Result: ``cfg.action`` applies as to a crash.  A stop job (systemctl stop, a dependency,
  isolate, shutdown) makes it deliberate: left alone unless ``keep_running``.
- A restart of a unit that is still running (failing probes, a limit) carries the stop budget:
  the daemon SIGKILLs the cgroup when the stop takes longer.  A crashed unit has nothing to stop.
- Verdicts are per probe, "failing"/"recovered" alerts per unit (first probe in, last out).  A
  verdict clears the probe's window: still failing ``failures`` more times repeats the reaction
  (no second "failing" alert).  Probe failures count only while systemd says active.
- Every Restart *and* Start by sdwatch counts toward the restart limit (keep_running would loop
  on a unit that keeps exiting); a restart counts while ``now - t < within``.  A call reported
  failed (``ActionFinished`` ok=False) still counts, so a broken D-Bus call ends in gave_up, not
  a loop; it is alerted once as "failing" and ends the pending restart and its grace.
  "restarted" is alerted when the daemon reports the call succeeded.
- While a restart is pending, non-active systemd states belong to it.  Pending ends when systemd
  says active (grace restarts), when the call fails, or ``max(grace, PENDING_TIMEOUT)`` after
  issuing; a unit failed by then is a crash.  Crashes restart if ``cfg.action`` is restart/start
  or ``keep_running`` is set.
- Having given up, alerts still flow but no systemd calls; ``restart_limit.then`` unmonitor
  unmonitors until re-arm, stop stops once.  On re-arm a failed unit is restarted, a stopped
  keep_running unit started, a failing one gets ``cfg.action`` again.
- A limit alerts once per episode over it; a non-alert ``then`` repeats every ``for`` cycles.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sdwatch.config import Action as Then
from sdwatch.config import UnitConfig
from sdwatch.messages import (
    ActionFinished,
    Alert,
    Do,
    LimitObserved,
    Observation,
    ProbeObserved,
    Requested,
    ResetFailed,
    Restart,
    Start,
    Stop,
    SystemdObserved,
    Unmonitor,
)
from sdwatch.states import RESOURCES, Event, Health, judge_health

PENDING_TIMEOUT = 90.0  # systemd's DefaultTimeoutStartSec: how long a restart may stay unseen
_UP = ("active", "reloading", "activating", "deactivating")  # its processes are there


@dataclass(frozen=True)
class ProbeState:
    """What policy needs of a probe's past (its last result and time are the daemon's): a
    passing probe's state stops changing once its window is full, so most steps change nothing.
    """

    name: str
    history: tuple[bool, ...] = ()  # counted attempts since the last verdict; True = failed
    failing: bool = False
    successes: int = 0  # consecutive counted successes, up to the probe's ``recover``
    failures: int = 0  # consecutive counted failures
    passed: bool = False  # passed at least once since the unit's last start


@dataclass(frozen=True)
class LimitState:
    resource: str
    over_for: int = 0  # consecutive counted readings over the limit
    tripped: bool = False  # acted on, and not yet back under
    value: float | None = None
    reason: str = ""


@dataclass(frozen=True)
class UnitState:
    probes: tuple[ProbeState, ...] = ()
    limits: tuple[LimitState, ...] = ()
    active_state: str = ""  # "" until systemd was first observed
    sub_state: str = ""
    result: str = ""
    grace_until: float | None = None
    confirmed_at: float | None = None  # when every probe had passed since the unit's start
    pending_until: float | None = None  # a (re)start by sdwatch not yet seen active
    pending_started: bool = False  # ... and systemd has begun starting it (activating)
    restarts: tuple[float, ...] = ()  # times of sdwatch's recent (re)starts
    total_restarts: int = 0
    gave_up_at: float | None = None
    unmonitored: bool = False
    last_failure: str = ""
    last_failure_at: float | None = None

    @property
    def gave_up(self) -> bool:
        return self.gave_up_at is not None


def initial(cfg: UnitConfig, now: float) -> UnitState:
    """Given a unit's config, return its fresh state: no grace until systemd tells when the
    unit started (``now`` is kept for callers' symmetry with ``persist.from_persistent``)."""
    del now
    return UnitState(probes=tuple(ProbeState(p.name) for p in cfg.probes),
                     limits=tuple(LimitState(r) for r in RESOURCES if getattr(cfg, r)))


def step(cfg: UnitConfig, state: UnitState, obs: Observation,
         now: float) -> tuple[UnitState, list[Do]]:
    """Given a unit's config and state, one observation and the time, return the new state and
    the actions to execute in order.  An observation that changes nothing (a passing probe
    passes again) returns ``state`` itself and no actions."""
    if type(obs) is ProbeObserved and obs.ok and _steady(cfg, state, obs.probe):
        return state, []
    return _step(cfg, state, obs, now)


def _steady(cfg: UnitConfig, state: UnitState, probe: str) -> bool:
    """Whether one more pass of ``probe`` would change nothing: no restart is pending, no
    re-arm is due, the probe's window is full of passes and it passed ``recover`` times in a
    row (so it is not failing, and passed since the unit's start: grace is over or waits for
    another probe).  tests/unit/test_policy_shortcut.py proves ``step`` equal to ``_step``."""
    if state.pending_until is not None or state.gave_up_at is not None:
        return False
    for ps in state.probes:
        if ps.name == probe:
            break
    else:
        return False
    if True in ps.history:
        return False
    for pc in cfg.probes:
        if pc.name == probe:
            return (ps.successes >= pc.recover
                    and len(ps.history) == max(pc.window, pc.failures))
    return False


def _step(cfg: UnitConfig, state: UnitState, obs: Observation,
          now: float) -> tuple[UnitState, list[Do]]:
    """``step`` without its shortcut for observations that change nothing."""
    state, out = _maybe_rearm(cfg, state, now)
    if isinstance(obs, Requested):
        state, more = _on_request(cfg, state, obs, now)
        return state, out + more
    silent = state.unmonitored  # rule: unmonitored units only keep their status up to date
    if state.pending_until is not None and now >= state.pending_until:
        state, more = _react(cfg, replace(state, pending_until=None), now)
        out += more
    handler = {ProbeObserved: _on_probe, LimitObserved: _on_limit,
               SystemdObserved: _on_systemd, ActionFinished: _on_finished}.get(type(obs))
    if handler is not None:
        state, more = handler(cfg, state, obs, now)
        out += more
    if silent:
        out = [a for a in out if isinstance(a, Alert) and a.event == Event.REARMED]
    return state, out


def health(cfg: UnitConfig | None, state: UnitState, now: float) -> Health:
    """Given a unit's config and state, return its health at ``now`` (states.judge_health,
    the one rule, fed policy's view of the unit)."""
    return judge_health(state.active_state, state.sub_state, unmonitored=state.unmonitored,
                        gave_up=state.gave_up, restarting=state.pending_until is not None,
                        in_grace=_in_grace(state, now),
                        failing=_failing(state) or any(lim.tripped for lim in state.limits))


def _in_grace(state: UnitState, now: float) -> bool:
    return state.grace_until is not None and now < state.grace_until


def _failing(state: UnitState) -> bool:
    return any(p.failing for p in state.probes)


def _acting(state: UnitState) -> bool:
    return not state.gave_up and not state.unmonitored


def _probe(state: UnitState, name: str) -> ProbeState:
    return next((p for p in state.probes if p.name == name), ProbeState(name))


def _limit(state: UnitState, resource: str) -> LimitState:
    return next((lim for lim in state.limits if lim.resource == resource), LimitState(resource))


def _put_probe(state: UnitState, ps: ProbeState) -> UnitState:
    if all(p.name != ps.name for p in state.probes):
        return replace(state, probes=(*state.probes, ps))  # added by a config reload
    return replace(state, probes=tuple(ps if p.name == ps.name else p for p in state.probes))


def _put_limit(state: UnitState, ls: LimitState) -> UnitState:
    if all(lim.resource != ls.resource for lim in state.limits):
        return replace(state, limits=(*state.limits, ls))
    return replace(state, limits=tuple(ls if lim.resource == ls.resource else lim
                                       for lim in state.limits))


def _failed(state: UnitState, reason: str, now: float) -> UnitState:
    return replace(state, last_failure=reason, last_failure_at=now)


def _fresh_start(cfg: UnitConfig, state: UnitState, since: float,
                 first_sight: bool = False) -> UnitState:
    """Given a unit that was (re)started at ``since``, return it in grace from then with fresh
    counters; probe verdicts stay until recovered, and at the ``first_sight`` of a unit (a
    state restored after sdwatch's restart or reload) so do tripped limits: each was alerted
    once.  A start already confirmed (every probe passed, seen by an earlier sdwatch) gets no
    grace."""
    confirmed = (state.confirmed_at is not None and since <= state.confirmed_at
                 or not cfg.probes)  # nothing to answer: started when systemd says so
    return replace(state, grace_until=None if confirmed else since + cfg.grace,
                   probes=tuple(replace(p, history=(), successes=0, failures=0, passed=False)
                                for p in state.probes),
                   limits=tuple(replace(lim, over_for=0, tripped=lim.tripped and first_sight)
                                for lim in state.limits))


def _apply(cfg: UnitConfig, state: UnitState, then: Then, reason: str,
           now: float) -> tuple[UnitState, list[Do]]:
    """Given a configured reaction, return the state and actions carrying it out (if acting)."""
    if then is Then.ALERT or not _acting(state):
        return state, []
    if then is Then.RESTART:
        return _start(cfg, state, now, reason, running=state.active_state in (*_UP, ""))
    if then is Then.START:
        return _start(cfg, state, now, reason, restart=False)
    if then is Then.STOP:
        return state, [Stop(reason)]
    return replace(state, unmonitored=True), [Unmonitor(reason)]


def _start(cfg: UnitConfig, state: UnitState, now: float, reason: str, restart: bool = True,
           reset_failed: bool = False, running: bool = False) -> tuple[UnitState, list[Do]]:
    """Given a wish to (re)start the unit, return a (re)start, or giving up at the limit.
    ``running``: the unit's processes are still there, so its stop gets the budget."""
    if not _acting(state):
        return state, []
    limit = cfg.restart_limit
    recent = tuple(t for t in state.restarts if now - t < limit.within)
    if len(recent) >= limit.restarts:
        return _give_up(cfg, replace(state, restarts=recent), now, reason)
    state = replace(_fresh_start(cfg, state, now), restarts=(*recent, now),
                    total_restarts=state.total_restarts + 1,
                    pending_until=now + max(cfg.grace, PENDING_TIMEOUT), pending_started=False)
    budget = cfg.stop_budget if running and not cfg.kill_first else None
    do: Do = (Restart(kill_first=cfg.kill_first, reason=reason, stop_budget=budget) if restart
              else Start(reason))
    return state, [ResetFailed(), do] if reset_failed else [do]


def _give_up(cfg: UnitConfig, state: UnitState, now: float,
             reason: str) -> tuple[UnitState, list[Do]]:
    limit = cfg.restart_limit
    out: list[Do] = [Alert(Event.GAVE_UP, f"{cfg.name}: not restarting ({reason}): already "
                           f"{len(state.restarts)} restarts within {limit.within:g}s; "
                           f"re-arming in {limit.rearm:g}s")]
    state = replace(state, gave_up_at=now)
    if limit.then is Then.UNMONITOR:
        state = replace(state, unmonitored=True)
        out.append(Unmonitor(f"restart limit reached ({reason})"))
    elif limit.then is Then.STOP:
        out.append(Stop(f"restart limit reached ({reason})"))
    return state, out


def _maybe_rearm(cfg: UnitConfig, state: UnitState, now: float) -> tuple[UnitState, list[Do]]:
    """Given a unit that gave up ``rearm`` seconds ago or more, re-arm it and retry."""
    limit = cfg.restart_limit
    if state.gave_up_at is None or now < state.gave_up_at + limit.rearm:
        return state, []
    unmonitored = state.unmonitored and limit.then is not Then.UNMONITOR
    state = replace(state, gave_up_at=None, restarts=(), unmonitored=unmonitored)
    out: list[Do] = [Alert(Event.REARMED, f"{cfg.name}: re-armed {limit.rearm:g}s after giving up")]
    more: list[Do] = []
    if state.pending_until is not None or state.sub_state == "auto-restart":
        pass
    elif state.active_state == "failed":
        state, more = _start(cfg, state, now, "still failed when re-armed",
                             reset_failed=state.result == "start-limit-hit")
    elif state.active_state == "inactive":
        state, more = _react(cfg, state, now)  # keep_running
    elif _failing(state) and state.active_state in ("active", ""):
        state, more = _apply(cfg, state, cfg.action, "still failing when re-armed", now)
    return state, out + more


def _on_request(cfg: UnitConfig, state: UnitState, obs: Requested,
                now: float) -> tuple[UnitState, list[Do]]:
    """An administrator's command is carried out even when sdwatch gave up or unmonitors the
    unit: a person asked.  A restart counts as sdwatch's but not toward the restart limit."""
    if obs.command == "unmonitor":
        if state.unmonitored:
            return state, []
        return replace(state, unmonitored=True), [Unmonitor("unmonitored on request")]
    if obs.command == "monitor":
        if not (state.unmonitored or state.gave_up):
            return state, []
        state = replace(state, unmonitored=False, gave_up_at=None, restarts=(),
                        probes=tuple(replace(p, history=(), failures=0, failing=False)
                                     for p in state.probes),
                        limits=tuple(replace(lim, over_for=0, tripped=False)
                                     for lim in state.limits))
        return state, [Alert("rearmed", f"{cfg.name}: monitored again on request")]
    if obs.command == "restart":
        state = replace(_fresh_start(cfg, state, now), total_restarts=state.total_restarts + 1,
                        pending_until=now + max(cfg.grace, PENDING_TIMEOUT),
                        pending_started=False)
        do: list[Do] = [ResetFailed()] if state.result == "start-limit-hit" else []
        return state, [*do, Restart(kill_first=cfg.kill_first, reason="restart on request")]
    return state, []


def _react(cfg: UnitConfig, state: UnitState, now: float, stop_job: bool = False,
           was_up: bool = False) -> tuple[UnitState, list[Do]]:
    """Given a unit whose systemd state just changed (or a pending restart just ended), return
    the reaction: crash handling, keep_running, or nothing.  ``was_up``: it was running before
    this change; ``stop_job``: a job took it down (see SystemdObserved)."""
    if state.sub_state == "auto-restart":
        return state, []  # systemd restarts it itself
    result = state.result or "no result"
    if state.active_state == "failed" and stop_job:
        # asked to stop, and the stop went badly (e.g. TimeoutStopSec): still a deliberate stop
        state = _failed(state, f"{cfg.name} failed while being stopped ({result})", now)
        if cfg.keep_running:
            return _start(cfg, state, now, f"{cfg.name} found stopped (keep_running)",
                          reset_failed=state.result == "start-limit-hit")
        return state, []
    if state.active_state == "inactive" and was_up and not stop_job:
        reason = f"{cfg.name} exited by itself ({result}, no stop job)"
        state = _failed(state, reason, now)
        out: list[Do] = [Alert(Event.CRASHED, reason)]
        if cfg.action in (Then.RESTART, Then.START) or cfg.keep_running:
            state, more = _start(cfg, state, now, reason, restart=False)
            out += more
        return state, out
    if state.active_state == "failed":
        reason = f"{cfg.name} failed ({result})"
        state = _failed(state, reason, now)
        out = [Alert(Event.CRASHED, reason)]
        if cfg.action in (Then.RESTART, Then.START) or cfg.keep_running:
            state, more = _start(cfg, state, now, reason,
                                 reset_failed=state.result == "start-limit-hit")
            out += more
        return state, out
    if state.active_state == "inactive" and cfg.keep_running:
        return _start(cfg, state, now, f"{cfg.name} found stopped (keep_running)",
                      restart=False)
    return state, []


def _on_probe(cfg: UnitConfig, state: UnitState, obs: ProbeObserved,
              now: float) -> tuple[UnitState, list[Do]]:
    pc = next((p for p in cfg.probes if p.name == obs.probe), None)
    if pc is None:
        return state, []
    ps = _probe(state, pc.name)
    if not obs.ok:
        state = _failed(state, f"probe {pc.name}: {obs.reason}", now)
    window = max(pc.window, pc.failures)
    if state.pending_until is not None:
        return _put_probe(state, ps), []  # the old process's answers, or none yet
    if obs.ok:
        ps = replace(ps, history=(*ps.history, False)[-window:], failures=0, passed=True,
                     successes=min(ps.successes + 1, pc.recover))
        state = _put_probe(state, ps)
        if _in_grace(state, now) and all(_probe(state, p.name).passed for p in cfg.probes):
            state = replace(state, grace_until=now, confirmed_at=now)  # every probe answered
        if not (ps.failing and ps.successes >= pc.recover):
            return state, []
        state = _put_probe(state, replace(ps, failing=False))
        return state, [] if _failing(state) else [
            Alert(Event.RECOVERED, f"{cfg.name}: probe {pc.name} passes again: {obs.reason}")]
    if _in_grace(state, now) or state.active_state not in ("active", ""):
        return _put_probe(state, ps), []
    ps = replace(ps, history=(*ps.history, True)[-window:], successes=0,
                 failures=ps.failures + 1)
    if sum(ps.history) < pc.failures:
        return _put_probe(state, ps), []
    was_failing = _failing(state)
    state = _put_probe(state, replace(ps, history=(), failing=True))
    reason = (f"probe {pc.name} failed {pc.failures} of the last {window} times: "
              f"{obs.reason}")
    out: list[Do] = [] if was_failing else [Alert(Event.FAILING, f"{cfg.name}: {reason}")]
    state, more = _apply(cfg, state, cfg.action, reason, now)
    return state, out + more


def _on_limit(cfg: UnitConfig, state: UnitState, obs: LimitObserved,
              now: float) -> tuple[UnitState, list[Do]]:
    limit = getattr(cfg, obs.resource, None) if obs.resource in RESOURCES else None
    if limit is None:
        return state, []
    ls = replace(_limit(state, obs.resource), value=obs.value, reason=obs.reason)
    if state.pending_until is not None or _in_grace(state, now):
        return _put_limit(state, ls), []
    if not obs.over:
        return _put_limit(state, replace(ls, over_for=0, tripped=False)), []
    if ls.over_for + 1 < limit.for_cycles:
        return _put_limit(state, replace(ls, over_for=ls.over_for + 1)), []
    reason = f"{obs.resource} {obs.reason} for {limit.for_cycles} cycles"
    state = _failed(_put_limit(state, replace(ls, over_for=0, tripped=True)), reason, now)
    out: list[Do] = [] if ls.tripped else [
        Alert(Event.LIMIT, f"{cfg.name}: {reason}; then {limit.then.value}")]
    state, more = _apply(cfg, state, limit.then, reason, now)
    return state, out + more


def _on_systemd(cfg: UnitConfig, state: UnitState, obs: SystemdObserved,
                now: float) -> tuple[UnitState, list[Do]]:
    before = state.active_state, state.sub_state
    state = replace(state, active_state=obs.active_state, sub_state=obs.sub_state,
                    result=obs.result)
    since = now if obs.since is None else obs.since
    if state.pending_until is not None:
        if obs.active_state == "active":
            return replace(_fresh_start(cfg, state, since), pending_until=None,
                           pending_started=False), []
        if obs.active_state == "activating":
            return replace(state, pending_started=True), []
        if obs.active_state == "failed" and (state.pending_started
                                             or obs.result == "start-limit-hit"):
            # our (re)start failed: systemd refused it (start rate limit) or the process died
            # while starting.  A failure before that is the old process going (kill_first).
            return _react(cfg, replace(state, pending_until=None, pending_started=False), now)
        return state, []  # part of our own restart
    if (obs.active_state, obs.sub_state) == before:
        return state, []
    if obs.active_state == "active":
        if before[0] in ("active", "reloading"):
            return state, []
        # (re)started, or first seen: grace runs from its start, not from sdwatch's
        return _fresh_start(cfg, state, since, first_sight=before[0] == ""), []
    return _react(cfg, state, now, obs.stop_job, was_up=before[0] in _UP)


def _on_finished(cfg: UnitConfig, state: UnitState, obs: ActionFinished,
                 now: float) -> tuple[UnitState, list[Do]]:
    action = obs.action
    if not isinstance(action, (Restart, Start, Stop)):
        return state, []  # a failed alert must not alert; ResetFailed is judged by the restart
    verb = {Restart: "restart", Start: "start", Stop: "stop"}[type(action)]
    if obs.ok:
        if isinstance(action, Stop):
            return state, []
        return state, [Alert(Event.RESTARTED, f"{cfg.name}: {verb}ed by sdwatch: {action.reason}")]
    message = f"{cfg.name}: sdwatch could not {verb} it: {obs.error}"
    state = _failed(state, message, now)
    if not isinstance(action, Stop):
        state = replace(state, pending_until=None, grace_until=None)
    return state, [Alert(Event.FAILING, message)]
