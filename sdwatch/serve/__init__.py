"""The daemon's API: a unix socket (always) and a TCP address (when ``listen`` is set) serving
the status page, /metrics, the status JSON and control.  ``start`` wires it to a Supervisor."""

from __future__ import annotations

import os
from typing import Any

SOCKET_NAME = "sdwatch.sock"


def socket_path(runtime_dir: str) -> str:
    """Where the daemon's API socket lives."""
    return os.path.join(runtime_dir, SOCKET_NAME)


async def start(sup: Any) -> Any:
    """Serve ``sup`` (a daemon.Supervisor) as its settings say; return the httpd.Server.

    A socket that cannot be made is logged, not fatal: watching matters more than serving."""
    import logging

    from sdwatch.config import listen_address
    from sdwatch.serve.api import Api
    from sdwatch.serve.httpd import Server
    from sdwatch.serve.live import Live

    log = logging.getLogger("sdwatch")
    settings = sup.cfg.settings
    path = socket_path(settings.runtime_dir)
    token = ""
    if settings.token_file:
        from sdwatch.probes.mysql import read_password

        try:
            token = read_password(settings.token_file)
        except ValueError as exc:
            log.error("API: %s: write actions over TCP are refused", str(exc).replace(
                "password file", "token file"))
    server = Server(Api(Live(sup, path), token))
    try:
        os.makedirs(settings.runtime_dir, mode=0o700, exist_ok=True)
        await server.listen_unix(path)
    except OSError as exc:
        log.error("API: cannot listen on %s: %s", path, exc)
    if settings.listen:
        host, port = listen_address(settings.listen)
        try:
            bound = await server.listen_tcp(host, port)
            log.info("API: listening on %s and http://%s", path, settings.listen)
            sup.api_address = bound
        except OSError as exc:
            log.error("API: cannot listen on %s: %s", settings.listen, exc)
    return server
