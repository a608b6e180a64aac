"""Secret files (database passwords, SMTP passwords, webhook tokens): only their owner may
read them, and the secret is their first line.  Errors name the file, never its content."""

from __future__ import annotations

import os
import stat


def check_password_mode(path: str, mode: int) -> None:
    """Given a password file's path and st_mode, return None if only its owner can read it;
    raise ValueError naming the file and its mode otherwise."""
    if mode & 0o044:
        raise ValueError(f"password file {path} is readable by group or others "
                         f"(mode {stat.S_IMODE(mode):04o}); chmod 600 {path}")


def check_password_file(path: str) -> None:
    """Given a path, return None if it is a file only its owner can read; raise ValueError."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise ValueError(f"password file {path}: {exc.strerror}") from None
    check_password_mode(path, mode)


def read_password(path: str) -> str:
    """Given a password file, return its first line; raise ValueError (mode, missing, empty)."""
    try:
        with open(path, encoding="utf-8") as f:
            check_password_mode(path, os.fstat(f.fileno()).st_mode)
            line = f.readline().rstrip("\r\n")
    except OSError as exc:
        raise ValueError(f"password file {path}: {exc.strerror}") from None
    if not line:
        raise ValueError(f"password file {path} is empty")
    return line
