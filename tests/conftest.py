"""Suite-wide test policy: tests marked ``systemd`` need a real systemd as PID 1.

Outside tests/harness/sdtest they are skipped, unless SDWATCH_REQUIRE_SYSTEMD=1 (the harness
and CI set it), which turns every such skip into a failure.  Tests under tests/systemd/ get
the marker automatically.
"""

from __future__ import annotations

import os
import pathlib

import pytest

HERE = pathlib.Path(__file__).parent


def systemd_is_pid1() -> bool:
    """Return True when this process sees systemd as PID 1 with its runtime directory."""
    try:
        return (pathlib.Path("/proc/1/comm").read_text().strip() == "systemd"
                and os.path.isdir("/run/systemd/system"))
    except OSError:
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if (HERE / "systemd") in pathlib.Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.systemd)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("systemd") is None or systemd_is_pid1():
        return
    message = "needs systemd as PID 1: run inside tests/harness/sdtest (make test does)"
    if os.environ.get("SDWATCH_REQUIRE_SYSTEMD") == "1":
        pytest.fail(f"SDWATCH_REQUIRE_SYSTEMD=1 but this test would skip: {message}",
                    pytrace=False)
    pytest.skip(message)
