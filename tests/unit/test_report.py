"""The typer-free path of status/summary: which command lines take it, and that it answers
exactly as the typer app does."""

from __future__ import annotations

import asyncio
import os
import pathlib
import subprocess
import sys
import threading
from typing import Iterator

import pytest
from test_serve import Source

from sdwatch import configfiles, quick, status
from sdwatch.report import plain_args
from sdwatch.serve.api import Api
from sdwatch.serve.httpd import Server

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


def _run(entry: str, *args: str, tz: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent/bus", "TZ": tz}
    if not tz:
        del env["TZ"]
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


def imports(*args: str) -> set[str]:
    """The modules ``sdwatch ARGS`` imports (python -X importtime)."""
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "sdwatch", *args],
                       capture_output=True, text=True, timeout=60,
                       env={**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent/x"})
    return {line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines()
            if line.startswith("import time:")}


def test_fast_path_does_not_import_typer() -> None:
    imported = imports("status")
    assert "sdwatch.status" in imported or "sdwatch.report" in imported
    assert not {"typer", "click", "sdwatch.cli"} & imported


def modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    r = subprocess.run([sys.executable, "-c", f"import sys\n{code}\n"
                        "sys.stderr.write(' '.join(sys.modules))"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return set(r.stderr.splitlines()[-1].split())


def test_checking_a_config_imports_no_asyncio(tmp_path: pathlib.Path) -> None:
    cfg = tmp_path / "sdwatch.toml"
    cfg.write_text("".join(f'[unit."{k}.service"]\nprobe = [{{ kind = "{k}", {target} }}]\n'
                           for k, target in (("memcached", 'address = "127.0.0.1:1"'),
                                             ("http", 'url = "https://127.0.0.1/"'),
                                             ("mysql", 'address = "127.0.0.1:1"'),
                                             ("tls", 'address = "127.0.0.1:1"'),
                                             ("exec", 'command = ["/bin/true"]'))))
    loaded = modules_after(f"from sdwatch.config import load; load({str(cfg)!r})")
    assert {"sdwatch.probes.memcached", "sdwatch.probes.http", "sdwatch.probes.tls"} <= loaded
    assert not {"asyncio", "ssl", "subprocess", "socket"} & loaded


@pytest.fixture
def served(tmp_path: pathlib.Path) -> Iterator[tuple[Source, pathlib.Path]]:
    """A daemon's API (the real HTTP server, a hand-built report) on the socket that the
    config file it returns names; the source answers for that file as it is now."""
    cfg = tmp_path / "sdwatch.toml"
    cfg.write_text(f'[sdwatch]\nruntime_dir = "{tmp_path}"\n[unit."memcached.service"]\n')
    source = Source(identity=configfiles.identity_on_disk([str(cfg)]))
    loop = asyncio.new_event_loop()
    server = Server(Api(source))
    loop.run_until_complete(server.listen_unix(str(tmp_path / "sdwatch.sock")))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield source, cfg
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    loop.run_until_complete(server.close())
    loop.close()


@pytest.mark.parametrize("args, form", [
    (("status",), "text"), (("status", "--json"), "json"), (("summary",), "summary"),
])
def test_daemon_answers_both_paths_alike(served, args, form) -> None:
    source, cfg = served
    fast, slow = _run(FAST, *args, "--config", str(cfg)), _run(TYPER, *args, "-c", str(cfg))
    assert (fast.returncode, fast.stdout, fast.stderr) == (slow.returncode, slow.stdout,
                                                           slow.stderr)
    # the daemon's report, as it renders it: memcached is failing there
    assert (fast.returncode, fast.stderr) == (3, "")
    def steady(text: str) -> list[str]:  # without "(5s ago)": a second may have passed
        return [line for line in text.splitlines() if " ago" not in line]

    assert steady(fast.stdout) == steady(status.render(source.snap, form)) != []
    fast = _run(FAST, "status", "nginx.service", "--config", str(cfg))
    assert fast.returncode == 0 and "Service 'nginx.service'" in fast.stdout
    assert "memcached.service" not in fast.stdout


@pytest.mark.parametrize("args, tz", [
    (("status", "other.service"), ""),  # not watched by that daemon
    (("status", "bad name"), ""),  # never watched: the full path says why
    (("status", "nginx.service,memcached.service"), ""),  # one bad name, not two
    (("status", "\udcff.service"), ""),  # not UTF-8 (the byte 0xff on the command line)
    (("status", "caf\u00e9.service"), ""),  # not ASCII
    (("status", "--all"), ""),
    (("status",), "Asia/Tokyo"),  # the daemon writes times in its own zone
])
def test_what_the_daemon_cannot_answer_takes_the_full_path(served, args, tz) -> None:
    _, cfg = served
    fast, slow = (_run(FAST, *args, "-c", str(cfg), tz=tz),
                  _run(TYPER, *args, "-c", str(cfg), tz=tz))
    assert (fast.returncode, fast.stdout, fast.stderr) == (slow.returncode, slow.stdout,
                                                           slow.stderr)
    assert fast.returncode in (2, 4) and fast.stdout == ""  # systemd is not reachable here


def test_a_config_edited_after_the_daemon_loaded_it_takes_the_full_path(served) -> None:
    _, cfg = served
    cfg.write_text(cfg.read_text() + '[unit."nginx.service"]\nbad_key = 1\n')
    fast, slow = _run(FAST, "status", "-c", str(cfg)), _run(TYPER, "status", "-c", str(cfg))
    assert (fast.returncode, fast.stdout, fast.stderr) == (slow.returncode, slow.stdout,
                                                           slow.stderr)
    assert fast.returncode == 2 and fast.stdout == ""
    assert fast.stderr.startswith(quick.STALE) and "bad_key: unknown key" in fast.stderr


def test_other_configuration_files_take_the_full_path_and_are_called_so(served) -> None:
    _, cfg = served
    other = cfg.with_name("other.toml")  # the same text, not the files the daemon loaded
    other.write_text(cfg.read_text())
    fast = _run(FAST, "status", "-c", str(other))
    assert fast.returncode == 4 and fast.stderr.startswith(quick.STALE)  # systemd asked
    assert "other files, or edited since" in quick.STALE


def test_the_daemons_answer_imports_nothing_of_the_config(served) -> None:
    _, cfg = served
    loaded = modules_after(f"from sdwatch import report; assert report.run(config_path="
                           f"{str(cfg)!r}) == 3")
    assert "sdwatch.quick" in loaded
    assert not {"sdwatch.config", "sdwatch.status", "tomllib", "dataclasses", "typing", "json",
                "socket", "asyncio"} & loaded


def test_a_daemon_answering_too_slowly_in_all_is_left_for_the_full_path(
        tmp_path: pathlib.Path) -> None:
    """Each byte comes well within a socket operation's timeout, the whole answer not within
    the exchange's: the command does not wait for it."""
    import socket

    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Sdwatch-Exit: 0\r\n\r\nok"
    gap = 3 * quick.TIMEOUT / len(answer)  # the answer takes three times the deadline
    path = str(tmp_path / "sdwatch.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen()
    stop = threading.Event()

    def drip() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(1 << 16)
            for byte in answer:
                if stop.wait(gap):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return  # the client gave up

    thread = threading.Thread(target=drip)
    thread.start()
    try:
        assert quick._get(path, "/api/v1/report?form=text&units=", "id") is None
    finally:
        stop.set()
        thread.join()
        listener.close()
