"""pystemd's own introspecting API still works once sdwatch deferred its lxml import."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_pystemd_introspection_loads_lxml_and_answers() -> None:
    # a fresh interpreter: in this one, a failure report or hypothesis may have read every
    # module's attributes, the deferred one's too
    code = textwrap.dedent("""
        import sys
        import sdwatch.systemd
        from pystemd.systemd1 import Unit
        print(type(sys.modules["lxml.etree"]).__name__)
        with Unit(b"init.scope") as unit:  # load() parses the introspection XML with lxml
            print(unit.Unit.Id.decode(), unit.Unit.ActiveState.decode())
        print(type(sys.modules["lxml.etree"]).__name__, sys.modules["lxml.etree"].XML(b"<a/>").tag)
    """)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    assert out.splitlines() == ["Deferred", "init.scope active", "module a"]
