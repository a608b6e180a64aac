"""sdwatch's configuration: TOML files parsed once into frozen dataclasses.

Files: ``/etc/sdwatch/sdwatch.toml`` then ``/etc/sdwatch/conf.d/*.toml`` in name order (or the
file named by ``--config`` / ``SDWATCH_CONFIG`` and the ``conf.d/`` beside it).  Defaults live
beside the types below; unknown keys are errors; every error names the file and the key path.
No file at all is valid, and so is one without units: `sdwatch status` then shows every loaded
service that is active or failed, and the daemon watches nothing.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import tomllib
from dataclasses import dataclass, field
from typing import Any, Mapping

from sdwatch import configfiles
from sdwatch.configfiles import DEFAULT_PATH, ENV_VAR, config_paths
from sdwatch.quantities import Duration, parse_percent, parse_size
from sdwatch.schema import SpecError, build, join
from sdwatch.states import RESOURCES, unit_name_problem

# How long a restart of a unit that stopped answering may wait for its clean stop before its
# cgroup is SIGKILLed: above the clean stops of Debian's own units (see sdwatch.toml(5)).
STOP_BUDGET = 2.0


def _positive(key: str, value: float) -> None:
    if value <= 0:
        raise SpecError(key, "must be greater than zero")


def _at_least_one(key: str, value: int) -> None:
    if value < 1:
        raise SpecError(key, f"must be at least 1, got {value}")


class ConfigError(Exception):
    """One or more problems in the configuration; ``messages`` lists "file: key: problem"."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("\n".join(messages))
        self.messages = messages


class Action(str, enum.Enum):
    """What to do when a check keeps failing or a limit is reached."""

    ALERT = "alert"
    RESTART = "restart"
    STOP = "stop"
    START = "start"
    UNMONITOR = "unmonitor"


@dataclass(frozen=True)
class Settings:
    """The ``[sdwatch]`` table: defaults for every unit and where sdwatch keeps its files."""

    interval: Duration = Duration(10.0)  # how often probes and resource checks run
    timeout: Duration = Duration(5.0)  # how long one probe may take
    failures: int = 3  # consecutive failed cycles before acting
    grace: Duration = Duration(30.0)  # the longest a (re)start may take to answer every probe
    stop_budget: Duration = Duration(STOP_BUDGET)  # then SIGKILL a restarted unit's cgroup
    state_dir: str = "/var/lib/sdwatch"
    runtime_dir: str = configfiles.RUNTIME_DIR  # also holds the API socket, sdwatch.sock
    listen: str = ""  # also serve the API over TCP, e.g. "127.0.0.1:19184"; off by default
    token_file: str = ""  # a 0600 file whose first line lets TCP clients restart/monitor

    def __post_init__(self) -> None:
        _positive("interval", self.interval)
        _positive("timeout", self.timeout)
        _positive("stop_budget", self.stop_budget)
        _at_least_one("failures", self.failures)
        if self.listen:
            try:
                listen_address(self.listen)
            except ValueError as exc:
                raise SpecError("listen", str(exc)) from None
        if self.token_file:
            from sdwatch.probes.mysql import check_password_file

            try:
                check_password_file(self.token_file)
            except ValueError as exc:
                raise SpecError("token_file", str(exc).replace("password file", "token file")
                                ) from None


def listen_address(text: str) -> tuple[str, int]:
    """Given "HOST:PORT" ("[::1]:PORT" for IPv6), return (host, port); raise ValueError.

    HOST must be an IP address: a name could resolve to a public address some day."""
    import ipaddress

    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        raise ValueError(f"{text!r} is not HOST:PORT with an IP address "
                         '(e.g. "127.0.0.1:19184" or "[::1]:19184")') from None
    if not sep or not 0 < number < 65536:
        raise ValueError(f"{text!r}: the port must be 1-65535")
    return host, number


@dataclass(frozen=True)
class ProbeConfig:
    """One probe of a unit: the common scheduling keys plus its kind's own ``spec``."""

    kind: str
    name: str
    interval: float
    timeout: float
    failures: int  # failed attempts among the last ``window`` that make the probe fail
    spec: Any
    window: int = 0  # "failures of the last window"; equal to failures means consecutive
    recover: int = 1  # consecutive successes that make a failing probe pass again
    startup: bool = False  # deprecated and ignored: every probe's first pass ends grace


@dataclass(frozen=True)
class Limit:
    """A resource threshold: act when the value is above ``above`` for ``for`` cycles."""

    above: str | int | float  # as written; the resource decides how to read it (``value``)
    for_cycles: int = field(default=1, metadata={"toml": "for"})
    then: Action = Action.ALERT
    value: float = field(default=0.0, init=False)
    relative: bool = field(default=False, init=False)  # True when ``above`` is a percentage

    def __post_init__(self) -> None:
        _at_least_one("for", self.for_cycles)


@dataclass(frozen=True)
class RestartLimit:
    """Give up after ``restarts`` restarts by sdwatch ``within`` a window; re-arm after ``rearm``.
    """

    restarts: int = 5
    within: Duration = Duration(600.0)
    then: Action = Action.ALERT
    rearm: Duration = Duration(3600.0)

    def __post_init__(self) -> None:
        _at_least_one("restarts", self.restarts)
        _positive("within", self.within)


@dataclass(frozen=True)
class UnitConfig:
    """One ``[unit."NAME"]`` table."""

    name: str
    probes: tuple[ProbeConfig, ...] = ()
    cpu: Limit | None = None  # % of one core ("90%"), or of all cores with a "/all" suffix
    memory: Limit | None = None  # bytes ("2G") or % of RAM ("80%")
    tasks: Limit | None = None
    fds: Limit | None = None
    children: Limit | None = None
    restart_limit: RestartLimit = RestartLimit()
    action: Action = Action.RESTART  # what failing probes lead to
    grace: float = 30.0  # no verdicts after a (re)start until every probe passed, at most this
    stop_budget: float = STOP_BUDGET  # a restart of a running unit SIGKILLs it after this long
    keep_running: bool = False  # start the unit when it is found stopped (deliberate stops too)
    kill_first: bool = False  # SIGKILL the whole cgroup before a restart (ExecStop hangs)


@dataclass(frozen=True)
class Config:
    """The whole configuration.  ``files`` is empty when none exists (zero-config mode)."""

    settings: Settings = Settings()
    units: Mapping[str, UnitConfig] = field(default_factory=dict)
    files: tuple[str, ...] = ()
    alert_table: Any = None  # alerting.settings.AlertSettings, when a file has [alert]
    # the files as they were read (configfiles.identity): status compares it with the disk
    identity: str = field(default="", compare=False)

    @property
    def alert(self) -> Any:
        """The [alert] settings (AlertSettings; without the table: no channels)."""
        if self.alert_table is not None:
            return self.alert_table
        from sdwatch.alerting.settings import AlertSettings  # not on status's fast path

        return AlertSettings()

    @property
    def zero_config(self) -> bool:
        """True when no unit is configured (no file, or only comments and settings, as the
        packaged example): status then shows every active or failed service."""
        return not self.units


@dataclass(frozen=True)
class _UnitTable:
    """The raw shape of a unit table; probes are built separately, by kind."""

    probe: tuple[Mapping[str, Any], ...] = ()
    cpu: Limit | None = None
    memory: Limit | None = None
    tasks: Limit | None = None
    fds: Limit | None = None
    children: Limit | None = None
    restart_limit: RestartLimit = RestartLimit()
    action: Action = Action.RESTART
    grace: Duration | None = None
    stop_budget: Duration | None = None
    keep_running: bool = False
    kill_first: bool = False


_COMMON_PROBE_KEYS = ("kind", "name", "interval", "timeout", "failures", "window", "recover",
                      "startup")


@dataclass
class _Tables:
    """What the files hold, merged, with the file each part came from."""

    settings: dict[str, Any] = field(default_factory=dict)
    settings_origin: dict[str, str] = field(default_factory=dict)
    units: dict[str, tuple[str, Any]] = field(default_factory=dict)  # name -> (file, table)
    alert: dict[str, Any] = field(default_factory=dict)
    alert_origin: dict[str, str] = field(default_factory=dict)  # "email[1]" -> its file
    stamps: list[str] = field(default_factory=list)  # configfiles.stamp of each file read


def _read_tables(files: list[str], errors: list[str]) -> _Tables:
    """Given the config files in order, return their merged tables; problems go to ``errors``."""
    tables = _Tables()
    for file in files:
        try:
            with open(file, "rb") as f:
                # before reading: a write after this changes the stamp status compares
                tables.stamps.append(configfiles.stamp(os.fstat(f.fileno())))
                data = tomllib.load(f)
        except OSError as exc:
            errors.append(f"{file}: cannot read: {exc.strerror}")
            continue
        except tomllib.TOMLDecodeError as exc:
            errors.append(f"{file}: TOML syntax error: {exc}")
            continue
        _merge_file(file, data, tables, errors)
    return tables


def _merge_file(file: str, data: Mapping[str, Any], tables: _Tables, errors: list[str]) -> None:
    for key in data:
        if key not in ("sdwatch", "unit", "alert"):
            errors.append(f"{file}: {join('', key)}: unknown table "
                          "(allowed: alert, sdwatch, unit)")
    if isinstance(data.get("alert"), Mapping):
        _merge_alert(data["alert"], file, tables.alert, tables.alert_origin)
    elif "alert" in data:
        errors.append(f"{file}: alert: expected a table")
    if isinstance(data.get("sdwatch"), Mapping):
        for key, value in data["sdwatch"].items():
            tables.settings[key] = value
            tables.settings_origin[key] = file
    elif "sdwatch" in data:
        errors.append(f"{file}: sdwatch: expected a table")
    units = data.get("unit", {})
    if not isinstance(units, Mapping):
        errors.append(f"{file}: unit: expected tables like [unit.\"nginx.service\"]")
        return
    for name, table in units.items():
        if name in tables.units:
            errors.append(f"{file}: {join('unit', name)}: already defined in "
                          f"{tables.units[name][0]}")
            continue
        tables.units[name] = (file, table)


def load(path: str | None = None) -> Config:
    """Read, validate and return the configuration; raise ConfigError listing every problem.

    ``path`` (or $SDWATCH_CONFIG) names the main file; a name given explicitly must exist.
    """
    explicit = path or os.environ.get(ENV_VAR)
    files = config_paths(path)
    errors: list[str] = []
    if explicit and not os.path.exists(explicit):
        raise ConfigError([f"{explicit}: no such file"])
    main = explicit or DEFAULT_PATH
    if not files and os.path.isdir(main):  # not "no configuration": a mistake to name
        raise ConfigError([f"{main}: a directory without sdwatch.toml or conf.d/*.toml"])
    tables = _read_tables(files, errors)
    settings_data, settings_origin = tables.settings, tables.settings_origin
    alert_data, alert_origin, unit_tables = tables.alert, tables.alert_origin, tables.units

    settings = Settings()
    try:
        settings = build(Settings, settings_data, "sdwatch")
    except SpecError as exc:
        bad = exc.key.split(".")[1] if "." in exc.key else ""
        errors.append(f"{settings_origin.get(bad, files[0] if files else DEFAULT_PATH)}: {exc}")

    alert = None
    try:
        if alert_data:
            from sdwatch.alerting.settings import AlertSettings

            alert = build(AlertSettings, alert_data, "alert")
    except SpecError as exc:
        where = exc.key.split(".")[1] if "." in exc.key else ""
        errors.append(f"{alert_origin.get(where, files[0] if files else DEFAULT_PATH)}: {exc}")

    units_out: dict[str, UnitConfig] = {}
    for name, (file, table) in unit_tables.items():
        try:
            units_out[name] = _build_unit(name, table, settings)
        except SpecError as exc:
            errors.append(f"{file}: {exc}")
    if errors:
        raise ConfigError(errors)
    return Config(settings=settings, units=units_out, files=tuple(files), alert_table=alert,
                  identity=configfiles.identity(tables.stamps))


def _merge_alert(table: Mapping[str, Any], file: str, into: dict[str, Any],
                 origin: dict[str, str]) -> None:
    """Merge one file's [alert] table: channel lists add up across files, a later file's
    other keys win; ``origin`` remembers which file each key or channel came from."""
    for key, value in table.items():
        if key in ("email", "webhook", "exec") and isinstance(value, list):
            into.setdefault(key, [])
            for item in value:
                origin[join(key, len(into[key]))] = file
                into[key].append(item)
        else:
            into[key] = value
            origin[key] = file


def _build_unit(name: str, table: Any, settings: Settings) -> UnitConfig:
    key = join("unit", name)
    problem = unit_name_problem(name)
    if problem:
        raise SpecError(key, problem)
    raw = build(_UnitTable, table, key)
    if raw.stop_budget is not None and raw.stop_budget <= 0:
        raise SpecError(join(key, "stop_budget"), "must be greater than zero")
    probes = tuple(_build_probe(p, join(join(key, "probe"), i), settings)
                   for i, p in enumerate(raw.probe))
    names = [p.name for p in probes]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise SpecError(join(key, "probe"), f"two probes are named {dup!r}: give one a name")
    limits = {r: _read_limit(r, getattr(raw, r), join(key, r))
              for r in RESOURCES}
    return UnitConfig(name=name, probes=probes, restart_limit=raw.restart_limit,
                      action=raw.action, keep_running=raw.keep_running,
                      kill_first=raw.kill_first,
                      grace=raw.grace if raw.grace is not None else settings.grace,
                      stop_budget=(raw.stop_budget if raw.stop_budget is not None
                                   else settings.stop_budget), **limits)


def _build_probe(data: Any, key: str, settings: Settings) -> ProbeConfig:
    from sdwatch.probes import REGISTRY

    if not isinstance(data, Mapping):
        raise SpecError(key, "expected a table like { kind = \"tcp\", address = \"...\" }")
    kind = data.get("kind")
    if kind is None:
        raise SpecError(join(key, "kind"), f"required key is missing (one of: "
                        f"{', '.join(sorted(REGISTRY))})")
    if kind not in REGISTRY:
        raise SpecError(join(key, "kind"), f"unknown probe kind {kind!r} (one of: "
                        f"{', '.join(sorted(REGISTRY))})")
    common = build(_ProbeCommon, {k: data[k] for k in _COMMON_PROBE_KEYS if k in data}, key)
    spec = build(REGISTRY[kind].spec, {k: v for k, v in data.items()
                                       if k not in _COMMON_PROBE_KEYS}, key)
    interval = common.interval if common.interval is not None else settings.interval
    # an inherited timeout shrinks to a short interval; one written out must fit in it
    timeout = (common.timeout if common.timeout is not None
               else min(settings.timeout, interval))
    if timeout > interval:
        raise SpecError(join(key, "timeout"), f"timeout ({timeout:g}s) is longer than the "
                        f"interval ({interval:g}s)")
    failures = common.failures or settings.failures
    window = common.window or failures
    if window < failures:
        raise SpecError(join(key, "window"), f"must be at least failures ({failures})")
    return ProbeConfig(kind=kind, name=common.name or kind, interval=interval, timeout=timeout,
                       failures=failures, window=window, recover=common.recover,
                       startup=common.startup, spec=spec)


@dataclass(frozen=True)
class _ProbeCommon:
    kind: str
    name: str = ""
    interval: Duration | None = None
    timeout: Duration | None = None
    failures: int | None = None
    window: int | None = None
    recover: int = 1
    startup: bool = False

    def __post_init__(self) -> None:
        _at_least_one("recover", self.recover)
        if self.window is not None and self.window < (self.failures or 1):
            raise SpecError("window", f"must be at least failures ({self.failures or 1})")
        if self.interval is not None:
            _positive("interval", self.interval)
        if self.timeout is not None:
            _positive("timeout", self.timeout)
        if self.failures is not None:
            _at_least_one("failures", self.failures)


def _read_limit(resource: str, limit: Limit | None, key: str) -> Limit | None:
    """Read ``above`` in the resource's own terms and return the limit with ``value`` set."""
    if limit is None:
        return None
    text = str(limit.above)
    try:
        if resource == "cpu":
            value, relative = float(parse_percent(text.removesuffix("/all"))), text.endswith("/all")
        elif resource == "memory":
            relative = text.strip().endswith("%")
            value = float(parse_percent(text) if relative else parse_size(text))
            if relative and value > 100:
                raise ValueError(f"{text!r} is more than all of the memory")
        else:
            value, relative = float(int(text)), False
            if value < 0:
                raise ValueError("must not be negative")
    except ValueError as exc:
        hints = {"cpu": 'e.g. "90%" of one core or "50%/all"', "memory": 'e.g. "2G" or "80%"'}
        hint = hints.get(resource, "a whole number")
        raise SpecError(join(key, "above"), f"{exc} ({hint})") from None
    limit = dataclasses.replace(limit)
    object.__setattr__(limit, "value", value)
    object.__setattr__(limit, "relative", relative)
    return limit
