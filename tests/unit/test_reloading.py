"""`sdwatch reload` and the daemon's answer, with a real process receiving the SIGHUP."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sdwatch import reloading

CHILD = textwrap.dedent("""
    import signal, sys, time
    from sdwatch import reloading
    def answer(*_):
        reloading.record({sys.argv[1]}, reloading.Answer(
            sys.argv[2] == "ok", tuple(sys.argv[3:]), reloading.clock(), 7))
    signal.signal(signal.SIGHUP, answer if sys.argv[2] != "mute" else signal.SIG_IGN)
    print("ready", flush=True)
    time.sleep(60)
""")


def child(tmp_path: Path, *args: str) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), *args],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline() == "ready\n"
    return p


@pytest.mark.parametrize("outcome", ["ok", "refused"])
def test_request_returns_the_daemons_answer(tmp_path: Path, outcome: str) -> None:
    messages = () if outcome == "ok" else ("sdwatch.toml: unit.x.grace: invalid duration",)
    p = child(tmp_path, outcome, *messages)
    try:
        answer = reloading.request(p.pid, str(tmp_path), timeout=30)
    finally:
        p.kill()
    assert (answer.ok, answer.messages, answer.units) == (outcome == "ok", messages, 7)


def test_an_older_answer_is_not_taken_for_this_one(tmp_path: Path) -> None:
    reloading.record({str(tmp_path)}, reloading.Answer(True, (), reloading.clock() - 1, 3))
    p = child(tmp_path, "mute")
    try:
        with pytest.raises(TimeoutError, match=f"pid {p.pid}"):
            reloading.request(p.pid, str(tmp_path), timeout=0.3)
    finally:
        p.kill()
    assert p.wait() == -signal.SIGKILL


def test_unreadable_answers_are_none(tmp_path: Path) -> None:
    assert reloading.read(str(tmp_path)) is None
    (tmp_path / reloading.ANSWER).write_text("{not json")
    assert reloading.read(str(tmp_path)) is None
