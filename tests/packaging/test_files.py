"""The packaged files agree with the code: man pages and completion with the CLI, the example
config with the config loader, the unit file with what the daemon expects.

No systemd needed; debian/rules runs these at build time beside tests/unit.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import typer

from sdwatch import config
from sdwatch.cli import app

ROOT = Path(__file__).resolve().parents[2]
MAN1 = ROOT / "docs/man/sdwatch.1"
MAN5 = ROOT / "docs/man/sdwatch.toml.5"
COMPLETION = ROOT / "completion/sdwatch"
EXAMPLE = ROOT / "etc/sdwatch.toml"
UNIT = ROOT / "units/sdwatch.service"
# `run` is the daemon, documented and used by sdwatch.service; see test_documented_commands_exist
DAEMON = "run"


def cli_commands() -> dict[str, list[str]]:
    """Return every command of the CLI with its option strings (e.g. ["--json", "-c", ...])."""
    group = typer.main.get_command(app)
    out = {}
    for name, command in group.commands.items():
        # a group (sdwatch hook): its subcommands' options count as the command's
        commands = [command, *getattr(command, "commands", {}).values()]
        opts = ["--help"]
        for param in (p for c in commands for p in c.params):
            if getattr(param, "param_type_name", "") == "option":
                opts += [o for o in (*param.opts, *param.secondary_opts) if o not in opts]
        out[name] = opts
    return out


def test_subcommands_are_documented() -> None:
    group = typer.main.get_command(app)
    man, completion = man_text(MAN1), COMPLETION.read_text()
    for name, command in group.commands.items():
        for sub in getattr(command, "commands", {}):
            assert f".B sdwatch {name} {sub}" in man
            assert re.search(rf'compgen -W "[^"]*\b{sub}\b', completion), sub


def man_text(path: Path) -> str:
    """Return the roff source with the escapes that hide plain words removed (\\- and \\f.)."""
    text = path.read_text()
    return re.sub(r"\\f[BIRP]", "", text).replace("\\-", "-")


def man_commands() -> set[str]:
    """Return the commands listed under .SH COMMANDS in sdwatch(1)."""
    section = man_text(MAN1).split(".SH COMMANDS", 1)[1].split("\n.SH ", 1)[0]
    return set(re.findall(r"^\.TP\n\.B (\S+)$", section, re.M))


def completion_commands() -> set[str]:
    match = re.search(r'local commands="([^"]+)"', COMPLETION.read_text())
    assert match, "completion/sdwatch has no commands= line"
    return set(match.group(1).split())


def completion_options(command: str) -> set[str]:
    match = re.search(rf"^\s*(?:[\w-]+ \| )*{command}(?: \| [\w-]+)*\) opts=\"([^\"]+)\"",
                      COMPLETION.read_text(), re.M)
    return set(match.group(1).split()) if match else {"--help"}


def test_every_cli_command_is_in_the_man_page_and_the_completion() -> None:
    commands = set(cli_commands())
    assert commands <= man_commands(), "missing from sdwatch.1 COMMANDS"
    assert commands <= completion_commands(), "missing from completion/sdwatch"


def test_documented_commands_exist() -> None:
    commands = set(cli_commands())
    if DAEMON not in commands:
        pytest.skip("`sdwatch run` (the daemon) is not in the CLI yet")
    assert man_commands() <= commands
    assert completion_commands() <= commands


@pytest.mark.parametrize("command", sorted(cli_commands()))
def test_every_option_is_in_the_man_page_and_the_completion(command: str) -> None:
    opts = cli_commands()[command]
    man = man_text(MAN1)
    assert [o for o in opts if not re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", man)] == []
    assert set(opts) <= completion_options(command)


def test_every_subpackage_is_in_pyproject() -> None:
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
                 .get("packages", []))
    found = {str(p.parent.relative_to(ROOT)).replace("/", ".")
             for p in (ROOT / "sdwatch").rglob("__init__.py")}
    # a package missing from [tool.setuptools] packages is missing from the wheel and the .deb
    assert found - listed == set(), "add to [tool.setuptools] packages in pyproject.toml"


def test_completion_is_valid_bash() -> None:
    subprocess.run(["bash", "-n", str(COMPLETION)], check=True)


@pytest.mark.parametrize("page", [MAN1, MAN5], ids=lambda p: p.name)
def test_man_page_renders_without_warnings(page: Path) -> None:
    if shutil.which("man", path="/usr/bin:/bin") is None:
        pytest.skip("man is not installed (man-db)")
    r = subprocess.run(["man", "--warnings", "-l", "-Tutf8", "-Z", str(page)],
                       capture_output=True, text=True, env={"LC_ALL": "C.UTF-8",
                                                           "PATH": "/usr/bin:/bin"})
    assert (r.returncode, r.stderr) == (0, "")


def test_config_keys_are_in_the_config_man_page() -> None:
    man = man_text(MAN5)
    settings = [f.name for f in config.Settings.__dataclass_fields__.values()]
    unit_keys = [f.metadata.get("toml", f.name)
                 for f in config._UnitTable.__dataclass_fields__.values()]
    limit_keys = [f.metadata.get("toml", f.name) for f in config.Limit.__dataclass_fields__.values()
                  if f.init]
    restart_keys = list(config.RestartLimit.__dataclass_fields__)
    probe_keys = list(config._COMMON_PROBE_KEYS)
    missing = [k for k in settings + unit_keys + limit_keys + restart_keys + probe_keys
               if not re.search(rf"\.BR? {re.escape(k)}\b", man)]
    assert missing == []


def test_every_probe_kind_and_key_is_in_the_config_man_page() -> None:
    from sdwatch.probes import REGISTRY

    man = man_text(MAN5)
    for kind, entry in REGISTRY.items():
        section = man.split(f'.SS kind = \\(dq{kind}\\(dq', 1)
        assert len(section) == 2, f"no section for kind {kind!r}"
        text = section[1].split("\n.S", 1)[0]
        keys = [f.name for f in entry.spec.__dataclass_fields__.values() if f.init]
        assert [k for k in keys if not re.search(rf"\b{re.escape(k)}\b", text)] == [], kind


def test_shipped_example_configures_nothing() -> None:
    cfg = config.load(str(EXAMPLE))
    assert cfg.units == {}
    assert all(not line.strip() or line.lstrip().startswith("#")
               for line in EXAMPLE.read_text().splitlines())


def test_example_is_valid_once_uncommented(tmp_path: Path) -> None:
    # "#key = value" lines are configuration, "# text" lines are explanation
    text = re.sub(r"^#(?=[^\s#])", "", EXAMPLE.read_text(), flags=re.M)
    (tmp_path / "sdwatch.toml").write_text(text)
    cfg = config.load(str(tmp_path / "sdwatch.toml"))
    assert set(cfg.units) == {"nginx.service", "puma.service", "mariadb.service",
                              "memcached.service", "manticore.service", "delayed-job.service"}
    assert {p.kind for u in cfg.units.values() for p in u.probes} == {
        "http", "mysql", "memcached", "file"}


def unit_lines() -> list[str]:
    return UNIT.read_text().splitlines()


def unit_settings() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in unit_lines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


def test_unit_runs_the_daemon_the_way_it_expects() -> None:
    s = unit_settings()
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"]
    assert s["ExecStart"] == ["/usr/bin/sdwatch run"]
    assert s["ExecReload"] == ["/usr/bin/sdwatch reload --pid $MAINPID"]
    assert s["WatchdogSec"] == ["30s"] and s["Restart"] == ["always"]
    assert s["StateDirectory"] == ["sdwatch"] and s["RuntimeDirectory"] == ["sdwatch"]
    assert s["RuntimeDirectoryPreserve"] == ["yes"]
    assert config.Settings().state_dir == "/var/lib/sdwatch"
    assert config.Settings().runtime_dir == "/run/sdwatch"
    assert "ProtectProc" not in s or s["ProtectProc"] == ["default"]


def test_every_hardening_line_says_why() -> None:
    lines = unit_lines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# --- Hardening"))
    end = lines.index("[Install]")
    # a comment right above every setting; a repeated key (SystemCallFilter=) may share one
    unexplained = [line for prev, line in zip(lines[start:end - 1], lines[start + 1:end],
                                              strict=True)
                   if line and not line.startswith("#") and not prev.startswith("#")
                   and prev.split("=")[0] != line.split("=")[0]]
    assert unexplained == []
