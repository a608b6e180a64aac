"""Fixtures starting real servers (memcached, nginx, MariaDB, Redis, PostgreSQL) and hostile
ones, once per session."""

from __future__ import annotations

import json
import select
import subprocess
import sys
from pathlib import Path
from typing import Callable, ContextManager, Iterator

import pytest

from . import servers


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "integration: needs real servers started by the tests")


def _server(name: str, start: Callable[[Path], ContextManager[servers.Server]]) -> Callable:
    """A session fixture called ``name``: the server ``start`` runs in a temp dir of its own."""
    @pytest.fixture(scope="session", name=name)
    def fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Server]:
        with start(tmp_path_factory.mktemp(name)) as server:
            yield server
    return fixture


memcached = _server("memcached", servers.start_memcached)
nginx = _server("nginx", servers.start_nginx)
mariadb = _server("mariadb", servers.start_mariadb)
redis = _server("redis", servers.start_redis)
postgresql = _server("postgresql", servers.start_postgresql)


@pytest.fixture(scope="session")
def hostile_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory of the hostile servers' unix sockets (<behaviour>.sock) and of what the
    mysql_auth_* ones received (<behaviour>.<n>.in)."""
    return tmp_path_factory.mktemp("hostile")


@pytest.fixture(scope="session")
def hostile(hostile_dir: Path) -> Iterator[dict[str, str]]:
    """Return {behaviour: "127.0.0.1:port"} of the servers in hostile.py (a subprocess)."""
    script = Path(__file__).with_name("hostile.py")
    proc = subprocess.Popen([sys.executable, str(script), str(hostile_dir)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 10.0)
        if not ready:
            raise RuntimeError("hostile servers did not start within 10s")
        ports = json.loads(proc.stdout.readline())
        yield {name: f"127.0.0.1:{port}" for name, port in ports.items()}
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
