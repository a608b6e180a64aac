"""The typer-free path of status/summary: which command lines take it, and that it answers
exactly as the typer app does."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from sdwatch.report import plain_args

DATA = pathlib.Path(__file__).parent / "testdata" / "config"


@pytest.mark.parametrize("argv, expected", [
    (["status"], {"units": [], "all_units": False, "as_json": False, "config_path": None,
                  "summary": False}),
    (["status", "-a", "--json", "x.service", "--config", "/etc/s.toml", "y.service"],
     {"units": ["x.service", "y.service"], "all_units": True, "as_json": True,
      "config_path": "/etc/s.toml", "summary": False}),
    (["summary", "--config=/c.toml", "--all"],
     {"units": [], "all_units": True, "as_json": False, "config_path": "/c.toml",
      "summary": True}),
])
def test_plain_command_lines_take_the_fast_path(argv, expected) -> None:
    assert plain_args(argv) == expected


@pytest.mark.parametrize("argv", [
    [], ["check"], ["status", "--help"], ["status", "-h"], ["summary", "--json"],
    ["status", "--config"], ["status", "--config", "--json"], ["status", "--jsn"],
    ["status", "--", "x.service"], ["--help"], ["run"],
])
def test_anything_else_goes_to_typer(argv) -> None:
    assert plain_args(argv) is None


def _run(entry: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent/bus"}
    return subprocess.run([sys.executable, "-c", entry, *args], capture_output=True, text=True,
                          timeout=60, env=env)


FAST = "import sys; sys.argv[0] = 'sdwatch'; from sdwatch.main import main; main()"
TYPER = "import sys; sys.argv[0] = 'sdwatch'; from sdwatch.cli import app; app()"


@pytest.mark.parametrize("args", [
    ("status",),
    ("summary", "--all"),
    ("status", "--json", "--config", str(DATA / "bad" / "syntax_error.toml")),
    ("status", "--config", str(DATA / "good" / "full.toml")),
])
def test_fast_path_answers_as_the_typer_app(args) -> None:
    fast, slow = _run(FAST, *args), _run(TYPER, *args)
    assert (fast.returncode, fast.stdout, fast.stderr) == (slow.returncode, slow.stdout,
                                                           slow.stderr)
    assert fast.returncode in (2, 4)  # no systemd reachable here: a clear error either way


def test_bad_unit_name_is_a_usage_error_on_both_paths() -> None:
    fast, slow = _run(FAST, "status", "bad name"), _run(TYPER, "status", "bad name")
    assert (fast.returncode, fast.stdout, fast.stderr) == (slow.returncode, slow.stdout,
                                                           slow.stderr)
    assert fast.returncode == 2 and "'bad name' is not a valid unit name" in fast.stderr


def test_fast_path_does_not_import_typer() -> None:
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "sdwatch", "status"],
                       capture_output=True, text=True, timeout=60,
                       env={**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent/x"})
    imported = {line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines()
                if line.startswith("import time:")}
    assert "sdwatch.status" in imported or "sdwatch.report" in imported
    assert not {"typer", "click", "sdwatch.cli"} & imported


def test_help_still_comes_from_typer() -> None:
    r = _run(FAST, "status", "--help")
    assert r.returncode == 0 and "--json" in r.stdout and "Usage" in r.stdout
