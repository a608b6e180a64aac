"""Evidence of a failure: how the main process ended and the last journal lines of its run.

Gathered the same way for the daemon's alerts and for the OnFailure hook (``sdwatch alert``):
:func:`gather` from a unit's systemd facts.  Blocking (journalctl): the daemon runs it in a
thread.
"""

from __future__ import annotations

import logging
import re
import subprocess
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sdwatch.unitinfo import UnitInfo

log = logging.getLogger("sdwatch")

Details = dict[str, object]


def gather(info: UnitInfo, settle: float = 0.0) -> tuple[str, Details]:
    """Given a failed unit's facts, return (why, details): result, restarts_systemd,
    exit_code or signal, invocation_id and journal (a tuple of lines).

    ``settle`` seconds: wait that long at most for two journal reads to agree (see
    :func:`stable_journal`); 0 reads once."""
    why, details = failure_details(info.result, info.exec_main_code, info.exec_main_status,
                                   info.n_restarts)
    details["invocation_id"] = info.invocation_id
    details["journal"] = stable_journal(info.id, info.invocation_id,
                                        info.exec_main_start_timestamp, settle)
    return why, details


def failure_details(result: str, exec_main_code: int, exec_main_status: int,
                    n_restarts: int) -> tuple[str, Details]:
    """Given a unit's Result, ExecMainCode/Status and NRestarts, return (why, details)."""
    import signal

    details: Details = {"result": result, "restarts_systemd": n_restarts}
    if exec_main_code == 1:  # CLD_EXITED
        details["exit_code"] = exec_main_status
        why = f"exit code {exec_main_status}"
    elif exec_main_code in (2, 3):  # CLD_KILLED, CLD_DUMPED
        try:
            name = signal.Signals(exec_main_status).name
        except ValueError:
            name = f"signal {exec_main_status}"
        details["signal"] = name
        why = f"killed by {name}" + (" (core dumped)" if exec_main_code == 3 else "")
    else:
        why = "no main process exit recorded"
    return f"result {result or 'unknown'}, {why}, {n_restarts} restarts by systemd", details


def journal_excerpt(unit: str, invocation_id: str, lines: int = 20,
                    timeout: float = 5.0, since_usec: int = 0) -> tuple[str, ...]:
    """Given a unit and its run's InvocationID ("" for none), return the last ``lines``
    journal lines of that run (or of the unit), () if journalctl fails.  Blocking.

    With ``since_usec`` (the run's ExecMainStartTimestamp) the unit's lines since then are
    taken instead: journald tags the output of a process that exits at once with the unit
    (from its stream) but not always with the run's invocation ID (read from the cgroup of
    a process already gone)."""
    cmd = ["journalctl", "--no-pager", "--quiet", "-o", "short-iso", "-n", str(lines)]
    if since_usec > 0:
        cmd += ["-u", unit, f"--since=@{since_usec / 1e6:.6f}"]
    elif re.fullmatch(r"[0-9a-f]{32}", invocation_id):
        # the service's own output, "+" the lines systemd logged about that run
        cmd += [f"_SYSTEMD_INVOCATION_ID={invocation_id}", "+",
                f"INVOCATION_ID={invocation_id}"]
    else:
        cmd += ["-u", unit]
    try:
        r = subprocess.run(cmd, capture_output=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("journal of %s unavailable: %s", unit, exc)
        return ()
    if r.returncode != 0:
        err = r.stderr.decode("utf-8", "replace").strip().splitlines()
        log.warning("journal of %s unavailable: journalctl exited with status %d%s", unit,
                    r.returncode, f": {err[-1]}" if err else "")
        return ()
    text = r.stdout.decode("utf-8", "replace")
    return tuple(line for line in text.splitlines() if line)[-lines:]


def stable_journal(unit: str, invocation_id: str, since_usec: int = 0,
                   settle: float = 3.0) -> tuple[str, ...]:
    """Return journal_excerpt once two reads agree (at most ``settle`` seconds): the failed
    run's last lines and systemd's own reach journald by different paths and may lag."""
    deadline = time.monotonic() + settle
    last = journal_excerpt(unit, invocation_id, since_usec=since_usec)
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = journal_excerpt(unit, invocation_id, since_usec=since_usec)
        if now == last and now:
            break
        last = now
    return last
