"""Logging for the daemon: stderr lines with sd-daemon priority prefixes (<3>…<7>).

journald reads the prefix as the line's priority, so `journalctl -p warning -u sdwatch` works.
On a terminal (no $JOURNAL_STREAM) lines carry a time and level name instead.
"""

from __future__ import annotations

import logging
import os
import sys

_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6,
             logging.DEBUG: 7}
NOTICE = 25  # state changes: between INFO and WARNING, as syslog's notice
logging.addLevelName(NOTICE, "NOTICE")


class _JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        prio = 5 if record.levelno == NOTICE else _PRIORITY.get(record.levelno, 6)
        text = super().format(record)
        return "\n".join(f"<{prio}>{line}" for line in text.splitlines())


def setup(verbose: bool = False) -> logging.Logger:
    """Configure and return the "sdwatch" logger."""
    log = logging.getLogger("sdwatch")
    log.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(_JournalFormatter("%(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False
    return log
