"""The command line as a user runs it: a real subprocess, exit codes and messages."""

from __future__ import annotations

import pathlib
import subprocess
import sys

DATA = pathlib.Path(__file__).parent / "testdata" / "config"


def systemd_is_pid1() -> bool:
    try:
        return (pathlib.Path("/proc/1/comm").read_text().strip() == "systemd"
                and pathlib.Path("/run/systemd/system").is_dir())
    except OSError:
        return False


def sdwatch(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "sdwatch", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})


def test_validate_good_config_exits_0() -> None:
    r = sdwatch("validate", "--config", str(DATA / "good" / "full.toml"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("configuration ok: 2 units, 1 probes")


def test_validate_bad_config_exits_2_with_file_and_key() -> None:
    bad = DATA / "bad" / "probe_bad_timeout.toml"
    r = sdwatch("validate", "--config", str(bad))
    assert r.returncode == 2
    assert r.stderr.startswith(f'{bad}: unit."memcached.service".probe[0].timeout: invalid')
    assert "Traceback" not in r.stderr


def test_status_with_bad_config_exits_2() -> None:
    r = sdwatch("status", "--config", str(DATA / "bad" / "syntax_error.toml"))
    assert r.returncode == 2 and "TOML syntax error" in r.stderr


def test_status_without_reachable_systemd_exits_4_with_one_line() -> None:
    r = sdwatch("status", env={"DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent/bus"})
    assert r.returncode == 4
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    if systemd_is_pid1():
        assert "cannot reach systemd over the system bus at unix:path=/nonexistent/bus" in lines[0]
    else:
        assert "systemd is not PID 1 here" in lines[0]


def test_summary_and_json_also_exit_4_when_unreachable() -> None:
    env = {"DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent/bus"}
    assert sdwatch("summary", env=env).returncode == 4
    assert sdwatch("status", "--json", env=env).returncode == 4


def test_probe_timeout_is_a_duration_as_in_the_config_or_seconds() -> None:
    sleep = ["exec", "/bin/sleep", "-o", 'command=["/bin/sleep", "5"]', "--json"]
    for timeout in ("300ms", "0.3"):
        r = sdwatch("probe", *sleep, "--timeout", timeout)
        assert r.returncode == 1, r.stderr
        assert '"reason": "timeout after 300ms waiting for sleep"' in r.stdout
    r = sdwatch("probe", *sleep, "--timeout", "soon")
    assert r.returncode == 2 and r.stderr.startswith("sdwatch: --timeout: invalid duration 'soon'")


def test_validate_config_directory_without_config_exits_2(tmp_path: pathlib.Path) -> None:
    r = sdwatch("validate", "--config", str(tmp_path))
    assert r.returncode == 2, r
    assert r.stderr.startswith(f"{tmp_path}: a directory without sdwatch.toml or conf.d/*.toml")
