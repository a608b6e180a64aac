"""`systemctl reload sdwatch` that fails when the new configuration is refused.

systemd 252 (Debian 12) has no Type=notify-reload: ExecReload= only runs a command, and the
reload job succeeds when that command exits 0.  So ExecReload= runs ``sdwatch reload``,
which validates the configuration itself (exit 2 with the problems on stderr, shown by
``systemctl status`` and the journal), then sends SIGHUP to the daemon and waits for its
answer, which the daemon writes to ``reload.json`` in its runtime directory: the reload
job ends only once the daemon applied (or refused) the new configuration.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass

ANSWER = "reload.json"


def clock() -> float:
    """One clock for the command and the daemon: seconds since boot, suspend included."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


@dataclass(frozen=True)
class Answer:
    """The daemon's account of its latest reload."""

    ok: bool
    messages: tuple[str, ...]
    started: float  # clock() when the daemon began it
    units: int = 0


def record(runtime_dirs: set[str], answer: Answer) -> None:
    """In the daemon: write the reload's outcome where ``sdwatch reload`` waits for it."""
    from sdwatch.state import write_json_atomic

    data = {"ok": answer.ok, "messages": list(answer.messages), "started": answer.started,
            "units": answer.units, "pid": os.getpid()}
    for directory in runtime_dirs:
        write_json_atomic(os.path.join(directory, ANSWER), data, durable=False)


def read(runtime_dir: str) -> Answer | None:
    """The latest answer, or None when there is none (yet) or it cannot be read."""
    try:
        with open(os.path.join(runtime_dir, ANSWER)) as f:
            data = json.load(f)
        return Answer(bool(data["ok"]), tuple(str(m) for m in data["messages"]),
                      float(data["started"]), int(data.get("units", 0)))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def request(pid: int, runtime_dir: str, timeout: float) -> Answer:
    """Ask the daemon ``pid`` to reload and wait for its answer; raise TimeoutError without
    one within ``timeout`` seconds, ProcessLookupError when there is no such process."""
    sent = clock()
    os.kill(pid, signal.SIGHUP)
    deadline = sent + timeout
    while clock() < deadline:
        answer = read(runtime_dir)
        if answer is not None and answer.started >= sent:
            return answer
        time.sleep(0.02)
    raise TimeoutError(f"no answer from sdwatch (pid {pid}) within {timeout:g}s")
