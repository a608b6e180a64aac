"""exec: run a Nagios-style plugin; its exit status is the verdict, its first line the reason.

Exit 0 ok, 1 warning, 2 critical (failed), 3 and anything else unknown.  The plugin runs in a
session of its own (its own process group).  No shell unless ``shell = true``.  Output on
stdout and stderr is drained to EOF but only the first ``output_bytes`` are kept, so a chatty
plugin never blocks on a full pipe.  On timeout/cancellation the whole group gets SIGKILL and
the plugin is reaped before the attempt ends.  Exit is observed through a pidfd in the event
loop: no child-watcher thread, no zombie, every fd closed.
"""

from __future__ import annotations

import os
import re
import signal
from dataclasses import dataclass
from typing import IO, Mapping

from sdwatch.probes import net
from sdwatch.probes.errors import CheckFailed, CheckUnknown, CheckWarning, Metric, stage
from sdwatch.quantities import Size
from sdwatch.schema import SpecError


@dataclass(frozen=True)
class Spec:
    """command: argv list, or one string (a shell command when ``shell = true``);
    output_bytes: how much of stdout/stderr to keep."""

    command: tuple[str, ...]
    shell: bool = False
    output_bytes: Size = Size(4096)

    def __post_init__(self) -> None:
        if not self.command or not self.command[0]:
            raise SpecError("command", "must not be empty")
        if self.shell and len(self.command) != 1:
            raise SpecError("command", "with shell = true give one string, not a list")
        if not self.shell and len(self.command) == 1 and re.search(r"\s", self.command[0]):
            raise SpecError("command", "a string with spaces needs shell = true (or give a list)")

    @property
    def argv(self) -> tuple[str, ...]:
        return ("/bin/sh", "-c", self.command[0]) if self.shell else self.command


def parse_output(stdout: str) -> tuple[str, dict[str, float]]:
    """Given plugin stdout, return (first line without perfdata, perfdata {label: value}).

    Perfdata is the part after "|" on the first line: "label=value[UOM];warn;crit;min;max"
    items; unparseable items are skipped.
    """
    first = stdout.split("\n", 1)[0]
    text, _, perf = first.partition("|")
    values: dict[str, float] = {}
    for match in re.finditer(r"('[^']+'|[^\s=']+)=(-?[0-9.]+(?:[eE][-+]?[0-9]+)?)", perf):
        try:
            values[match.group(1).strip("'")] = float(match.group(2))
        except ValueError:
            continue
    return text.strip(), values


async def probe(spec: Spec) -> Mapping[str, Metric]:
    """Given a Spec, run the plugin once; return metrics (exit_status, perfdata);
    raise CheckWarning, CheckFailed or CheckUnknown per the exit status."""
    import asyncio
    import subprocess
    name = os.path.basename(spec.argv[0]) if not spec.shell else "sh -c"
    stage(f"starting {name}")
    try:
        proc = subprocess.Popen(
            spec.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True, close_fds=True,
        )
    except OSError as exc:
        raise CheckUnknown(f"cannot run {spec.argv[0]}: {exc.strerror}") from None
    assert proc.stdout is not None and proc.stderr is not None
    pidfd = os.pidfd_open(proc.pid)
    try:
        stage(f"waiting for {name}")
        out, err = await asyncio.gather(
            _drain(proc.stdout, spec.output_bytes), _drain(proc.stderr, spec.output_bytes)
        )
        await net.readable(pidfd)
        code = proc.wait()
    finally:
        if proc.returncode is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the leader is unreaped: the group is ours
            except ProcessLookupError:
                pass
            await net.readable(pidfd)
            proc.wait()
        os.close(pidfd)
        proc.stdout.close()
        proc.stderr.close()
    text, perf = parse_output(out.decode("utf-8", "replace"))
    if not text:
        text = err.decode("utf-8", "replace").strip().split("\n", 1)[0].strip()
    text = text[:200]
    metrics: dict[str, Metric] = {"exit_status": code, **perf}
    if code == 0:
        return {**metrics, "output": text} if text else metrics
    if code < 0:
        try:
            signame = signal.Signals(-code).name
        except ValueError:
            signame = f"signal {-code}"
        raise CheckUnknown(f"killed by {signame}"
                           + (f": {text}" if text else ""), metrics)
    reason = text or f"exit status {code}"
    if code == 1:
        raise CheckWarning(reason, metrics)
    if code == 2:
        raise CheckFailed(reason, metrics)
    raise CheckUnknown(reason if code == 3 else f"exit status {code}: {reason}", metrics)


async def _drain(pipe: IO[bytes], cap: int) -> bytes:
    """Read ``pipe`` to EOF without blocking the loop; return its first ``cap`` bytes."""
    fd = pipe.fileno()
    os.set_blocking(fd, False)
    kept = bytearray()
    while True:
        await net.readable(fd)
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            continue
        if not chunk:
            return bytes(kept)
        if len(kept) < cap:
            kept += chunk[: cap - len(kept)]
