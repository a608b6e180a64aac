"""pystemd's own introspecting API still works once sdwatch deferred its lxml import."""

from __future__ import annotations

import sys

import sdwatch.systemd  # noqa: F401  (defers lxml.etree, as in the daemon)


def test_pystemd_introspection_loads_lxml_and_answers() -> None:
    from pystemd.systemd1 import Unit

    assert type(sys.modules["lxml.etree"]).__name__ == "Deferred"
    with Unit(b"init.scope") as unit:  # load() parses systemd's introspection XML with lxml
        assert unit.Unit.Id == b"init.scope"
        assert unit.Unit.ActiveState == b"active"
    assert type(sys.modules["lxml.etree"]).__name__ == "module"
    assert sys.modules["lxml.etree"].XML(b"<a/>").tag == "a"
