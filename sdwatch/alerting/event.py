"""An alert: what happened to which unit, with the evidence.  The core type of alerting,
shared by the daemon, the OnFailure hook, the queue and every channel."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from sdwatch.states import Event


@dataclass(frozen=True)
class AlertEvent:
    """Something worth telling about a unit.  ``details`` holds result, exit_code or signal,
    restarts_systemd, restarts_sdwatch, journal (a tuple of lines) and the like."""

    unit: str
    event: Event
    message: str
    time: float = field(default_factory=time.time)
    host: str = ""  # filled in by the Alerter when empty
    details: Mapping[str, object] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        """Return the event as JSON-ready data."""
        return {"unit": self.unit, "event": self.event, "message": self.message,
                "time": self.time, "host": self.host,
                "details": {k: list(v) if isinstance(v, tuple) else v
                            for k, v in self.details.items()}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AlertEvent:  # JSON: any value
        """Given what to_json returned, return the event (lists become tuples); raise
        ValueError for an event name not in states.Event."""
        details = {k: tuple(v) if isinstance(v, list) else v
                   for k, v in dict(data.get("details") or {}).items()}
        return cls(str(data["unit"]), Event(data["event"]), str(data["message"]),
                   float(data["time"]), str(data.get("host", "")), details)
