"""Exit codes of every sdwatch command (LSB-style for status), in one place.

0 all shown units healthy (or the command succeeded), 1 a check failed, 2 bad configuration
or usage, 3 some unit is not healthy, 4 systemd cannot be reached, 130 interrupted.
"""

from __future__ import annotations

OK = 0
FAILED = 1  # a check, probe, wait or alert delivery failed
USAGE = 2  # bad configuration or command line
UNHEALTHY = 3  # status: some shown unit is not healthy
UNREACHABLE = 4  # systemd cannot be reached
INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT
