"""The on-disk alert queue: one JSON file per (event, channel) under ``<state_dir>/alerts/``.

Every alert is written here *before* its first attempt (write-ahead), so a crash or an
unreachable channel loses nothing.  Delivery of an entry happens under a claim:

1. open the entry and take ``flock(LOCK_EX | LOCK_NB)``; if another process (the daemon, an
   OnFailure hook) holds it, skip it.  After locking, check that the path still names the
   locked inode: a holder that delivered it has unlinked it, and we must not send it again.
2. create ``<entry>.sending`` (and fsync the directory), then attempt the delivery;
3. delivered: unlink the entry, fsync the directory, unlink the marker.  Failed: replace the
   entry with attempts + 1 and the next retry time, then unlink the marker.

The remaining window: a crash after the receiver accepted the alert and before the unlink
reached the disk.  The marker then still exists when the entry is next claimed, so it is sent
again *marked as a possible repeat*, with the same id (Message-ID, Idempotency-Key).  An SMTP
server that accepted the message but whose reply was lost looks like a failure and is also
retried: at least once, exactly once in the common case.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import secrets
import time
from dataclasses import dataclass

from sdwatch.state import write_json_atomic

log = logging.getLogger("sdwatch")
_ENTRY = re.compile(r"q-\d+-[A-Za-z0-9_.-]+-[0-9a-f]+\.json")


def backoff(attempts: int, first: float, cap: float) -> float:
    """Given failed attempts so far (>= 1), return seconds until the next: doubling, capped."""
    return min(cap, first * 2.0 ** min(max(attempts - 1, 0), 62))


@dataclass(frozen=True)
class Entry:
    """One queued alert for one channel."""

    id: str
    path: str
    channel: str  # Channel.key, e.g. "email:ops"
    event: dict[str, object]  # AlertEvent.to_json()
    created: float
    attempts: int = 0
    next_at: float = 0.0
    last_error: str = ""

    def to_json(self) -> dict[str, object]:
        return {"schema": "sdwatch.alert/1", "id": self.id, "channel": self.channel,
                "event": self.event, "created": self.created, "attempts": self.attempts,
                "next_at": self.next_at, "last_error": self.last_error}


class Claim:
    """An entry locked for one delivery attempt; end it with ``done()`` or ``retry()``."""

    def __init__(self, queue: Queue, entry: Entry, fd: int, maybe_sent: bool) -> None:
        self.queue, self.entry, self._fd, self.maybe_sent = queue, entry, fd, maybe_sent

    def done(self) -> None:
        """The alert was delivered: remove the entry for good."""
        try:
            os.unlink(self.entry.path)
            self.queue.sync()
            _unlink(self.entry.path + ".sending")
        finally:
            os.close(self._fd)

    def retry(self, error: str, next_at: float) -> Entry:
        """The attempt failed: keep the entry with one more attempt; return it."""
        try:
            e = self.entry
            new = Entry(e.id, e.path, e.channel, e.event, e.created, e.attempts + 1, next_at,
                        error)
            write_json_atomic(e.path, new.to_json(), mode=0o600)
            _unlink(e.path + ".sending")
            return new
        finally:
            os.close(self._fd)

    def abandon(self) -> None:
        """The attempt ended without an answer (cancelled): keep the entry and the marker."""
        os.close(self._fd)


class Queue:
    """The queue directory (created on first write, mode 0700: alerts quote the journal)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def sync(self) -> None:
        """fsync the directory, so that creations and removals survive a power loss."""
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def add(self, channel: str, event: dict[str, object], now: float | None = None) -> Entry:
        """Write a new entry for ``channel`` atomically; return it.  Raise OSError."""
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        now = time.time() if now is None else now
        slug = re.sub(r"[^A-Za-z0-9_.-]", "_", channel)
        ident = f"{time.time_ns():020d}-{slug}-{secrets.token_hex(4)}"
        entry = Entry(ident, os.path.join(self.directory, f"q-{ident}.json"), channel, event,
                      now, 0, now)
        write_json_atomic(entry.path, entry.to_json(), mode=0o600)
        return entry

    def pending(self) -> list[Entry]:
        """Return every readable entry, oldest first; set unreadable ones aside with a warning."""
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            path = os.path.join(self.directory, name)
            if name.endswith(".sending") and not os.path.exists(path[:-len(".sending")]):
                _unlink(path)  # its entry was delivered; the crash came before this unlink
            if _ENTRY.fullmatch(name):
                entry = self._read(path)
                if entry is not None:
                    out.append(entry)
        return out

    def claim(self, entry: Entry) -> Claim | None:
        """Lock ``entry`` for an attempt; return None if it is gone or another holds it."""
        try:
            fd = os.open(entry.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            now = os.stat(entry.path)
            mine = os.fstat(fd)
            if (now.st_ino, now.st_dev) != (mine.st_ino, mine.st_dev):
                raise FileNotFoundError  # delivered (or rewritten) while we waited
            fresh = self._read(entry.path)
            if fresh is None:
                raise FileNotFoundError
            marker = entry.path + ".sending"
            maybe_sent = os.path.exists(marker)
            os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
            self.sync()
        except (BlockingIOError, FileNotFoundError):
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        return Claim(self, fresh, fd, maybe_sent)

    def _read(self, path: str) -> Entry | None:
        try:
            with open(path) as f:
                data = json.load(f)
            return Entry(data["id"], path, data["channel"], data["event"], data["created"],
                         data["attempts"], data["next_at"], data.get("last_error", ""))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            aside = f"{path}.corrupt"
            log.warning("alert queue entry %s cannot be read (%s); moved aside to %s",
                        path, exc, aside)
            try:
                os.replace(path, aside)
            except OSError:
                pass
            return None


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
