"""A busy machine around `sdwatch run`: unrelated units start and stop by the ten thousand.

systemd sends every unit's signals to every client of its private socket; sdwatch must drop
what it did not ask for, keep its memory flat, and still act on the units it watches.
"""

from __future__ import annotations

import os
import pathlib
import signal
import time

import test_daemon
from sdcheck import UNIT_DIR, systemctl, wait_for
from test_daemon import DAEMON, journal, main_pid, memcached_answers, unit_status

from sdwatch.systemd import Systemd

daemon, memcached = test_daemon.daemon, test_daemon.memcached  # the fixtures

NOISE = "sdw-noise.target"
STARTS = int(os.environ.get("SDWATCH_NOISE_STARTS", "10000"))
LOADS = int(os.environ.get("SDWATCH_NOISE_LOADS", "3000"))
MIB = 1024 * 1024


def rss(pid: int) -> int:
    """Resident memory of a process, in bytes."""
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def make_noise(starts: int, loads: int) -> None:
    """Start and stop an unrelated target, and load unknown units, as fast as systemd takes it."""
    with Systemd() as sd:
        for i in range(starts):
            sd.start(NOISE)
            sd.stop(NOISE)
            if i % 100 == 0:
                sd.drain()  # our own connection gets the same signals
        for i in range(loads):
            sd.unit_path(f"sdw-unknown-{i}.service")  # LoadUnit: UnitNew, then UnitRemoved
        sd.drain()


def test_unrelated_signals_leave_memory_flat_and_calls_working(daemon, memcached) -> None:
    pathlib.Path(UNIT_DIR, NOISE).write_text("[Unit]\nDescription=sdwatch test noise\n")
    systemctl("daemon-reload")
    try:
        daemon(f'[unit."{memcached}"]\ngrace = "1s"\nprobe = [{{ kind = "memcached", '
               'address = "127.0.0.1:11211", interval = "500ms", timeout = "500ms", '
               'failures = 2 }]\n', watchdog="10s")
        wait_for(lambda: unit_status(memcached).get("health") == "healthy", timeout=15,
                 what="memcached healthy")
        me = main_pid(DAEMON)
        time.sleep(2)  # a few probe rounds: the daemon's working set is in place
        before = rss(me)
        make_noise(STARTS, LOADS)
        # a hang afterwards: the restart goes through the call connection that saw it all
        old = main_pid(memcached)
        os.kill(old, signal.SIGSTOP)
        wait_for(lambda: main_pid(memcached) not in (0, old) and memcached_answers(),
                 timeout=30, what="memcached restarted and answering")
        after = rss(me)
        assert main_pid(DAEMON) == me  # never restarted (e.g. by its watchdog)
        assert after - before <= 3 * MIB, (f"RSS {before / MIB:.1f} -> {after / MIB:.1f} MiB "
                                           f"over {STARTS} starts and {LOADS} loads")
        log = journal()
        assert f"{memcached}: restart (" in log and f"{memcached}: restart failed" not in log
    finally:
        pathlib.Path(UNIT_DIR, NOISE).unlink(missing_ok=True)
        systemctl("daemon-reload")
