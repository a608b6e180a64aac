"""The `sdwatch` executable: status and summary go straight to report.run (no typer import,
see report.py), everything else to the typer app in cli.py."""

from __future__ import annotations

import os
import sys


def main() -> None:
    """Console-script entry point."""
    from sdwatch.report import plain_args, run

    args = plain_args(sys.argv[1:])
    try:
        if args is not None:
            code = run(**args)
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            except BrokenPipeError:  # `sdwatch status | head`: the reader left, fine
                pass
            # nothing is left to clean up: skip the interpreter's teardown of every module
            # (a few ms of a command whose budget is 100 ms)
            os._exit(code)
        from sdwatch.cli import app

        app()
    except KeyboardInterrupt:
        from sdwatch import exits

        sys.exit(exits.INTERRUPTED)
