#!/usr/bin/python3
"""Hold a pty whose slave becomes /dev/console of a test systemd, and copy its output to a log.

systemd only logs to a console that is a tty.  We keep our own slave fd open so that systemd
closing and reopening the console never makes reads fail with EIO.
Usage: console.py SLAVE_PATH_FILE LOG_FILE
"""

import os
import sys
import tty


def main() -> None:
    master, slave = os.openpty()
    tty.setraw(slave)  # no \n -> \r\n translation, no echo
    path_file, log_file = sys.argv[1], sys.argv[2]
    with open(path_file + ".tmp", "w") as f:
        f.write(os.ttyname(slave))
    os.rename(path_file + ".tmp", path_file)
    with open(log_file, "ab", buffering=0) as out:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            out.write(data)


if __name__ == "__main__":
    main()
