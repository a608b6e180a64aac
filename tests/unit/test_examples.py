"""The fleet examples shipped in the .deb: Prometheus and Alertmanager accept them, and the
alert rules fire (and stay quiet) as their unit tests say."""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples" / "prometheus"


def tool(*argv: str) -> subprocess.CompletedProcess:
    if shutil.which(argv[0]) is None:
        pytest.skip(f"{argv[0]} is not installed (Debian: prometheus, prometheus-alertmanager)")
    return subprocess.run(argv, capture_output=True, text=True, cwd=EXAMPLES, timeout=60)


@pytest.mark.parametrize("argv", [
    ("promtool", "check", "rules", "sdwatch-rules.yml"),
    ("promtool", "test", "rules", "sdwatch-rules.test.yml"),
    ("promtool", "check", "config", "--syntax-only", "prometheus.yml"),
    ("amtool", "check-config", "alertmanager.yml"),
], ids=["check-rules", "test-rules", "check-config", "amtool"])
def test_example_is_accepted(argv: tuple[str, ...]) -> None:
    out = tool(*argv)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout + out.stderr


def test_rule_tests_can_fail(tmp_path: pathlib.Path) -> None:
    """The rule tests are not vacuous: a rule that never fires fails them."""
    rules = (EXAMPLES / "sdwatch-rules.yml").read_text()
    broken = rules.replace("sdwatch_unit_gave_up == 1", "sdwatch_unit_gave_up == 2")
    assert broken != rules
    (tmp_path / "sdwatch-rules.yml").write_text(broken)
    shutil.copy(EXAMPLES / "sdwatch-rules.test.yml", tmp_path)
    out = tool("promtool", "test", "rules", str(tmp_path / "sdwatch-rules.test.yml"))
    assert out.returncode != 0 and "SdwatchGaveUp" in out.stdout + out.stderr


def test_the_package_ships_the_examples() -> None:
    line = (EXAMPLES.parents[1] / "debian" / "sdwatch.examples").read_text().split()
    assert line == ["examples/prometheus/*"]
