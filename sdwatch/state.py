"""sdwatch's persistent state: /var/lib/sdwatch/state.json, and atomic JSON writes.

The file holds, per unit, what persist.to_persistent returns (restart history, gave-up and
unmonitored flags).  Writes are atomic (temp file, fsync, rename, fsync of the directory), so
a crash or kill -9 leaves either the old or the new file.  A file that cannot be read as our
schema is moved aside with a warning, never a crash.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

SCHEMA = "sdwatch.state/1"
log = logging.getLogger("sdwatch")


def write_json_atomic(path: str, data: Any, mode: int = 0o644, durable: bool = True) -> None:
    """Write ``data`` as JSON to ``path`` so that readers see the old or the new file only.

    ``durable`` also survives a power loss (fsync of the file and its directory); a snapshot
    on tmpfs that is rewritten every second does not need it."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w") as f:
            # dumps, not dump: only the one-shot encoder is C (dump's is Python, ~10x slower)
            f.write(json.dumps(data, indent=1 if durable else None, sort_keys=durable) + "\n")
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if not durable:
        return
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def load(path: str) -> dict[str, Any]:
    """Return the per-unit persistent state from ``path`` ({} if absent or unusable).

    An unreadable, corrupt or foreign file is renamed to ``path.corrupt-<time>`` and logged.
    """
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        _move_aside(path, f"cannot be read ({exc})")
        return {}
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or not isinstance(
            data.get("units"), dict):
        _move_aside(path, f"is not an {SCHEMA} file")
        return {}
    return data["units"]


def save(path: str, units: dict[str, Any]) -> None:
    """Write the per-unit persistent state atomically (mode 0600: it is sdwatch's own)."""
    write_json_atomic(path, {"schema": SCHEMA, "saved_at": time.time(), "units": units},
                      mode=0o600)


def _move_aside(path: str, why: str) -> None:
    aside = f"{path}.corrupt-{int(time.time())}"
    try:
        os.replace(path, aside)
        log.warning("state file %s %s; moved aside to %s, starting fresh", path, why, aside)
    except OSError as exc:
        log.warning("state file %s %s and could not be moved aside (%s); starting fresh",
                    path, why, exc)
