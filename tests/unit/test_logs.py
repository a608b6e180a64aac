import logging

import pytest

from sdwatch import logs


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
