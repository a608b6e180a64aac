"""The probe registry: every kind name, its Spec class, its probe function and CLI target field.

Kind names are written here and nowhere else.  Each :class:`Kind` holds the *module path* of
its probe, and ``Kind.spec`` / ``Kind.probe`` import that module on first access (Python caches
it in ``sys.modules``).  So ``import sdwatch.probes`` costs nothing: commands such as ``status``
that never validate probes import no asyncio, ssl or PyMySQL.  Config validation reaches
``REGISTRY[kind].spec`` and pays only for that one module, which itself imports PyMySQL only
inside the probe that needs it.  No registration by import side effects.

Run a probe with :func:`sdwatch.probes.base.run`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping


@dataclass(frozen=True)
class Kind:
    """One probe kind: ``name`` as written in config, ``module`` holding ``Spec`` and ``probe``,
    ``target`` = the Spec field that ``sdwatch probe KIND TARGET`` fills."""

    name: str
    module: str
    target: str

    @property
    def spec(self) -> type:
        """The kind's frozen Spec dataclass (built by ``sdwatch.schema.build``)."""
        return importlib.import_module(self.module).Spec

    @property
    def probe(self) -> Callable[[Any], Awaitable[Mapping[str, Any]]]:
        """``async def probe(spec) -> metrics``; raises an ``errors.ProbeError`` on failure."""
        return importlib.import_module(self.module).probe


REGISTRY: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("tcp", "sdwatch.probes.tcp", "address"),
        Kind("http", "sdwatch.probes.http", "url"),
        Kind("mysql", "sdwatch.probes.mysql", "address"),
        Kind("memcached", "sdwatch.probes.memcached", "address"),
        Kind("redis", "sdwatch.probes.redis", "address"),
        Kind("postgresql", "sdwatch.probes.postgresql", "address"),
        Kind("tls", "sdwatch.probes.tls", "address"),
        Kind("exec", "sdwatch.probes.exec", "command"),
        Kind("file", "sdwatch.probes.file", "path"),
    )
}
