"""Fixtures starting real servers (memcached, nginx, MariaDB, Redis, PostgreSQL) and hostile
ones, once per session."""

from __future__ import annotations

import json
import select
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from . import servers


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "integration: needs real servers started by the tests")


@pytest.fixture(scope="session")
def memcached(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Server]:
    with servers.start_memcached(tmp_path_factory.mktemp("memcached")) as server:
        yield server


@pytest.fixture(scope="session")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Server]:
    with servers.start_nginx(tmp_path_factory.mktemp("nginx")) as server:
        yield server


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Server]:
    with servers.start_mariadb(tmp_path_factory.mktemp("mariadb")) as server:
        yield server


@pytest.fixture(scope="session")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Server]:
    with servers.start_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="session")
def postgresql(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Server]:
    with servers.start_postgresql(tmp_path_factory.mktemp("postgresql")) as server:
        yield server


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
