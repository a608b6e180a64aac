"""`sdwatch status` and `sdwatch summary` as plain functions, without typer.

These are the commands people type most, so they must start fast: importing typer (and
click) costs about 50 ms, half of the budget.  ``main.main`` hands a plain status/summary
command line (units, --all, --json, --config) straight to :func:`run`; anything else,
``--help`` included, goes through the typer app in cli.py, whose status and summary
commands call the same :func:`run`.  The running daemon answers first (quick.py: ~3 ms, where
loading the configuration and asking systemd costs tens); this module imports nothing else
until that answer fails (no typing either).  Both parse the same :data:`OPTIONS`: the flags and
help of --all, --json and --config are written once, here.
"""

from __future__ import annotations

import sys

from sdwatch import exits


class Option:
    """A command-line option of status/summary: its flags and help.  (Not a NamedTuple:
    importing typing costs more than the daemon's whole answer.)"""

    __slots__ = ("flags", "help")

    def __init__(self, flags: tuple[str, ...], help: str) -> None:
        self.flags = flags
        self.help = help


# run()'s keyword argument -> its option, for plain_args here and the typer commands in cli.py
OPTIONS = {
    "all_units": Option(("--all", "-a"), "Show every loaded service."),
    "as_json": Option(("--json",), "Print JSON (schema sdwatch.status/1)."),
    "config_path": Option(("--config", "-c"), "Main config file (default "
                          "/etc/sdwatch/sdwatch.toml, or $SDWATCH_CONFIG)."),
}


def run(units: list[str] | tuple[str, ...] = (), all_units: bool = False, as_json: bool = False,
        config_path: str | None = None, summary: bool = False, ask_daemon: bool = True) -> int:
    """Print the status report (or summary); return the exit status (sdwatch.exits: 0 all
    healthy, 3 some unit not, 4 systemd unreachable, 2 bad config or unit name).

    The running daemon answers when it can (quick.py); otherwise the configuration is
    loaded and systemd asked (``ask_daemon`` False: always)."""
    if ask_daemon:
        from sdwatch import quick

        code = quick.answer(units, all_units, as_json, config_path, summary)
        if code is not None:
            return code
    return collect_and_render(units, all_units, as_json, config_path, summary)


def collect_and_render(units: list[str] | tuple[str, ...], all_units: bool, as_json: bool,
                       config_path: str | None, summary: bool) -> int:
    """The full path: validate names and configuration, ask systemd, render here."""
    from sdwatch import status
    from sdwatch.config import ConfigError, load
    from sdwatch.states import unit_name_problem
    from sdwatch.systemd import Systemd, SystemdError, SystemdUnavailable

    problems = [p for p in map(unit_name_problem, units) if p]
    if problems:  # a usage error, not a unit found unhealthy
        sys.stderr.write("".join(f"sdwatch: {p}\n" for p in problems))
        return exits.USAGE
    try:
        cfg = load(config_path)
    except ConfigError as exc:
        sys.stderr.write("".join(f"{m}\n" for m in exc.messages))
        return exits.USAGE
    try:
        sd = Systemd()
    except SystemdUnavailable as exc:
        sys.stderr.write(f"sdwatch: {exc}\n")
        return exits.UNREACHABLE
    try:
        snap = status.collect(sd, cfg, units, all_units)
    except SystemdError as exc:  # unreachable, or a listing refused
        sys.stderr.write(f"sdwatch: {exc}\n")
        return exits.UNREACHABLE
    finally:
        sd.close()
    sys.stdout.write(status.render(snap, "summary" if summary else "json" if as_json
                                   else "text"))
    return exits.OK if snap.healthy else exits.UNHEALTHY


def plain_args(argv: list[str]) -> dict | None:
    """Given the command line after "sdwatch", return run()'s arguments if it is a plain
    status/summary invocation, or None to let the typer app parse it."""
    if not argv or argv[0] not in ("status", "summary"):
        return None
    summary = argv[0] == "summary"
    args: dict = {"units": [], "all_units": False, "as_json": False, "config_path": None,
                  "summary": summary}
    rest = list(argv[1:])
    config = OPTIONS["config_path"].flags
    while rest:
        arg = rest.pop(0)
        if arg in OPTIONS["all_units"].flags:
            args["all_units"] = True
        elif arg in OPTIONS["as_json"].flags and not summary:
            args["as_json"] = True
        elif arg in config and rest and not rest[0].startswith("-"):
            args["config_path"] = rest.pop(0)
        elif arg.startswith(f"{config[0]}=") and len(arg) > len(config[0]) + 1:
            args["config_path"] = arg.split("=", 1)[1]
        elif arg.startswith("-"):
            return None  # --help, --, a typo: typer answers those
        else:
            args["units"].append(arg)
    return args
