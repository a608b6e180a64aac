"""Fixtures for tests that run inside a real systemd (tests/harness/sdtest)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from typing import Callable, Iterator

import pytest

UNIT_DIR = "/run/systemd/system"


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
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


@pytest.fixture
def make_unit() -> Iterator[Callable[..., str]]:
    """Write a service unit to /run/systemd/system, load it, and remove it afterwards.

    Returns a function ``make(body, name=None, start=True) -> unit name``.
    """
    made: list[str] = []

    def make(service: str, name: str | None = None, start: bool = True, unit: str = "") -> str:
        name = name or f"sdw-test-{uuid.uuid4().hex[:8]}.service"
        with open(os.path.join(UNIT_DIR, name), "w") as f:
            f.write(f"[Unit]\nDescription=sdwatch test {name}\n{unit}\n[Service]\n{service}\n")
        made.append(name)
        systemctl("daemon-reload")
        if start:
            systemctl("start", name, check=False)
        return name

    yield make
    for name in made:
        systemctl("stop", name, check=False)
        systemctl("reset-failed", name, check=False)
        os.unlink(os.path.join(UNIT_DIR, name))
    if made:
        systemctl("daemon-reload")


@pytest.fixture
def sd():
    """sdwatch's systemd adapter, connected."""
    from sdwatch.systemd import Systemd

    with Systemd() as conn:
        yield conn
