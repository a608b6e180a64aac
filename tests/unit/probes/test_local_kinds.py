"""exec and file probes against real processes and files (no servers needed)."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from leaks import fd_baseline, opened_since

from sdwatch import schema
from sdwatch.probes import REGISTRY
from sdwatch.probes.base import run
from sdwatch.probes.errors import Outcome
from sdwatch.probes.exec import parse_output


def probe(kind: str, table: dict, timeout: float = 5.0):
    return asyncio.run(run(kind, schema.build(REGISTRY[kind].spec, table), timeout))


@pytest.mark.parametrize("code, outcome", [(0, "ok"), (1, "warning"), (2, "failed"),
                                           (3, "unknown"), (7, "unknown")])
def test_exec_maps_nagios_exit_status(code: int, outcome: str) -> None:
    result = probe("exec", {"command": f"echo 'LOAD {code} | load1=0.5;1;2 x=3'; exit {code}",
                            "shell": True})
    assert result.outcome.value == outcome
    assert result.metrics["exit_status"] == code and result.metrics["load1"] == 0.5
    if code:
        assert result.reason == (f"LOAD {code}" if code in (1, 2, 3) else "exit status 7: LOAD 7")


def test_exec_uses_stderr_when_stdout_is_empty_and_caps_output() -> None:
    result = probe("exec", {"command": "echo broken >&2; head -c 10000000 /dev/zero >&2; exit 2",
                            "shell": True, "output_bytes": "1K"})
    assert (result.outcome, result.reason) == (Outcome.FAILED, "broken")


def test_exec_missing_binary_is_unknown() -> None:
    result = probe("exec", {"command": ["/nonexistent/check"]})
    assert result.outcome is Outcome.UNKNOWN and "No such file" in result.reason


def test_exec_timeout_kills_the_group_and_reaps(tmp_path) -> None:
    pidfile = tmp_path / "pids"
    fds = fd_baseline()
    result = probe("exec", {"command": f"sleep 30 & echo $! > {pidfile}; sleep 30",
                            "shell": True}, timeout=0.5)
    assert result.outcome is Outcome.TIMEOUT and 0.4 <= result.duration <= 0.6
    grandchild = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{grandchild}") and time.monotonic() < deadline:
        time.sleep(0.01)  # waiting for the kernel to finish the SIGKILLed grandchild
    assert not os.path.exists(f"/proc/{grandchild}")
    assert opened_since(fds) == {}
    assert _zombie_children() == []  # the probe reaped what it started


def _zombie_children() -> list[int]:
    """PIDs of this process's children that exited and were not reaped.

    (Other tests' servers may still run as children, so "no child at all" would not do.)"""
    zombies = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == b"Z" and int(fields[1]) == os.getpid():
            zombies.append(int(entry))
    return zombies


def test_parse_output_splits_perfdata() -> None:
    assert parse_output("DISK OK - 42% | '/ used'=42%;80;90 inodes=7\nmore") == (
        "DISK OK - 42%", {"/ used": 42.0, "inodes": 7.0})


def test_file_probe_checks_age_and_size(tmp_path) -> None:
    path = tmp_path / "heartbeat"
    path.write_bytes(b"x" * 100)
    assert probe("file", {"path": str(path), "max_age": "1m", "min_size": 10}).ok
    old = time.time() - 300
    os.utime(path, (old, old))
    result = probe("file", {"path": str(path), "max_age": "2m"})
    assert (result.outcome, result.reason) == (Outcome.FAILED, "modified 5m ago (max 2m)")
    assert probe("file", {"path": str(path), "max_size": 50}).reason == "size 100 B above 50 B"
    missing = probe("file", {"path": str(tmp_path / "nope")})
    assert missing.outcome is Outcome.FAILED and missing.reason.endswith("no such file")
