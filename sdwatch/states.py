"""Leaf module: health states and unit-name rules.  Imports nothing of sdwatch."""

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


def health_from_systemd(load_state: str, active_state: str) -> Health:
    """Given systemd's LoadState and ActiveState, return the health systemd alone implies."""
    if load_state in ("not-found", "bad-setting", "error", "masked"):
        return Health.MISSING
    return {
        "active": Health.HEALTHY,
        "reloading": Health.STARTING,
        "activating": Health.STARTING,
        "deactivating": Health.STOPPED,
        "inactive": Health.STOPPED,
        "failed": Health.FAILED,
    }.get(active_state, Health.UNKNOWN)


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
