import logging

import pytest

from sdwatch import logs


@pytest.fixture(autouse=True)
def restore_logger():
    """logs.setup() reconfigures the process-wide "sdwatch" logger: put it back afterwards,
    or later tests' caplog would not see sdwatch's records."""
    log = logging.getLogger("sdwatch")
    saved = (list(log.handlers), log.level, log.propagate)
    yield
    log.handlers[:] = saved[0]
    log.setLevel(saved[1])
    log.propagate = saved[2]


@pytest.mark.parametrize("level, prefix", [(logging.ERROR, "<3>"), (logging.WARNING, "<4>"),
                                           (logs.NOTICE, "<5>"), (logging.INFO, "<6>"),
                                           (logging.DEBUG, "<7>")])
def test_journal_lines_carry_sd_daemon_priority(monkeypatch, capsys, level, prefix) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "8:1234")
    log = logs.setup(verbose=True)
    log.log(level, "memcached.service: healthy -> failing\nsecond line")
    err = capsys.readouterr().err
    assert err == f"{prefix}memcached.service: healthy -> failing\n{prefix}second line\n"


def test_terminal_lines_carry_a_level_name(monkeypatch, capsys) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    logs.setup().warning("hello")
    assert capsys.readouterr().err.rstrip().endswith("WARNING hello")
