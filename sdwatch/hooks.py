"""Unit-file hooks: sdwatch inside other units' lifecycles, without sdwatch's daemon.

* ``OnFailure=sdwatch-alert@%n.service`` runs ``sdwatch alert --unit UNIT`` when a unit fails:
  :func:`failed_event` gathers its Result, exit status, NRestarts and journal lines.
* ``ExecStartPost=+sdwatch wait-healthy %n``: :func:`wait_healthy` runs the unit's probes until
  they pass, so systemd holds the start (and the units ordered After= it) until then, and a
  unit that never answers fails its start and gets its Restart=.
* ``sdwatch hook install|remove|list`` manage both in one drop-in, ``UNIT.d/50-sdwatch.conf``
  under /etc/systemd/system (or ``$SDWATCH_SYSTEMD_DIR``).
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from sdwatch.states import Event, unit_name_problem

if TYPE_CHECKING:
    from sdwatch.alerting.event import AlertEvent
    from sdwatch.config import Config

DROPIN = "50-sdwatch.conf"
DIR_ENV = "SDWATCH_SYSTEMD_DIR"
DEFAULT_DIR = "/etc/systemd/system"
_HEADER = "# Written by 'sdwatch hook install'; remove with 'sdwatch hook remove {unit}'.\n"


class HookError(Exception):
    """A hook cannot be installed or removed; ``str()`` says why in one line."""


@dataclass(frozen=True)
class Hook:
    """An installed drop-in and what it contains."""

    unit: str
    path: str
    on_failure: bool
    wait_healthy: bool


def systemd_dir(root: str | None = None) -> str:
    """Return where drop-ins go: ``root``, else $SDWATCH_SYSTEMD_DIR, else /etc/systemd/system."""
    return root or os.environ.get(DIR_ENV) or DEFAULT_DIR


def check_unit(unit: str) -> None:
    """Given a unit name, return None if hooks may be installed for it; raise HookError."""
    problem = unit_name_problem(unit)
    if problem:
        raise HookError(problem)
    if unit.startswith("sdwatch-alert@"):
        raise HookError(f"{unit}: sdwatch's own alert hook must not get hooks (a failing "
                        "alert would trigger itself)")


def dropin_path(unit: str, root: str | None = None) -> str:
    """Given a valid unit name, return its drop-in's path; raise HookError."""
    check_unit(unit)
    return os.path.join(systemd_dir(root), f"{unit}.d", DROPIN)


def sdwatch_command() -> list[str]:
    """Return how the running sdwatch was started, for ExecStart lines: its script, or
    ``python -m sdwatch`` when run as a module."""
    argv0 = sys.argv[0]
    if os.path.basename(argv0) == "sdwatch" and os.path.isabs(argv0):
        return [argv0]
    if os.path.basename(argv0) == "__main__.py":
        return [sys.executable, "-m", "sdwatch"]
    found = shutil.which("sdwatch")
    return [os.path.abspath(found)] if found else [sys.executable, "-m", "sdwatch"]


def _quote(arg: str) -> str:
    """Quote one argument for a systemd command line ("%" and "$" are systemd's specials)."""
    arg = arg.replace("%", "%%").replace("$", "$$")
    if arg and not any(c in arg for c in " \t\"'\\;"):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(unit: str, on_failure: bool, wait_healthy: bool, timeout: float = 60.0,
           command: Sequence[str] = (), config: str | None = None) -> str:
    """Return the drop-in's text; raise HookError if it would be empty."""
    if not (on_failure or wait_healthy):
        raise HookError("nothing to install: give --on-failure and/or --wait-healthy")
    text = _HEADER.format(unit=unit)
    if on_failure:
        text += "\n[Unit]\nOnFailure=sdwatch-alert@%n.service\n"
    if wait_healthy:
        args = [*(command or sdwatch_command()), "wait-healthy", "--timeout", f"{timeout:g}s"]
        args += ["--config", config] if config else []
        # "+": run with full privileges, outside the unit's User= and sandbox, so that
        # sdwatch can read its config and probe secrets whatever the service runs as
        text += ("\n[Service]\n# hold the start until sdwatch's probes pass\n"
                 f"ExecStartPost=+{' '.join(_quote(a) for a in args)} %n\n")
    return text


def install(unit: str, text: str, root: str | None = None) -> tuple[str, bool]:
    """Write ``text`` as the unit's drop-in; return (path, changed).  Raise HookError."""
    path = dropin_path(unit, root)
    directory = os.path.dirname(path)
    if os.path.islink(directory) or os.path.islink(path):
        raise HookError(f"{directory} or its {DROPIN} is a symlink: refusing to write through it")
    try:
        with open(path, encoding="utf-8") as f:
            if f.read() == text:
                return path, False
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise HookError(f"{path}: {exc.strerror}") from None
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        os.makedirs(directory, mode=0o755, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise HookError(f"{path}: {exc.strerror}") from None
    return path, True


def remove(unit: str, root: str | None = None) -> str | None:
    """Remove the unit's drop-in, and its .d directory if that is then empty; return the
    removed path, or None if there was none.  Raise HookError."""
    path = dropin_path(unit, root)
    try:
        os.unlink(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise HookError(f"{path}: {exc.strerror}") from None
    try:
        os.rmdir(os.path.dirname(path))
    except OSError:
        pass  # other drop-ins live there: not ours to remove
    return path


def list_hooks(root: str | None = None) -> list[Hook]:
    """Return every installed sdwatch drop-in, by unit name."""
    out = []
    for path in sorted(glob.glob(os.path.join(glob.escape(systemd_dir(root)), "*.d", DROPIN))):
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        unit = os.path.basename(os.path.dirname(path))[:-2]
        out.append(Hook(unit, path, any(ln.startswith("OnFailure=sdwatch-alert@") for ln in lines),
                        any(ln.startswith("ExecStartPost=") and "wait-healthy" in ln
                            for ln in lines)))
    return out


async def wait_healthy(cfg: Config, unit: str, timeout: float) -> tuple[bool, str]:
    """Given a Config and a configured unit with probes, run its probes until all pass or
    ``timeout`` seconds pass; return (ok, one line naming the time or the failing probes)."""
    from sdwatch.checks import check_units

    start, wall_start = time.monotonic(), time.time()
    deadline = start + timeout
    pause, attempts, failing = 0.1, 0, "no probe finished"
    while True:
        attempts += 1
        try:
            results = await asyncio.wait_for(check_units(cfg, [unit], None),
                                             max(deadline - time.monotonic(), 0.01))
        except TimeoutError:
            results = None
        if results is not None:
            probes = [r for r in results if r.kind != "limit"]
            bad = [r for r in probes if not r.ok]
            if not bad:
                return True, (f"{unit}: healthy after {time.time() - wall_start:.2f}s, "
                              f"{attempts} attempts; probes passed at {time.time():.6f}")
            failing = "; ".join(f"{r.name} ({r.kind}): {r.reason}" for r in bad)
        left = deadline - time.monotonic()
        if left <= 0:
            return False, (f"{unit}: not healthy after {timeout:g}s ({attempts} attempts): "
                           f"{failing}")
        await asyncio.sleep(min(pause, left))  # paces the retries; not a synchronisation
        pause = min(pause * 2, 1.0)


def failed_event(unit: str, host: str = "") -> AlertEvent:
    """Given a unit that just failed, return an AlertEvent "failed" with its Result, exit
    code or signal, systemd's restart count and the last 20 journal lines of that run."""
    from sdwatch import evidence
    from sdwatch.alerting.event import AlertEvent
    from sdwatch.systemd import Systemd, SystemdUnavailable, UnitError

    try:
        with Systemd() as sd:
            info = sd.unit_info(unit)
    except (SystemdUnavailable, UnitError) as exc:
        return AlertEvent(unit, Event.FAILED, f"{unit} failed (details unavailable: {exc})",
                          host=host, details={"journal": evidence.stable_journal(unit, "")})
    why, details = evidence.gather(info, settle=3.0)
    return AlertEvent(unit, Event.FAILED, f"{unit} failed: {why}", host=host, details=details)
