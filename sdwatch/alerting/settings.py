"""The ``[alert]`` table: reminder and retry timing, and the channels (email, webhook, exec).

Secrets (SMTP password, webhook URL or header values) are never held here, only the name of
the file holding them: a path (refused at send time if group or others may read it) or
``credential:NAME`` for ``$CREDENTIALS_DIRECTORY/NAME`` (systemd's LoadCredential=).
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field, replace
from typing import Literal, Mapping

from sdwatch.quantities import Duration
from sdwatch.schema import SpecError
from sdwatch.states import EVENTS

_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")


def _no_newlines(key: str, value: str) -> None:
    # a CR or LF in an address or header would let config text forge further headers
    if "\r" in value or "\n" in value:
        raise SpecError(key, "must not contain line breaks")


@dataclass(frozen=True, kw_only=True)
class Channel:
    """What every channel has: a name (for logs and the queue) and its unit/event filters."""

    name: str = ""  # default: kind + position, e.g. "email0"
    units: tuple[str, ...] = ("*",)  # globs matched against the unit name
    events: tuple[str, ...] = EVENTS
    timeout: Duration = Duration(30.0)

    kind = "channel"

    def __post_init__(self) -> None:
        for event in self.events:
            if event not in EVENTS:
                raise SpecError("events", f"unknown event {event!r} (one of: "
                                f"{', '.join(EVENTS)})")
        if not self.units:
            raise SpecError("units", "must list at least one glob (\"*\" for every unit)")
        if self.timeout <= 0:
            raise SpecError("timeout", "must be greater than zero")
        if self.name and not re.fullmatch(r"[A-Za-z0-9_.-]+", self.name):
            raise SpecError("name", "letters, digits and '_.-' only")

    @property
    def key(self) -> str:
        """The channel's identity in logs and queue entries, e.g. "email:ops"."""
        return f"{self.kind}:{self.name}"

    def matches(self, unit: str, event: str) -> bool:
        """Given a unit name and an event, return True if this channel wants the alert."""
        return event in self.events and any(fnmatch.fnmatchcase(unit, g) for g in self.units)


@dataclass(frozen=True, kw_only=True)
class EmailChannel(Channel):
    """``[[alert.email]]``: SMTP (``smtp = "host:port"``, STARTTLS unless ``starttls = false``)
    or the local ``sendmail`` binary."""

    to: tuple[str, ...]
    sender: str = field(default="", metadata={"toml": "from"})  # default sdwatch@HOST
    smtp: str = ""
    sendmail: str = ""
    starttls: bool = True  # required when true: never send credentials or alerts in clear
    ca_file: str = ""  # CA bundle for a private CA; default: the system's
    user: str = ""
    password_file: str = ""

    kind = "email"

    def __post_init__(self) -> None:
        super().__post_init__()
        if bool(self.smtp) == bool(self.sendmail):
            raise SpecError("smtp", "give exactly one of smtp (\"host:port\") or sendmail "
                            "(a path such as /usr/sbin/sendmail)")
        if self.sendmail and not os.path.isabs(self.sendmail):
            raise SpecError("sendmail", "must be an absolute path")
        if self.smtp:
            self.smtp_address()
        if bool(self.user) != bool(self.password_file):
            raise SpecError("password_file" if self.user else "user",
                            "user and password_file go together")
        if self.user and not self.smtp:
            raise SpecError("user", "authentication needs smtp, not sendmail")
        if not self.to:
            raise SpecError("to", "must list at least one address")
        for i, address in enumerate((*self.to, self.sender)):
            key = "to" if i < len(self.to) else "from"
            _no_newlines(key, address)
            if address and "@" not in address:
                raise SpecError(key, f"{address!r} is not an email address")

    def smtp_address(self) -> tuple[str, int]:
        """Return (host, port) of ``smtp``; port 587 with STARTTLS, else 25."""
        host, sep, port = self.smtp.rpartition(":")
        if not sep:
            host, port = self.smtp, ""
        host = host.strip("[]")
        if not host or (port and not port.isdigit()) or (port and not 0 < int(port) < 65536):
            raise SpecError("smtp", f"expected \"host:port\", got {self.smtp!r}")
        return host, int(port) if port else (587 if self.starttls else 25)


@dataclass(frozen=True, kw_only=True)
class WebhookChannel(Channel):
    """``[[alert.webhook]]``: a JSON POST to ``url`` (or the URL held in ``url_file``, for
    URLs that carry a token, like Slack's); ``format = "slack"`` posts ``{"text": ...}``."""

    url: str = field(default="", repr=False)  # may carry a token: never in repr or logs
    url_file: str = ""
    format: Literal["json", "slack"] = "json"
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    header_files: Mapping[str, str] = field(default_factory=dict)  # header -> secret file

    kind = "webhook"

    def __post_init__(self) -> None:
        super().__post_init__()
        if bool(self.url) == bool(self.url_file):
            raise SpecError("url", "give exactly one of url or url_file")
        if self.url and not re.match(r"https?://[^/?#]+", self.url):
            raise SpecError("url", "must be an http:// or https:// URL")
        for table in ("headers", "header_files"):
            for name, value in getattr(self, table).items():
                if not _HEADER_NAME.fullmatch(name):
                    raise SpecError(f"{table}.{name}", "is not a valid header name")
                if not isinstance(value, str):
                    raise SpecError(f"{table}.{name}", "expected a string")
                _no_newlines(f"{table}.{name}", value)


@dataclass(frozen=True, kw_only=True)
class ExecChannel(Channel):
    """``[[alert.exec]]``: run ``command`` (argv, no shell) with SDWATCH_* variables and the
    event as JSON on stdin; exit status 0 means delivered."""

    command: tuple[str, ...]

    kind = "exec"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.command:
            raise SpecError("command", "must not be empty")
        if not os.path.isabs(self.command[0]):
            raise SpecError("command", f"{self.command[0]!r}: must be an absolute path "
                            "(no $PATH search, no shell)")


@dataclass(frozen=True)
class AlertSettings:
    """The ``[alert]`` table.  No channels means alerts are only logged."""

    reminder: Duration = Duration(0.0)  # repeat while a unit stays failing; 0 = never
    retry: Duration = Duration(30.0)  # first retry of an undelivered alert ...
    retry_max: Duration = Duration(3600.0)  # ... doubling up to this
    host: str = ""  # the name alerts give this machine; default: its hostname
    email: tuple[EmailChannel, ...] = ()
    webhook: tuple[WebhookChannel, ...] = ()
    exec: tuple[ExecChannel, ...] = ()

    def __post_init__(self) -> None:
        if self.retry <= 0:
            raise SpecError("retry", "must be greater than zero")
        if self.retry_max < self.retry:
            raise SpecError("retry_max", f"must be at least retry ({self.retry:g}s)")
        seen: set[str] = set()
        for table in ("email", "webhook", "exec"):
            named = tuple(c if c.name else replace(c, name=f"{table}{i}")
                          for i, c in enumerate(getattr(self, table)))
            object.__setattr__(self, table, named)
            for channel in named:
                if channel.key in seen:
                    raise SpecError(table, f"two {table} channels are named {channel.name!r}")
                seen.add(channel.key)

    @property
    def channels(self) -> tuple[Channel, ...]:
        """Every channel, in the order email, webhook, exec."""
        return (*self.email, *self.webhook, *self.exec)


def secret_path(ref: str) -> str:
    """Given a path or ``credential:NAME``, return the file's path; raise ValueError."""
    if not ref.startswith("credential:"):
        return ref
    name = ref.removeprefix("credential:")
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"{ref}: not a credential name")
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        raise ValueError(f"{ref}: $CREDENTIALS_DIRECTORY is not set (give the unit "
                         f"LoadCredential={name}:/path/to/file)")
    return os.path.join(directory, name)


def read_secret(ref: str) -> str:
    """Given a path or ``credential:NAME``, return the first line of the file.

    Raise ValueError (naming the file, never its content) if it is missing, empty, or
    readable by group or others."""
    from sdwatch.secretfile import read_password

    return read_password(secret_path(ref))
