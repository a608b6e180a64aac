"""Helpers for tests that run inside a real systemd (tests/harness/sdtest)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Callable

import pytest

UNIT_DIR = "/run/systemd/system"


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, what: str = ""):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(0.02)


def systemctl(*args: str, check: bool = True) -> str:
    """Run systemctl; return its stdout."""
    r = subprocess.run(["systemctl", *args], capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        raise AssertionError(f"systemctl {' '.join(args)}: {r.returncode} {r.stderr}")
    return r.stdout


def show(unit: str, prop: str) -> str:
    """systemd's own view of one property, independent of sdwatch's adapter."""
    return systemctl("show", "-p", prop, "--value", unit).strip()


def sdwatch(*args: str, env: dict | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the sdwatch CLI of this interpreter as a user would."""
    return subprocess.run([sys.executable, "-m", "sdwatch", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


