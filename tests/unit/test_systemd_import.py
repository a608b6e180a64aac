"""How sdwatch.systemd imports pystemd (no systemd needed)."""

from __future__ import annotations

import subprocess
import sys


def test_pystemd_is_imported_as_its_package() -> None:
    """The package as its authors ship it (its __init__ runs), never a stand-in module."""
    code = ("import sdwatch.systemd as s\ns._dbuslib()\nimport pystemd\n"
            "print(pystemd.__file__, pystemd.__version__, hasattr(pystemd, 'systemd1'))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    path, version, full = r.stdout.split()
    assert path.endswith("pystemd/__init__.py") and version and full == "True"
