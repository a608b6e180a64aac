"""Deferring a module that a dependency imports eagerly, to the first use of it.

pystemd's package imports ``lxml.etree`` on its first lines, for its introspection of D-Bus
objects; sdwatch makes its calls through pystemd's bus module and never introspects.  lxml is
8 MiB of the daemon's memory and 20–30 ms of every command's start.  :func:`defer` puts a
module object in ``sys.modules`` that imports the real module on its first attribute access
and takes on its contents, so any code that does use it gets the real module's functions.
(What bound the stand-in before that keeps it: a copy of the module's names, so patching
the real module afterwards does not reach it.)
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from _thread import RLock  # threading's own; importing threading costs a command ~0.7 ms

_lock = RLock()  # re-entrant: a finalizer touching the module during its import


class Deferred(types.ModuleType):
    """Stands in ``sys.modules`` for a module not imported yet; its first attribute read
    imports the module and makes this object a copy of it."""

    def __getattr__(self, name: str) -> object:
        with _lock:
            if sys.modules.get(self.__name__) is self:
                del sys.modules[self.__name__]
            real = importlib.import_module(self.__name__)
            self.__dict__.update(real.__dict__)
        return getattr(real, name)


def defer(name: str) -> None:
    """Make ``import name`` cheap until the module is used; a no-op when it is imported
    already or is not installed (an importer then fails as it would have)."""
    if name in sys.modules:
        return
    parent_name, _, child = name.rpartition(".")
    try:
        parent = importlib.import_module(parent_name) if parent_name else None
        spec = importlib.util.find_spec(name)  # where it is, without loading it
    except (ImportError, ValueError):
        return
    if spec is None or name in sys.modules:  # not installed, or the parent imported it
        return
    module = Deferred(name)
    module.__spec__ = spec  # importlib.util.find_spec(name) keeps answering
    sys.modules[name] = module
    if parent is not None:
        setattr(parent, child, module)  # ``import a.b; a.b.x`` reads the parent's attribute
