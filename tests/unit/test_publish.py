"""When the daemon rewrites status.json: at once for a health, within SNAPSHOT for any other
change, every REFRESH while passing probes only pass again."""

from __future__ import annotations

import json
import pathlib
import time

import pytest

from sdwatch import messages, policy
from sdwatch.config import load
from sdwatch.daemon import Supervisor, publish
from sdwatch.daemon.watch import Watch
from sdwatch.schedule import Schedules
from sdwatch.snapshot import ProbeRun

UNIT = "sdwatch-test-publish.service"


def written(tmp_path: pathlib.Path) -> publish.Publisher:
    """A Publisher that has just written status.json."""
    pub = publish.Publisher()
    path = tmp_path / "status.json"
    pub.write(str(path), pub.snapshot({}, Schedules(), ()))
    assert json.loads(path.read_text())["schema"] == "sdwatch.daemon/1"
    assert not pub.due(time.time())
    return pub


@pytest.mark.parametrize(("note", "after", "due"), [
    ("nothing", publish.REFRESH + 1, False),
    ("changed", 0.0, False),
    ("changed", publish.SNAPSHOT - 0.5, False),
    ("changed", publish.SNAPSHOT, True),
    ("passed", publish.SNAPSHOT, False),
    ("passed", publish.REFRESH - 0.5, False),
    ("passed", publish.REFRESH, True),
    ("passed+changed", publish.SNAPSHOT, True),
    ("health", 0.0, True),
])
def test_due_after_a_write(tmp_path: pathlib.Path, note: str, after: float, due: bool) -> None:
    pub = written(tmp_path)
    if "passed" in note:
        pub.passed_again()
    if "changed" in note:
        pub.changed()
    if note == "health":
        pub.changed(health_changed=True)
    assert pub.due(pub.written + after) is due


def test_a_fresh_publisher_is_due() -> None:
    assert publish.Publisher().due(time.time())


def test_a_write_clears_what_was_noted(tmp_path: pathlib.Path) -> None:
    pub = written(tmp_path)
    pub.passed_again()
    pub.changed(health_changed=True)
    pub.write(str(tmp_path / "status.json"), pub.snapshot({}, Schedules(), ()))
    assert not pub.due(pub.written + publish.SNAPSHOT)


def run(ok: bool, streak: int, at: float) -> ProbeRun:
    return ProbeRun(ok, "ok" if ok else "connect", "ok" if ok else "refused", 0.001, at,
                    streak=streak)


def test_only_a_pass_after_a_pass_waits_for_the_refresh(tmp_path: pathlib.Path) -> None:
    """A steady passing probe is a quiet change; the first pass after a failure the unit's
    policy did not count (it was not active yet) still shows within SNAPSHOT."""
    conf = tmp_path / "sdwatch.toml"
    conf.write_text(f'[sdwatch]\nstate_dir = "{tmp_path}/state"\nruntime_dir = "{tmp_path}/run"\n'
                    f'[unit."{UNIT}"]\ngrace = "1s"\nprobe = [{{ kind = "tcp", name = "p", '
                    'address = "127.0.0.1:1" }]\n')
    cfg = load(str(conf))
    sup = Supervisor(cfg, str(conf))
    now = time.time()
    w = sup.watches[UNIT] = Watch(cfg=cfg.units[UNIT], state=policy.initial(cfg.units[UNIT], now))
    sup.observe(UNIT, messages.SystemdObserved("active", "running", "success", since=now - 100,
                                               stop_job=False))
    for i in range(1, 4):  # fills the probe's window: policy's state changes, then stops
        w.probes["p"] = run(True, i, now)
        sup.observe(UNIT, messages.ProbeObserved("p", True, "ok"))
    sup.publisher.write(str(tmp_path / "status.json"), sup.snapshot())

    w.probes["p"] = run(True, 4, now + 1)
    state = w.state
    sup.observe(UNIT, messages.ProbeObserved("p", True, "ok"))
    assert w.state is state  # (policy's shortcut: nothing changed)
    assert sup.publisher.passed and not sup.publisher.dirty

    sup.publisher.write(str(tmp_path / "status.json"), sup.snapshot())
    w.probes["p"] = run(False, 1, now + 2)  # as after a failure policy did not count...
    w.probes["p"] = run(True, 1, now + 3)  # ... the pass after it is news
    sup.observe(UNIT, messages.ProbeObserved("p", True, "ok"))
    assert w.state is state
    assert sup.publisher.dirty
