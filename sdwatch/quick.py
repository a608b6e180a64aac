"""`sdwatch status` and `summary` answered by the running daemon, which renders them.

The daemon holds the live report already: ``answer`` sends it the command's options and the
identity of the configuration files as they are on disk, and writes what comes back, one
round trip on its socket.  It imports os, sys and the C socket module only (``socket``'s enums
alone cost ~5 ms, the config's machinery ~15 ms).  Whatever the daemon could not answer as
the full path (report.collect_and_render) would, it leaves to that path by returning None:
no daemon, --all, no unit configured, files other than those it loaded or changed since, a unit
it does not watch or a bad unit name (one not ASCII among them), $TZ set here (the daemon
writes times in its own zone).
"""

from __future__ import annotations

import _socket
import os
import sys
import time

from sdwatch import configfiles

TIMEOUT = 1.0  # seconds for the whole exchange: a stuck daemon costs no more before the fallback
MAX_IDENTITY = 8192  # the daemon reads 16 KiB of headers; a longer one takes the full path
_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:_.-@,")
STALE = ("sdwatch: the running daemon did not load these configuration files as they are now "
         "(other files, or edited since: systemctl reload sdwatch applies edits): "
         "asking systemd\n")


def answer(units: list[str] | tuple[str, ...] = (), all_units: bool = False,
           as_json: bool = False, config_path: str | None = None,
           summary: bool = False) -> int | None:
    """Print the daemon's report for this command line; return its exit status (0 all
    healthy, 3 some unit not), or None when the full path must answer."""
    if all_units or "TZ" in os.environ or any(
            not n or "," in n or not n.isascii() for n in units):

        return None
    main, explicit = configfiles.main_path(config_path)
    files = configfiles.config_paths(config_path)
    if not files or (explicit and not os.path.exists(main)):
        return None  # zero-config, or a mistake that config.load names
    try:
        identity = configfiles.identity_on_disk(files)
    except OSError:
        return None
    runtime_dir = configfiles.runtime_dir(files)
    if runtime_dir is None or len(identity) > MAX_IDENTITY:
        return None
    form = "summary" if summary else "json" if as_json else "text"
    reply = _get(os.path.join(runtime_dir, "sdwatch.sock"),
                 f"/api/v1/report?form={form}&units={_quote(','.join(units))}", identity)
    if reply is None:
        return None
    code, exit_status, body = reply
    if code == 409:
        sys.stderr.write(STALE)
    if code != 200 or exit_status not in (b"0", b"3"):
        return None
    try:
        text = body.decode()
    except UnicodeDecodeError:
        return None
    sys.stdout.write(text)
    return int(exit_status)


def _quote(text: str) -> str:
    return "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in text.encode())


def _get(path: str, target: str, identity: str) -> tuple[int, bytes, bytes] | None:
    """GET ``target`` on the unix socket ``path``; return (HTTP status, X-Sdwatch-Exit, body),
    or None when no daemon answers there in full."""
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    chunks = []
    deadline = time.monotonic() + TIMEOUT
    try:
        s.settimeout(TIMEOUT)
        s.connect(path)
        _until(s, deadline)
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                  f"X-Sdwatch-Config: {identity}\r\n\r\n".encode())
        while _until(s, deadline) and (data := s.recv(1 << 16)):
            chunks.append(data)
    except OSError:  # none listening, not allowed, gone mid-answer, or past the deadline
        return None
    finally:
        s.close()
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = dict(line.partition(b":")[::2] for line in lines[1:])
    headers = {k.strip().lower(): v.strip() for k, v in headers.items()}
    try:
        code = int(lines[0].split(b" ", 2)[1])
        complete = int(headers.get(b"content-length", b"-1")) == len(body)
    except (IndexError, ValueError):
        return None
    return (code, headers.get(b"x-sdwatch-exit", b""), body) if complete else None


def _until(s: _socket.socket, deadline: float) -> bool:
    """Give the socket's next operation what is left of the exchange's time; raise
    TimeoutError when nothing is."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    s.settimeout(left)
    return True
