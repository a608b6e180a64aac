"""Two thousand configured units: `sdwatch run` gets READY, reads every one, tells the truth."""

from __future__ import annotations

import collections
import pathlib
import subprocess
import sys

import test_daemon
from sdcheck import UNIT_DIR, show, systemctl, wait_for
from test_daemon import CONFIG, DAEMON, main_pid, status

daemon = test_daemon.daemon  # the fixture

UNITS = 2000
RUNNING = 20
TEMPLATE = "sdw-scale-template@.service"


def test_two_thousand_units_missing_or_present(daemon) -> None:
    missing = [f"sdw-scale-missing-{i:04d}.service" for i in range(UNITS // 2)]
    present = [f"sdw-scale-{i:04d}.service" for i in range(UNITS // 2)]
    for name in present:
        pathlib.Path(UNIT_DIR, name).write_text("[Service]\nExecStart=/bin/sleep infinity\n")
    systemctl("daemon-reload")
    systemctl("start", *present[:RUNNING])
    try:
        # Type=notify: the start job ends at READY; a watchdog of 3 s must never be missed
        # a template cannot be loaded: systemd refuses it, and any listing that names it
        daemon("".join(f'[unit."{n}"]\ngrace = "0s"\n' for n in missing + present + [TEMPLATE]))
        me = main_pid(DAEMON)
        wait_for(lambda: len(status().get("units", {})) == UNITS + 1,
                 what="every unit in the snapshot")
        wait_for(lambda: "units:" in status().get("status", ""), what="a status line")
        units = status()["units"]
        health = {n: u["health"] for n, u in units.items()}
        assert health.pop(TEMPLATE) == "unknown" and units[TEMPLATE]["unreadable"]
        counts = collections.Counter(health.values())
        assert all(health[n] in ("missing", "stopped") for n in missing), counts
        assert all(health[n] == "stopped" for n in present[RUNNING:]), counts
        assert all(health[n] == "healthy" for n in present[:RUNNING]), counts
        assert show(DAEMON, "StatusText").startswith(f"{UNITS + 1} units: {RUNNING} healthy")
        r = subprocess.run([sys.executable, "-m", "sdwatch", "status", "--config", str(CONFIG)],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 3 and r.stdout.count(".service") >= UNITS, r.stderr[-2000:]
        systemctl("reload", DAEMON)  # the whole fleet again, under the same watchdog
        assert main_pid(DAEMON) == me and int(show(DAEMON, "NRestarts")) == 0
    finally:
        systemctl("stop", *present[:RUNNING], check=False)
        for name in present:
            pathlib.Path(UNIT_DIR, name).unlink(missing_ok=True)
        systemctl("daemon-reload")
