"""What of a unit's policy state outlives sdwatch: to and from the JSON kept in state.json.

Restart history, gave-up and unmonitored flags, the start last confirmed, and what was alerted
as failing survive an sdwatch restart or reload; everything else starts afresh (policy.initial).
state.py writes and reads the file; this module only translates, and reads anything: an older,
newer or damaged entry gives what can be read of it.  Pure, like policy.
"""

from __future__ import annotations

import math
from dataclasses import replace

from sdwatch.config import UnitConfig
from sdwatch.policy import UnitState, initial

VERSION = 1


def to_persistent(state: UnitState) -> dict[str, object]:
    """Given a unit's state, return what must survive an sdwatch restart, JSON-able."""
    return {"version": VERSION, "restarts": list(state.restarts),
            "total_restarts": state.total_restarts, "gave_up": state.gave_up,
            "gave_up_at": state.gave_up_at, "unmonitored": state.unmonitored,
            "confirmed_at": state.confirmed_at,
            # what was alerted as failing: "once per state" holds across restarts and reloads
            "failing_probes": [p.name for p in state.probes if p.failing],
            "tripped_limits": [lim.resource for lim in state.limits if lim.tripped]}


def key(s: UnitState) -> tuple[object, ...]:
    """What ``to_persistent`` saves, cheap to compare on every observation."""
    return (s.restarts, s.total_restarts, s.gave_up_at, s.unmonitored, s.confirmed_at,
            tuple(p.failing for p in s.probes), tuple(lim.tripped for lim in s.limits))


def from_persistent(cfg: UnitConfig, data: object, now: float) -> UnitState:
    """Given what ``to_persistent`` returned (maybe older, newer or damaged), return the state
    to continue from; unreadable values are dropped, anything but a dict gives ``initial``."""
    state = initial(cfg, now)
    if not isinstance(data, dict):
        return state
    restarts = data.get("restarts")
    if isinstance(restarts, list):
        state = replace(state, restarts=tuple(float(t) for t in restarts if _is_time(t)))
    total = data.get("total_restarts")
    if isinstance(total, int) and not isinstance(total, bool) and total >= 0:
        state = replace(state, total_restarts=total)
    if data.get("gave_up") is True:
        at = data.get("gave_up_at")
        state = replace(state, gave_up_at=float(at) if _is_time(at) else now)
    if data.get("unmonitored") is True:
        state = replace(state, unmonitored=True)
    confirmed = data.get("confirmed_at")
    if _is_time(confirmed):
        state = replace(state, confirmed_at=float(confirmed))
    failing, tripped = data.get("failing_probes"), data.get("tripped_limits")
    if isinstance(failing, list):
        state = replace(state, probes=tuple(replace(p, failing=p.name in failing)
                                            for p in state.probes))
    if isinstance(tripped, list):
        state = replace(state, limits=tuple(replace(lim, tripped=lim.resource in tripped)
                                            for lim in state.limits))
    return state


def _is_time(value: object) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value >= 0)
