"""`sdwatch status` and `sdwatch summary` as plain functions, without typer.

These are the commands people type most, so they must start fast: importing typer (and
click) costs about 50 ms, half of the budget.  ``main.main`` hands a plain status/summary
command line (units, --all, --json, --config) straight to :func:`run`; anything else,
``--help`` included, goes through the typer app in cli.py, whose status and summary
commands call the same :func:`run`.
"""

from __future__ import annotations

import sys
from typing import Sequence

EXIT_OK, EXIT_CONFIG, EXIT_UNHEALTHY, EXIT_UNREACHABLE = 0, 2, 3, 4


def run(units: Sequence[str] = (), all_units: bool = False, as_json: bool = False,
        config_path: str | None = None, summary: bool = False) -> int:
    """Print the status report (or summary); return the exit status (LSB: 0, 3, 4; 2)."""
    from sdwatch import status
    from sdwatch.config import ConfigError, load
    from sdwatch.systemd import Systemd, SystemdUnavailable

    try:
        cfg = load(config_path)
    except ConfigError as exc:
        sys.stderr.write("".join(f"{m}\n" for m in exc.messages))
        return EXIT_CONFIG
    try:
        sd = Systemd()
    except SystemdUnavailable as exc:
        sys.stderr.write(f"sdwatch: {exc}\n")
        return EXIT_UNREACHABLE
    try:
        snap = status.collect(sd, cfg, units, all_units)
    except SystemdUnavailable as exc:
        sys.stderr.write(f"sdwatch: {exc}\n")
        return EXIT_UNREACHABLE
    finally:
        sd.close()
    if summary:
        sys.stdout.write(status.render_summary(snap))
    elif as_json:
        import json

        sys.stdout.write(json.dumps(status.to_json(snap), indent=2) + "\n")
    else:
        sys.stdout.write(status.render_text(snap))
    return EXIT_OK if snap.healthy else EXIT_UNHEALTHY


def plain_args(argv: Sequence[str]) -> dict | None:
    """Given the command line after "sdwatch", return run()'s arguments if it is a plain
    status/summary invocation, or None to let the typer app parse it."""
    if not argv or argv[0] not in ("status", "summary"):
        return None
    summary = argv[0] == "summary"
    args: dict = {"units": [], "all_units": False, "as_json": False, "config_path": None,
                  "summary": summary}
    rest = list(argv[1:])
    while rest:
        arg = rest.pop(0)
        if arg in ("--all", "-a"):
            args["all_units"] = True
        elif arg == "--json" and not summary:
            args["as_json"] = True
        elif arg in ("--config", "-c") and rest and not rest[0].startswith("-"):
            args["config_path"] = rest.pop(0)
        elif arg.startswith("--config=") and len(arg) > len("--config="):
            args["config_path"] = arg.split("=", 1)[1]
        elif arg.startswith("-"):
            return None  # --help, --, a typo: typer answers those
        else:
            args["units"].append(arg)
    return args
