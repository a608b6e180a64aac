"""Password files for the probes that log in (redis, postgresql): checked when the config is
read, read at every attempt, never kept."""

from __future__ import annotations

import os

from sdwatch.probes.errors import CheckUnknown
from sdwatch.schema import SpecError
from sdwatch.secretfile import check_password_file, read_password


def validate(path: str | None) -> None:
    """Given a Spec's password_file, raise SpecError if it exists and others can read it.

    A file not there yet fails its probe with the reason, not the whole config."""
    if path is not None and os.path.exists(path):
        try:
            check_password_file(path)
        except ValueError as exc:
            raise SpecError("password_file", str(exc)) from None


def load(path: str) -> str:
    """Given a password file, return the password; raise CheckUnknown (missing, mode, empty)."""
    try:
        return read_password(path)
    except ValueError as exc:
        raise CheckUnknown(str(exc)) from None
