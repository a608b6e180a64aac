"""Running python code as user nobody, as a non-root user of sdwatch would."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "sdwatch"


def run_as_nobody(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run python ``code`` as user nobody (as this user when not root); return the process.

    The package is copied where nobody can read it (a checkout under /root is not), and run
    by the real interpreter (a venv's path may be unreadable too)."""
    prefix = []
    if os.geteuid() == 0:
        prefix = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    with tempfile.TemporaryDirectory(prefix="sdwatch-nobody-") as copy:
        os.chmod(copy, 0o755)
        shutil.copytree(PACKAGE, f"{copy}/sdwatch", ignore=shutil.ignore_patterns("__pycache__"))
        for root, dirs, files in os.walk(copy):
            for name in dirs + files:
                os.chmod(os.path.join(root, name), 0o755 if name in dirs else 0o644)
        return subprocess.run([*prefix, os.path.realpath(sys.executable), "-c", code],
                              capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "PYTHONPATH": copy})
