"""Hooks: drop-in rendering, install/remove/list, unit-name checks, wait-healthy (no systemd)."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

from sdwatch import hooks

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "systemd"))
from alertrx import wait_until  # noqa: E402

CMD = ("/usr/bin/sdwatch",)


def sdwatch(*args: str, root: pathlib.Path | None = None,
            **popen: object) -> subprocess.CompletedProcess:
    env = {**os.environ, "SDWATCH_SYSTEMD_DIR": str(root)} if root else dict(os.environ)
    env.pop("SDWATCH_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "sdwatch", *args], capture_output=True,
                          text=True, timeout=60, env=env, **popen)


def test_render_both_hooks() -> None:
    text = hooks.render("mariadb.service", True, True, 90, CMD, "/etc/a b.toml")
    assert text == textwrap.dedent("""\
        # Written by 'sdwatch hook install'; remove with 'sdwatch hook remove mariadb.service'.

        [Unit]
        OnFailure=sdwatch-alert@%n.service

        [Service]
        # hold the start until sdwatch's probes pass
        ExecStartPost=+/usr/bin/sdwatch wait-healthy --timeout 90s --config "/etc/a b.toml" %n
        """)


def test_render_escapes_systemd_specifiers_and_needs_a_hook() -> None:
    text = hooks.render("a.service", False, True, 60, ("/opt/x%y/sdwatch",), "/etc/$HOME.toml")
    assert "ExecStartPost=+/opt/x%%y/sdwatch wait-healthy --timeout 60s --config " \
           "/etc/$$HOME.toml %n\n" in text and "OnFailure" not in text
    with pytest.raises(hooks.HookError, match="give --on-failure and/or --wait-healthy"):
        hooks.render("a.service", False, False)


@pytest.mark.parametrize("name, why", [
    ("../x.service", "is not a valid unit name"),
    ("a/b.service", "is not a valid unit name"),
    ("", "empty unit name"),
    ("a" * 292 + ".service", "unit name is 300 characters long (at most 255)"),
    (".service", "is not a valid unit name"),
    ("x.service\nExecStart=/bin/evil", "is not a valid unit name"),
    ("sdwatch-alert@x.service.service", "must not get hooks"),
])
def test_bad_unit_names_are_refused(tmp_path: pathlib.Path, name: str, why: str) -> None:
    with pytest.raises(hooks.HookError, match=re.escape(why)):
        hooks.install(name, "x", str(tmp_path))
    r = sdwatch("hook", "install", name, "--on-failure", "--no-reload", root=tmp_path)
    assert r.returncode == 2 and why in r.stderr and r.stdout == ""
    assert sdwatch("hook", "remove", name, "--no-reload", root=tmp_path).returncode == 2
    assert list(tmp_path.iterdir()) == []


def test_install_is_idempotent_and_remove_leaves_no_trace(tmp_path: pathlib.Path) -> None:
    text = hooks.render("nginx.service", True, False, command=CMD)
    path, changed = hooks.install("nginx.service", text, str(tmp_path))
    assert changed and path == str(tmp_path / "nginx.service.d" / "50-sdwatch.conf")
    assert pathlib.Path(path).read_text() == text and os.stat(path).st_mode & 0o777 == 0o644
    assert hooks.install("nginx.service", text, str(tmp_path)) == (path, False)
    assert hooks.list_hooks(str(tmp_path)) == [hooks.Hook("nginx.service", path, True, False)]
    assert hooks.remove("nginx.service", str(tmp_path)) == path
    assert hooks.remove("nginx.service", str(tmp_path)) is None
    assert list(tmp_path.iterdir()) == []


def test_remove_keeps_other_drop_ins(tmp_path: pathlib.Path) -> None:
    hooks.install("a.service", hooks.render("a.service", True, False, command=CMD),
                  str(tmp_path))
    other = tmp_path / "a.service.d" / "10-local.conf"
    other.write_text("[Service]\nNice=5\n")
    hooks.remove("a.service", str(tmp_path))
    assert [p.name for p in (tmp_path / "a.service.d").iterdir()] == ["10-local.conf"]


def test_install_refuses_to_write_through_a_symlink(tmp_path: pathlib.Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.service.d").symlink_to(elsewhere)
    with pytest.raises(hooks.HookError, match="symlink"):
        hooks.install("a.service", "x", str(root))
    assert list(elsewhere.iterdir()) == []


def test_cli_hook_install_list_remove_round_trip(tmp_path: pathlib.Path) -> None:
    args = ("hook", "install", "db.service", "--on-failure", "--wait-healthy", "--no-reload")
    r = sdwatch(*args, "--config", "/etc/sdwatch/sdwatch.toml", root=tmp_path)
    path = tmp_path / "db.service.d" / "50-sdwatch.conf"
    assert (r.returncode, r.stdout) == (0, f"installed: {path}\n"), r.stderr
    first = path.read_text()
    assert f"ExecStartPost=+{sys.executable} -m sdwatch wait-healthy" in first
    r = sdwatch(*args, "--config", "/etc/sdwatch/sdwatch.toml", root=tmp_path)
    assert r.stdout == f"already installed: {path}\n" and path.read_text() == first
    r = sdwatch("hook", "list", root=tmp_path)
    assert r.stdout == f"db.service  on-failure wait-healthy  {path}\n"
    r = sdwatch("hook", "remove", "db.service", "--no-reload", root=tmp_path)
    assert (r.returncode, r.stdout) == (0, f"removed: {path}\n")
    r = sdwatch("hook", "remove", "db.service", "--no-reload", root=tmp_path)
    assert (r.returncode, r.stdout) == (0, "no sdwatch hook installed for db.service: "
                                           "nothing to remove\n")
    assert list(tmp_path.iterdir()) == []
    assert sdwatch("hook", "list", root=tmp_path).stdout == f"no sdwatch hooks in {tmp_path}\n"


# -- wait-healthy --------------------------------------------------------------------------------

def config(tmp_path: pathlib.Path, probe: str) -> str:
    path = tmp_path / "sdwatch.toml"
    path.write_text(f'[unit."app.service"]\nprobe = [{probe}]\n[unit."bare.service"]\n')
    return str(path)


def test_wait_healthy_holds_until_the_probe_passes(tmp_path: pathlib.Path) -> None:
    attempts, ready = tmp_path / "attempts", tmp_path / "ready"
    cfg = config(tmp_path, f'{{ kind = "exec", name = "ready-file", command = ["/bin/sh", '
                           f'"-c", "echo x >> {attempts}; test -e {ready}"] }}')
    env = {k: v for k, v in os.environ.items() if k != "SDWATCH_CONFIG"}
    proc = subprocess.Popen([sys.executable, "-m", "sdwatch", "wait-healthy", "app.service",
                             "--timeout", "30s", "--config", cfg], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_until(lambda: attempts.exists() and len(attempts.read_text().split()) >= 3, 20,
                   "three failed attempts")
        assert proc.poll() is None  # still holding
        ready.touch()
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    assert out.startswith("sdwatch: app.service: healthy after ") and "probes passed at " in out


def test_wait_healthy_times_out_naming_the_probe_and_reason(tmp_path: pathlib.Path) -> None:
    cfg = config(tmp_path, '{ kind = "tcp", name = "port", address = "127.0.0.1:1", '
                           'timeout = "200ms" }')
    for timeout in ("1s", "1"):   # a bare number is seconds
        r = sdwatch("wait-healthy", "app.service", "--timeout", timeout, "--config", cfg)
        assert r.returncode == 1 and r.stdout == ""
        assert r.stderr.startswith("sdwatch: app.service: not healthy after 1s (")
        assert "port (tcp): " in r.stderr and "refused" in r.stderr


def test_wait_healthy_needs_a_configured_unit_with_probes(tmp_path: pathlib.Path) -> None:
    cfg = config(tmp_path, '{ kind = "tcp", address = "127.0.0.1:1" }')
    r = sdwatch("wait-healthy", "other.service", "--config", cfg)
    assert (r.returncode, r.stderr) == (2, "sdwatch: other.service is not configured "
                                           "(see sdwatch validate)\n")
    r = sdwatch("wait-healthy", "bare.service", "--config", cfg)
    assert (r.returncode, r.stderr) == (2, "sdwatch: bare.service has no probes configured: "
                                           "nothing to wait for\n")
    r = sdwatch("wait-healthy", "app.service", "--timeout", "soon", "--config", cfg)
    assert r.returncode == 2 and r.stderr.startswith("sdwatch: --timeout: invalid duration")


def test_alert_without_channels_or_with_a_bad_unit_exits_2(tmp_path: pathlib.Path) -> None:
    cfg = config(tmp_path, '{ kind = "tcp", address = "127.0.0.1:1" }')
    r = sdwatch("alert", "--unit", "app.service", "--config", cfg)
    assert r.returncode == 2 and "no alert channels configured" in r.stderr
    r = sdwatch("alert", "--unit", "../etc.service", "--config", cfg)
    assert r.returncode == 2 and "is not a valid unit name" in r.stderr
