"""`sdwatch status` answered by the running daemon prints what the full path (config loaded,
systemd asked, rendered here) prints, with the same exit code; what the daemon cannot answer
(a unit it does not watch, files edited since it loaded them) takes the full path."""

from __future__ import annotations

import json
import subprocess
import sys

from sdcheck import sdwatch, show, systemctl, wait_for
from test_daemon import (  # noqa: F401  (fixtures)
    BASE,
    CONFIG,
    DAEMON,
    STATUS,
    daemon,
    unit_status,
    write_config,
)

from sdwatch import quick

SOCK = BASE / "run" / "sdwatch.sock"
SLEEPER = "ExecStart=/bin/sleep infinity\nRestart=no"
ALERT = 'grace = "100ms"\naction = "alert"\n'  # left failed: both runs see the same
# what two runs a moment apart print alike (figures, ages and clocks move)
STEADY = ("status", "systemd state", "description", "unit file", "main pid", "restarts",
          "probe ", "sdwatch daemon")
FULL = ("import sys; from sdwatch import report; "
        "sys.exit(report.run(sys.argv[2:], as_json=sys.argv[1] == 'json', "
        f"config_path='{CONFIG}', ask_daemon=False))")


def full_path(*args: str, form: str = "text") -> subprocess.CompletedProcess:
    """The command without asking the daemon: config loaded, systemd asked, rendered here."""
    return subprocess.run([sys.executable, "-c", FULL, form, *args], capture_output=True,
                          text=True, timeout=60)


def steady(text: str) -> list[str]:
    """The lines of a report that do not move between two runs; the first line without how
    the units were chosen (the daemon says it answered: "units watched by the daemon")."""
    lines = text.splitlines()
    return [lines[0].split(" (")[0]] + [
        line for line in lines[1:] if not line.startswith("  ") or
        line[2:].startswith(STEADY) and not line.startswith("    ")]


def answered_by(*args: str) -> str:
    r = sdwatch("status", "--json", *args, "--config", str(CONFIG))
    return json.loads(r.stdout)["daemon"]["path"]


def test_daemon_answers_as_the_full_path_for_healthy_and_failing_units(daemon,  # noqa: F811
                                                                       make_unit) -> None:
    good, bad, failing = make_unit(SLEEPER), make_unit("ExecStart=/bin/false"), make_unit(SLEEPER)
    daemon(f'[unit."{good}"]\ngrace = "100ms"\n[unit."{bad}"]\n{ALERT}'
           f'[unit."{failing}"]\n{ALERT}probe = [{{ kind = "tcp", address = "127.0.0.1:9", '
           'interval = "300ms", failures = 1 }]\n')
    wait_for(lambda: [unit_status(u).get("health") for u in (good, bad, failing)] == [
        "healthy", "failed", "failing"], timeout=15, what="all three judged")
    assert answered_by() == str(SOCK)  # the daemon rendered it
    for args in ((), (good,), (bad, good), (failing,)):
        quick_run, full = sdwatch("status", *args, "--config", str(CONFIG)), full_path(*args)
        assert quick_run.returncode == full.returncode == (0 if args == (good,) else 3)
        assert quick_run.stderr == full.stderr == ""
        assert steady(quick_run.stdout) == steady(full.stdout)
    assert f"{bad}'\n  status                        failed - failed (result: exit-code)" \
        in sdwatch("status", "--config", str(CONFIG)).stdout
    quick_json = json.loads(sdwatch("status", "--json", "--config", str(CONFIG)).stdout)
    full_json = json.loads(full_path(form="json").stdout)
    for key in ("name", "health", "active_state", "sub_state", "result", "main_pid",
                "configured", "restarts_systemd", "restarts_sdwatch", "problem"):
        assert [u[key] for u in quick_json["units"]] == [u[key] for u in full_json["units"]]
    configured = [[{k: v for k, v in p.items() if not k.startswith("last")} for p in u["probes"]]
                  for u in quick_json["units"]]  # the last results move every 300 ms
    assert configured == [[{k: v for k, v in p.items() if not k.startswith("last")}
                           for p in u["probes"]] for u in full_json["units"]]
    assert configured[2][0]["target"] == "127.0.0.1:9"


def test_a_unit_not_watched_and_a_bad_name_take_the_full_path(daemon,  # noqa: F811
                                                              make_unit) -> None:
    good, other = make_unit(SLEEPER), make_unit(SLEEPER)
    daemon(f'[unit."{good}"]\ngrace = "100ms"\n')
    wait_for(lambda: unit_status(good).get("health") == "healthy", what="healthy")
    wait_for(lambda: show(other, "SubState") == "running", what="running")
    assert answered_by(good) == str(SOCK)
    assert answered_by(good, other) == str(STATUS)  # systemd asked, the daemon's file read
    quick_run, full = (sdwatch("status", good, other, "--config", str(CONFIG)),
                       full_path(good, other))
    assert quick_run.returncode == full.returncode == 0
    assert steady(quick_run.stdout) == steady(full.stdout)
    assert f"Service '{other}'" in quick_run.stdout
    quick_run, full = sdwatch("status", "no such", "--config", str(CONFIG)), full_path("no such")
    assert (quick_run.returncode, quick_run.stdout, quick_run.stderr) == (
        full.returncode, full.stdout, full.stderr)
    assert quick_run.returncode == 2 and "'no such' is not a valid unit name" in full.stderr


def test_a_config_edited_after_load_is_not_ignored(daemon, make_unit) -> None:  # noqa: F811
    good, added = make_unit(SLEEPER), make_unit("ExecStart=/bin/false")
    first = f'[unit."{good}"]\ngrace = "100ms"\n'
    daemon(first)
    wait_for(lambda: unit_status(good).get("health") == "healthy", what="healthy")
    assert sdwatch("status", "--config", str(CONFIG)).returncode == 0
    write_config(first + f'[unit."{added}"]\n{ALERT}')  # not reloaded yet
    quick_run, full = sdwatch("status", "--config", str(CONFIG)), full_path()
    assert quick_run.stderr == quick.STALE  # said, then systemd asked with the files on disk
    assert quick_run.returncode == full.returncode == 3  # the added unit failed
    assert steady(quick_run.stdout) == steady(full.stdout)
    assert f"Service '{added}'" in quick_run.stdout
    write_config(first + f'[unit."{added}"]\ngrace = "soon"\n')  # and broken
    quick_run = sdwatch("status", "--config", str(CONFIG))
    assert quick_run.returncode == 2 and quick_run.stdout == ""
    assert quick_run.stderr == quick.STALE + full_path().stderr
    assert 'grace: invalid duration' in quick_run.stderr
    write_config(first + f'[unit."{added}"]\n{ALERT}')
    systemctl("reload", DAEMON)
    wait_for(lambda: unit_status(added).get("health") == "failed", what="the added unit judged")
    assert answered_by() == str(SOCK)
    quick_run = sdwatch("status", "--config", str(CONFIG))
    assert quick_run.returncode == 3 and quick_run.stderr == ""
    assert f"Service '{added}'" in quick_run.stdout


def test_units_restarted_or_stopped_after_the_daemon_started_read_as_the_full_path(
        daemon, make_unit) -> None:  # noqa: F811
    restarted, stopped = make_unit(SLEEPER), make_unit(SLEEPER)
    daemon(f'[unit."{restarted}"]\ngrace = "100ms"\n[unit."{stopped}"]\n{ALERT}')
    wait_for(lambda: [unit_status(u).get("health") for u in (restarted, stopped)] == [
        "healthy", "healthy"], what="both healthy")
    systemctl("restart", restarted, stopped)  # the daemon reads each again once active
    systemctl("stop", stopped)

    def quick_units() -> dict:
        r = sdwatch("status", "--json", "--config", str(CONFIG))
        return {u["name"]: u for u in json.loads(r.stdout)["units"]}

    wait_for(lambda: quick_units()[restarted]["main_pid"] == int(show(restarted, "MainPID")) and
             unit_status(stopped).get("health") == "stopped", what="the daemon saw both")
    assert answered_by() == str(SOCK)
    quick_run, full = sdwatch("status", "--config", str(CONFIG)), full_path()
    assert quick_run.returncode == full.returncode == 3  # stopped
    assert steady(quick_run.stdout) == steady(full.stdout)
    assert "unit file" not in quick_run.stdout  # the brief view never reads it
    quick_json, full_json = quick_units(), json.loads(full_path(form="json").stdout)["units"]
    for key in ("active_state", "sub_state", "result", "unit_file_state", "main_pid",
                "restarts_systemd", "uptime", "cpu_window", "tasks"):
        assert [quick_json[u["name"]][key] is None for u in full_json] == [
            u[key] is None for u in full_json], key
        if key not in ("uptime", "tasks"):  # these move between two runs
            assert [quick_json[u["name"]][key] for u in full_json] == [
                u[key] for u in full_json], key
