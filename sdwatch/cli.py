"""The ``sdwatch`` command line: parse, call, render, exit.  Heavy modules are imported lazily.

Exit codes: sdwatch.exits.
"""

from __future__ import annotations

from typing import List, NoReturn, Optional

import typer

from sdwatch import exits
from sdwatch.report import OPTIONS
from sdwatch.states import Event

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Health checks and resource limits for systemd units.")



def _config_option() -> Optional[str]:
    return typer.Option(None, *OPTIONS["config_path"].flags, help=OPTIONS["config_path"].help,
                        metavar="FILE")


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"sdwatch: {message}", err=True)
    raise typer.Exit(code)


def _load_config(path: Optional[str]):  # -> sdwatch.config.Config
    from sdwatch.config import ConfigError, load

    try:
        return load(path)
    except ConfigError as exc:
        for message in exc.messages:
            typer.echo(message, err=True)
        raise typer.Exit(exits.USAGE) from None


def _connect():  # -> sdwatch.systemd.Systemd
    from sdwatch.systemd import Systemd, SystemdUnavailable

    try:
        return Systemd()
    except SystemdUnavailable as exc:
        _fail(str(exc), exits.UNREACHABLE)


@app.command()
def status(
    units: Optional[List[str]] = typer.Argument(None, help="Units to show (default: the "
                                                "configured ones, or every active or failed "
                                                "service when there is no config)."),
    all_units: bool = typer.Option(False, *OPTIONS["all_units"].flags,
                                   help=OPTIONS["all_units"].help),
    as_json: bool = typer.Option(False, *OPTIONS["as_json"].flags, help=OPTIONS["as_json"].help),
    config: Optional[str] = _config_option(),
) -> None:
    """Show the system and each unit: state, health, PID, uptime, restarts, tasks, memory, CPU."""
    from sdwatch import report

    raise typer.Exit(report.run(units or (), all_units, as_json, config))


@app.command()
def summary(
    units: Optional[List[str]] = typer.Argument(None, help="Units to show."),
    all_units: bool = typer.Option(False, *OPTIONS["all_units"].flags,
                                   help=OPTIONS["all_units"].help),
    config: Optional[str] = _config_option(),
) -> None:
    """One line per unit: health, state, memory, CPU, uptime."""
    from sdwatch import report

    raise typer.Exit(report.run(units or (), all_units, False, config, summary=True))


@app.command()
def validate(config: Optional[str] = _config_option()) -> None:
    """Check the configuration: exit 0 when valid, 2 with one line per problem otherwise."""
    cfg = _load_config(config)
    files = ", ".join(cfg.files) if cfg.files else "no config file (watching all services)"
    typer.echo(f"configuration ok: {len(cfg.units)} units, "
               f"{sum(len(u.probes) for u in cfg.units.values())} probes ({files})")


@app.command()
def run(
    config: Optional[str] = _config_option(),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every probe result."),
) -> None:
    """Run the supervisor in the foreground (what sdwatch.service starts)."""
    from sdwatch import daemon, logs

    logs.setup(verbose)
    cfg = _load_config(config)
    raise typer.Exit(daemon.main(cfg, config))


def _command(unit: str, command: str, config: Optional[str]) -> None:
    """Hand ``command`` for ``unit`` to the running daemon over its socket."""
    from sdwatch import serve
    from sdwatch.serve.client import Unreachable, request

    cfg = _load_config(config)
    path = serve.socket_path(cfg.settings.runtime_dir)
    try:
        code, data = request(f"/api/v1/units/{unit}/{command}", "POST", path)
    except Unreachable as exc:
        _fail(f"the sdwatch daemon does not answer ({exc}): is it running? "
              "(systemctl status sdwatch)", exits.UNREACHABLE)
    if code == 202:
        typer.echo(f"{unit}: {command} requested, now {data.get('health')}")
        return
    why = data.get("error") if isinstance(data, dict) else str(data).strip()
    _fail(f"{unit}: {why}", exits.USAGE if code == 404 else exits.FAILED)


@app.command("restart")
def restart_cmd(unit: str = typer.Argument(..., help="A unit the daemon watches."),
                config: Optional[str] = _config_option()) -> None:
    """Have the daemon restart UNIT now (through systemd), even after it gave up."""
    _command(unit, "restart", config)


@app.command("monitor")
def monitor_cmd(unit: str = typer.Argument(..., help="A unit the daemon watches."),
                config: Optional[str] = _config_option()) -> None:
    """Re-arm UNIT: the daemon acts on it again after it gave up or was unmonitored."""
    _command(unit, "monitor", config)


@app.command("unmonitor")
def unmonitor_cmd(unit: str = typer.Argument(..., help="A unit the daemon watches."),
                  config: Optional[str] = _config_option()) -> None:
    """Have the daemon stop acting on UNIT (it keeps showing its status) until monitor."""
    _command(unit, "unmonitor", config)


@app.command()
def reload(
    pid: int = typer.Option(..., "--pid", help="The daemon's PID ($MAINPID in ExecReload=)."),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds to wait for the daemon."),
    config: Optional[str] = _config_option(),
) -> None:
    """Validate the config, have the daemon reload it, wait for its answer (ExecReload=).

    Exit 0 when the daemon runs the new configuration, 2 when it is refused (the old one
    stays in force), 1 when the daemon did not answer."""
    from sdwatch import reloading

    cfg = _load_config(config)
    try:
        answer = reloading.request(pid, cfg.settings.runtime_dir, timeout)
    except (TimeoutError, ProcessLookupError) as exc:
        _fail(f"reload: {exc}", exits.FAILED)
    if not answer.ok:
        for message in answer.messages:
            typer.echo(message, err=True)
        _fail("reload refused: the previous configuration stays in force", exits.USAGE)
    typer.echo(f"reloaded: {answer.units} units")


@app.command()
def check(
    units: Optional[List[str]] = typer.Argument(None, help="Units to check (default: all "
                                                "configured units)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    config: Optional[str] = _config_option(),
) -> None:
    """Run every configured probe and resource check once, concurrently; exit 1 if any fails."""
    import asyncio

    from sdwatch import checks
    from sdwatch.systemd import Systemd, SystemdUnavailable

    cfg = _load_config(config)
    names = list(units or cfg.units)
    unknown = [n for n in names if n not in cfg.units]
    if unknown:
        _fail(f"not configured: {', '.join(unknown)} (see sdwatch validate)", exits.USAGE)
    try:
        sd = Systemd()
    except SystemdUnavailable:
        sd = None  # probes still run; resource checks say why they cannot
    try:
        results = asyncio.run(checks.check_units(cfg, names, sd))
    finally:
        if sd is not None:
            sd.close()
    if as_json:
        import dataclasses
        import json

        typer.echo(json.dumps([dataclasses.asdict(r) for r in results], indent=2))
    else:
        typer.echo(checks.render(results), nl=False)
    raise typer.Exit(exits.OK if all(r.ok for r in results) else exits.FAILED)


@app.command()
def probe(
    kind: str = typer.Argument(..., help="Probe kind: tcp, http, mysql, memcached, redis, "
                              "postgresql, tls, exec, file."),
    target: str = typer.Argument(..., help="What to probe: address, URL, socket, command, path."),
    option: Optional[List[str]] = typer.Option(None, "--option", "-o", metavar="KEY=VALUE",
                                               help="Another key of the kind, as in the config "
                                               "file (repeatable), e.g. -o status=200."),
    timeout: str = typer.Option("5s", "--timeout", "-t",
                                help="How long to wait: 500ms, 5s, 1m (a number is seconds)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Probe something once, ad hoc: e.g. sdwatch probe http http+unix:///run/puma.sock/up."""
    import asyncio

    from sdwatch.probes import REGISTRY
    from sdwatch.probes.base import run
    from sdwatch.schema import SpecError, build

    seconds = _duration("--timeout", timeout)
    if kind not in REGISTRY:
        _fail(f"unknown probe kind {kind!r} (one of: {', '.join(sorted(REGISTRY))})",
              exits.USAGE)
    entry = REGISTRY[kind]
    table: dict = {entry.target: target}
    for item in option or []:
        key, sep, value = item.partition("=")
        if not sep:
            _fail(f"--option {item!r}: expected KEY=VALUE", exits.USAGE)
        table[key.strip()] = _toml_value(value)
    try:
        spec = build(entry.spec, table, kind)
    except SpecError as exc:
        _fail(str(exc), exits.USAGE)
    result = asyncio.run(run(kind, spec, seconds))
    if as_json:
        import json

        typer.echo(json.dumps({"ok": result.ok, "outcome": result.outcome.value,
                               "duration": result.duration, "reason": result.reason,
                               "metrics": dict(result.metrics)}, indent=2))
    else:
        typer.echo(f"{kind} {target}: {result.outcome.value} in "
                   f"{result.duration * 1000:.1f}ms: {result.reason}")
    raise typer.Exit(exits.OK if result.ok else exits.FAILED)


def _duration(option: str, text: str) -> float:
    """Parse a duration option as the config file does ("1s", "2m", a number of seconds)."""
    from sdwatch.quantities import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        _fail(f"{option}: {exc}", exits.USAGE)

def _toml_value(text: str) -> object:
    """Read a --option value as TOML (numbers, booleans, lists), else as a plain string."""
    import tomllib

    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


@app.command()
def init(
    write: Optional[str] = typer.Option(None, "--write", "-w", metavar="PATH",
                                        help="Write the config to PATH (a new file, e.g. "
                                        "/etc/sdwatch/conf.d/local.toml) instead of printing."),
    login: Optional[List[str]] = typer.Option(None, "--login", "-l",
                                              metavar="KIND=USER:PASSWORD_FILE",
                                              help="Propose a real login for mysql, postgresql "
                                              "or redis with this user and password file "
                                              "(repeatable)."),
    config: Optional[str] = _config_option(),
) -> None:
    """Propose a config for the services running now, from systemd and /proc."""
    from sdwatch import discover, machine
    from sdwatch.config import ConfigError, load

    logins = {}
    for item in login or []:
        try:
            kind, creds = discover.parse_login(item)
        except ValueError as exc:
            _fail(f"--login: {exc}", exits.USAGE)
        logins[kind] = creds
    skipped = {"sdwatch.service": "sdwatch itself"}
    try:
        existing = load(config)
        skipped.update({u: "already configured" for u in existing.units})
    except ConfigError as exc:
        _fail("the current configuration is invalid, fix it first:\n" + str(exc), exits.USAGE)
    sd = _connect()
    try:
        plan = discover.plan(machine.read_services(
            sd, exclude=skipped, ask_tls=discover.tls_questions), logins, skipped)
    finally:
        sd.close()
    problems = discover.check_text(plan.text)
    if problems:
        _fail("the proposed config does not validate:\n" + "\n".join(problems), exits.USAGE)
    if write is None:
        typer.echo(plan.text, nl=False)
        return
    try:
        discover.write_new(write, plan.text)
    except FileExistsError:
        _fail(f"{write} exists: not overwriting it (remove it or choose another path)",
              exits.USAGE)
    except OSError as exc:
        _fail(f"cannot write {write}: {exc.strerror}", exits.USAGE)
    typer.echo(f"wrote {write}: {plan.units} units, {plan.probes} probes; review it, then "
               f"sdwatch validate && systemctl reload sdwatch")


# -- hooks in other units: OnFailure= alerts, ExecStartPost= wait-healthy, their drop-ins ------


@app.command()
def alert(
    unit: str = typer.Option(..., "--unit", "-u", help="The unit the alert is about."),
    event: str = typer.Option(Event.FAILED.value, "--event", help="Event name (default: failed)."),
    message: Optional[str] = typer.Option(None, "--message", "-m",
                                          help="Text instead of the unit's failure summary."),
    config: Optional[str] = _config_option(),
) -> None:
    """Alert about UNIT now: its result, exit status, restarts and last journal lines.

    For OnFailure=sdwatch-alert@%n.service.  Undelivered alerts are queued for sdwatch run.
    """
    import asyncio
    import dataclasses

    from sdwatch import hooks, logs
    from sdwatch.alerts import LOST, Alerter
    from sdwatch.states import EVENTS

    logs.setup()
    try:
        hooks.check_unit(unit)
    except hooks.HookError as exc:
        _fail(str(exc), exits.USAGE)
    if event not in EVENTS:
        _fail(f"--event {event!r}: one of {', '.join(EVENTS)}", exits.USAGE)
    cfg = _load_config(config)
    if not cfg.alert.channels:
        _fail("no alert channels configured ([[alert.email]], [[alert.webhook]], "
              "[[alert.exec]])", exits.USAGE)
    alerter = Alerter(cfg.alert, cfg.settings.state_dir)
    ev = dataclasses.replace(hooks.failed_event(unit, alerter.host), event=Event(event))
    if message:
        ev = dataclasses.replace(ev, message=message)
    outcome = asyncio.run(alerter.dispatch(ev))
    for channel, result in outcome.items():
        typer.echo(f"{unit} {event}: {channel}: {result}")
    if not outcome:
        typer.echo(f"{unit} {event}: no channel wants this alert")
    raise typer.Exit(exits.FAILED if LOST in outcome.values() else exits.OK)


@app.command("wait-healthy")
def wait_healthy(
    unit: str = typer.Argument(..., help="A unit with probes in the configuration."),
    timeout: str = typer.Option("60s", "--timeout", "-t",
                                help="Give up after this long: 90s, 2m (a number is seconds)."),
    config: Optional[str] = _config_option(),
) -> None:
    """Run UNIT's probes until all pass (exit 0) or the timeout passes (exit 1).

    For ExecStartPost=: systemd holds the start, and the units after it, until then.
    """
    import asyncio

    from sdwatch import hooks

    seconds = _duration("--timeout", timeout)
    cfg = _load_config(config)
    if unit not in cfg.units:
        _fail(f"{unit} is not configured (see sdwatch validate)", exits.USAGE)
    if not cfg.units[unit].probes:
        _fail(f"{unit} has no probes configured: nothing to wait for", exits.USAGE)
    ok, line = asyncio.run(hooks.wait_healthy(cfg, unit, seconds))
    if ok:
        typer.echo(f"sdwatch: {line}")
        raise typer.Exit(exits.OK)
    _fail(line, exits.FAILED)


hook_app = typer.Typer(no_args_is_help=True, help="Install sdwatch's hooks into a unit: a "
                       "drop-in UNIT.d/50-sdwatch.conf under /etc/systemd/system "
                       "(or $SDWATCH_SYSTEMD_DIR).")
app.add_typer(hook_app, name="hook")


def _hook_reload(no_reload: bool) -> None:
    from sdwatch.systemd import SystemdError

    if no_reload:
        return
    sd = _connect()
    try:
        sd.reload_daemon()
    except SystemdError as exc:
        _fail(str(exc), exits.UNREACHABLE)
    finally:
        sd.close()


@hook_app.command("install")
def hook_install(
    unit: str = typer.Argument(..., help="The unit, e.g. mariadb.service."),
    on_failure: bool = typer.Option(False, "--on-failure",
                                    help="OnFailure=sdwatch-alert@%n.service: alert on failure."),
    wait: bool = typer.Option(False, "--wait-healthy",
                              help="ExecStartPost= sdwatch wait-healthy: hold the start until "
                              "the unit's probes pass."),
    timeout: str = typer.Option("60s", "--timeout", "-t", help="wait-healthy's timeout."),
    config: Optional[str] = _config_option(),
    no_reload: bool = typer.Option(False, "--no-reload", help="Skip systemctl daemon-reload."),
) -> None:
    """Write UNIT's sdwatch drop-in (again: same result) and reload systemd."""
    import os

    from sdwatch import hooks
    from sdwatch.quantities import parse_duration

    try:
        seconds = parse_duration(timeout)
        config = config or os.environ.get("SDWATCH_CONFIG")
        text = hooks.render(unit, on_failure, wait, seconds, config=config and
                            os.path.abspath(config))
        path, changed = hooks.install(unit, text)
    except (hooks.HookError, ValueError) as exc:
        _fail(str(exc), exits.USAGE)
    if changed:
        _hook_reload(no_reload)
    typer.echo(f"{'installed' if changed else 'already installed'}: {path}")


@hook_app.command("remove")
def hook_remove(
    unit: str = typer.Argument(..., help="The unit."),
    no_reload: bool = typer.Option(False, "--no-reload", help="Skip systemctl daemon-reload."),
) -> None:
    """Remove UNIT's sdwatch drop-in (and its .d directory if empty) and reload systemd."""
    from sdwatch import hooks

    try:
        path = hooks.remove(unit)
    except hooks.HookError as exc:
        _fail(str(exc), exits.USAGE)
    if path is None:
        typer.echo(f"no sdwatch hook installed for {unit}: nothing to remove")
        return
    _hook_reload(no_reload)
    typer.echo(f"removed: {path}")


@hook_app.command("list")
def hook_list() -> None:
    """List the units with an sdwatch drop-in and which hooks it holds."""
    from sdwatch import hooks

    found = hooks.list_hooks()
    for h in found:
        kinds = [k for k, on in (("on-failure", h.on_failure), ("wait-healthy",
                                                                 h.wait_healthy)) if on]
        typer.echo(f"{h.unit}  {' '.join(kinds) or '-'}  {h.path}")
    if not found:
        typer.echo(f"no sdwatch hooks in {hooks.systemd_dir()}")


@app.command()
def version() -> None:
    """Print sdwatch's version."""
    from sdwatch import __version__

    typer.echo(__version__)
