"""`sdwatch run`: the supervisor, as parts.  asyncio orchestration only; decisions live in
policy.py.

- lifecycle.py  Supervisor: start, signals, reload (one at a time), ticker, watchdog, and the
                hub every observation goes through (``observe``: policy.step, then actions)
- watch.py      per unit: systemd state from signals, the probe and limit schedules
- actions.py    policy's decisions -> systemd calls and alerts (with evidence.py's evidence)
- publish.py    the typed snapshot (sdwatch.snapshot) and /run/sdwatch/status.json

Two connections to systemd (link.py): method calls go through one worker thread (pystemd is
blocking and its bus object must stay on one thread), signals arrive on a second connection
read from the event loop.
"""

from __future__ import annotations

from sdwatch.daemon.lifecycle import Supervisor, main

__all__ = ["Supervisor", "main"]
