"""Which files make up the configuration, and their identity, with nothing but ``os``.

config.load reads these files; ``sdwatch status`` uses the same list to ask the running daemon
whether it loaded exactly them (``identity``) and where its socket is (``runtime_dir``),
without importing the configuration's machinery (tomllib, dataclasses: ~15 ms).
"""

from __future__ import annotations

import os

DEFAULT_PATH = "/etc/sdwatch/sdwatch.toml"
ENV_VAR = "SDWATCH_CONFIG"
RUNTIME_DIR = "/run/sdwatch"  # the default of [sdwatch] runtime_dir


def main_path(path: str | None = None) -> tuple[str, bool]:
    """Return the main file's name as given (``path``, $SDWATCH_CONFIG or the default) and
    whether it was named explicitly."""
    explicit = path or os.environ.get(ENV_VAR)
    return explicit or DEFAULT_PATH, bool(explicit)


def config_paths(path: str | None = None) -> list[str]:
    """Return the files that make up the configuration, main file first, existing ones only.

    ``path`` may name the main file or the directory holding sdwatch.toml and conf.d/."""
    main = main_path(path)[0]
    if os.path.isdir(main):
        main = os.path.join(main, "sdwatch.toml")
    found = [main] if os.path.isfile(main) else []
    conf_d = os.path.join(os.path.dirname(main), "conf.d")
    try:
        names = os.listdir(conf_d)
    except OSError:
        names = []
    # what glob's "*.toml" matches: not hidden, any kind of entry (a directory is an error later)
    found += sorted(os.path.join(conf_d, n) for n in names
                    if n.endswith(".toml") and not n.startswith("."))
    return found


def stamp(st: os.stat_result) -> str:
    """One file's identity: which file it is and when it last changed (any write or rename
    changes it)."""
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def identity(stamps: list[str]) -> str:
    """The identity of a whole configuration: its files' stamps in order (header-safe ASCII)."""
    return ",".join(stamps) or "none"


def identity_on_disk(files: list[str]) -> str:
    """The identity of ``files`` as they are now; raise OSError when one cannot be read."""
    return identity([stamp(os.stat(f)) for f in files])


def runtime_dir(files: list[str]) -> str | None:
    """Given the config files, return [sdwatch] runtime_dir, or None when it cannot be read
    (a file that is not valid TOML: config.load will say why).

    A wrong answer only costs time: a daemon answers status only for the very files it
    loaded, so it listens where they say (identity)."""
    texts = []
    for file in files:
        try:
            with open(file, "rb") as f:
                texts.append(f.read())
        except OSError:
            return None
    found = RUNTIME_DIR
    for text in texts:  # later files override, as in config.load
        if b"runtime_dir" not in text:
            # an escaped key ("runtime\u005fdir") could still set it: see above
            continue
        value = _scan(text) if b"\"\"\"" not in text and b"'''" not in text else None
        if value is None:
            value = _toml_runtime_dir(text)
        if value is None:
            return None
        found = value or found
    return found


def _scan(text: bytes) -> str | None:
    """runtime_dir from the plain lines people write ("" when unset); None when a line
    that mentions it has another shape (tomllib decides then)."""
    table, value = "", ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith(b"["):
            table = line.split(b"#", 1)[0].strip().decode("utf-8", "replace").replace(" ", "")
            continue
        if b"runtime_dir" not in line or line.startswith(b"#"):
            continue
        key, sep, rest = line.partition(b"=")
        key, rest = key.strip().replace(b" ", b""), rest.strip()
        if not sep or (table, key) not in (("[sdwatch]", b"runtime_dir"),
                                           ("", b"sdwatch.runtime_dir")):
            if key.endswith(b"runtime_dir") or table in ("[sdwatch]", ""):
                return None  # a shape not read here
            continue  # e.g. a probe's path that mentions it
        quote = rest[:1]
        end = rest.find(quote, 1) if quote in (b'"', b"'") else -1
        tail = rest[end + 1:].strip() if end > 0 else b"x"
        if end < 0 or b"\\" in rest[:end] or (tail and not tail.startswith(b"#")):
            return None
        value = rest[1:end].decode()
    return value


def _toml_runtime_dir(text: bytes) -> str | None:
    import tomllib

    try:
        table = tomllib.loads(text.decode()).get("sdwatch", {})
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    value = table.get("runtime_dir", "") if isinstance(table, dict) else ""
    return value if isinstance(value, str) else None
