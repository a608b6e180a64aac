"""Fixtures for tests that run inside a real systemd (tests/harness/sdtest)."""

from __future__ import annotations

import os
import uuid
from typing import Callable, Iterator

import pytest
from sdcheck import UNIT_DIR, systemctl


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
