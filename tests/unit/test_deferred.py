"""deferred.defer: a module imported on its first use, in fresh interpreters."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import textwrap

ROOT = pathlib.Path(__file__).resolve().parents[2]


def python(code: str, *paths: pathlib.Path) -> str:
    path = ":".join(str(p) for p in (ROOT, *paths))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=True,
                          capture_output=True, text=True, env={"PYTHONPATH": path}).stdout


def package(tmp_path: pathlib.Path) -> pathlib.Path:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "heavy.py").write_text("print('loaded')\nVALUE = 42\n")
    return tmp_path


def test_the_module_loads_on_first_use_for_every_way_of_importing_it(tmp_path) -> None:
    out = python("""
        from sdwatch import deferred
        deferred.defer("pkg.heavy")
        from pkg import heavy
        import pkg.heavy
        print("imported")
        print(heavy.VALUE, pkg.heavy.VALUE)
        import sys
        print(sys.modules["pkg.heavy"].VALUE, type(sys.modules["pkg.heavy"]).__name__)
    """, package(tmp_path))
    assert out.splitlines() == ["imported", "loaded", "42 42", "42 module"]


def test_a_first_use_through_the_parent_package_and_find_spec_work(tmp_path) -> None:
    out = python("""
        from sdwatch import deferred
        deferred.defer("pkg.heavy")
        import importlib.util
        print(importlib.util.find_spec("pkg.heavy").name)
        import pkg.heavy
        print(pkg.heavy.VALUE)
    """, package(tmp_path))
    assert out.splitlines() == ["pkg.heavy", "loaded", "42"]


def test_a_module_its_package_imports_is_not_deferred(tmp_path) -> None:
    (package(tmp_path) / "pkg" / "__init__.py").write_text("from . import heavy\n")
    out = python("""
        from sdwatch import deferred
        deferred.defer("pkg.heavy")
        import sys
        print(type(sys.modules["pkg.heavy"]).__name__, sys.modules["pkg.heavy"].VALUE)
    """, tmp_path)
    assert out.splitlines() == ["loaded", "module 42"]


def test_an_imported_module_or_a_missing_package_is_left_alone(tmp_path) -> None:
    out = python("""
        from sdwatch import deferred
        import pkg.heavy
        deferred.defer("pkg.heavy")
        deferred.defer("nosuchpackage.mod")
        import sys
        print(type(sys.modules["pkg.heavy"]).__name__, "nosuchpackage.mod" in sys.modules)
        try:
            import nosuchpackage.mod
        except ImportError as exc:
            print(type(exc).__name__)
    """, package(tmp_path))
    assert out.splitlines() == ["loaded", "module False", "ModuleNotFoundError"]


def test_pystemd_comes_without_lxml_until_pystemd_introspects() -> None:
    out = python("""
        def lxml_mapped():
            return any("lxml" in line and ".so" in line for line in open("/proc/self/maps"))
        import sdwatch.systemd
        import pystemd.dbuslib, pystemd.base
        print(lxml_mapped())
        element = pystemd.base.etree.fromstring(b"<node name='x'/>")
        print(element.get("name"), lxml_mapped())
    """)
    assert out.splitlines() == ["False", "x True"]
