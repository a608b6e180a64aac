"""Leaf module: health states, alert events, resource names and unit-name rules.

Imports nothing of sdwatch: every other module may name these facts from here.
"""

from __future__ import annotations

import enum
import re


class Health(str, enum.Enum):
    """sdwatch's verdict on a unit, shown by status and used for exit codes."""

    HEALTHY = "healthy"
    STARTING = "starting"  # activating/reloading: no verdict yet
    FAILING = "failing"  # running, but a probe or limit fails
    FAILED = "failed"  # systemd says failed
    STOPPED = "stopped"  # inactive although it is watched
    MISSING = "missing"  # no such unit file
    GAVE_UP = "gave-up"  # restart limit reached: sdwatch observes but no longer acts
    UNMONITORED = "unmonitored"  # sdwatch was told (by config) to stop watching it
    UNKNOWN = "unknown"

    @property
    def ok(self) -> bool:
        """True when the state does not call for attention."""
        return self in (Health.HEALTHY, Health.STARTING)


MISSING_LOAD_STATES = ("not-found", "bad-setting", "error", "masked")
RUNNING_STATES = ("active", "refreshing")  # ActiveState of a unit that is up


def judge_health(active_state: str, sub_state: str = "", load_state: str = "loaded", *,
                 unmonitored: bool = False, gave_up: bool = False, restarting: bool = False,
                 in_grace: bool = False, failing: bool = False) -> Health:
    """Given what is known of a unit, return its health: the one rule, for the daemon (fed
    by policy.health with its state) and for ``sdwatch status`` without a daemon (systemd's
    facts alone).  ``restarting``: a (re)start by sdwatch not yet seen through; ``failing``:
    a probe or limit verdict against it; ``in_grace``: its startup grace, when no verdict
    counts."""
    if load_state in MISSING_LOAD_STATES:
        return Health.MISSING
    if unmonitored:
        return Health.UNMONITORED
    if gave_up:
        return Health.GAVE_UP
    if restarting or sub_state == "auto-restart":
        return Health.STARTING
    if active_state == "failed":
        return Health.FAILED
    if active_state in ("inactive", "deactivating"):
        return Health.STOPPED
    if active_state in ("activating", "reloading"):
        return Health.STARTING
    if in_grace:
        return Health.STARTING  # no verdicts in grace: a probe still marked failing waits
    if failing:
        return Health.FAILING
    return Health.HEALTHY if active_state in RUNNING_STATES else Health.UNKNOWN


class Event(enum.StrEnum):
    """What an alert is about: policy's decisions, and "failed" from the OnFailure hook."""

    FAILING = "failing"  # a probe or limit fails, or a systemd call by sdwatch failed
    RECOVERED = "recovered"
    RESTARTED = "restarted"  # sdwatch (re)started it
    GAVE_UP = "gave_up"  # restart limit reached
    REARMED = "rearmed"
    LIMIT = "limit"  # a resource limit was exceeded for its cycles
    CRASHED = "crashed"  # the daemon saw it fail
    FAILED = "failed"  # OnFailure= hook (sdwatch alert)


EVENTS = tuple(e.value for e in Event)
# events that mean "this unit needs attention" until a "recovered" event
FAILING_EVENTS = frozenset({Event.FAILING, Event.FAILED, Event.GAVE_UP, Event.CRASHED})

# the resource limits a unit may have, in the order status and config name them
RESOURCES = ("cpu", "memory", "tasks", "fds", "children")


UNIT_TYPES = ("service", "socket", "target", "device", "mount", "automount", "swap", "timer",
              "path", "slice", "scope")
# systemd's unit_name_is_valid(): this character set, a type suffix, at most 255 characters,
# and at most one "@" (templates and their instances).
_UNIT_NAME = re.compile(r"[A-Za-z0-9:_.\\-]+(@[A-Za-z0-9:_.\\-]*)?\.([a-z]+)")


def unit_name_problem(name: str) -> str | None:
    """Return why ``name`` is not a valid unit name, or None if it is."""
    if not name:
        return "empty unit name"
    if len(name) > 255:
        return f"unit name is {len(name)} characters long (at most 255)"
    m = _UNIT_NAME.fullmatch(name)
    if not m or name.startswith("."):
        return (f"{name!r} is not a valid unit name (letters, digits and ':_.\\-@' only, "
                "ending in a type such as .service)")
    if m.group(2) not in UNIT_TYPES:
        return f"{name!r} has an unknown unit type .{m.group(2)}"
    return None
