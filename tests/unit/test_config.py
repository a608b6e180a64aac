"""Config loading: one file per invalid config with its exact message (testdata/config/bad)."""

from __future__ import annotations

import pathlib

import pytest

from sdwatch.config import Action, ConfigError, config_paths, load
from sdwatch.probes import REGISTRY

DATA = pathlib.Path(__file__).parent / "testdata" / "config"
BAD = sorted((DATA / "bad").glob("*.toml"))


def _expectation(path: pathlib.Path) -> tuple[str, bool]:
    first = path.read_text().splitlines()[0]
    exact = first.startswith("# expect: ")
    text = first.split(": ", 1)[1]
    text = text.replace("{file}", str(path)).replace("{kinds}", ", ".join(sorted(REGISTRY)))
    return text, exact


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_load_bad_config_names_file_and_key(path: pathlib.Path) -> None:
    expected, exact = _expectation(path)
    with pytest.raises(ConfigError) as info:
        load(str(path))
    assert len(info.value.messages) == 1, info.value.messages
    if exact:
        assert info.value.messages[0] == expected
    else:
        assert info.value.messages[0].startswith(expected)


def test_load_good_config_builds_typed_values() -> None:
    cfg = load(str(DATA / "good" / "full.toml"))
    mc = cfg.units["memcached.service"]
    probe = mc.probes[0]
    assert (probe.kind, probe.name, probe.interval, probe.timeout) == ("tcp", "tcp", 1.0, 0.5)
    assert (probe.failures, probe.window, probe.recover) == (2, 3, 2)
    assert probe.spec.address == "127.0.0.1:11211"
    assert mc.memory.value == 2 << 30 and not mc.memory.relative
    assert mc.memory.for_cycles == 3 and mc.memory.then is Action.RESTART
    assert mc.cpu.value == 50.0 and mc.cpu.relative
    assert mc.tasks.value == 500
    assert (mc.restart_limit.restarts, mc.restart_limit.within, mc.restart_limit.rearm) == (
        3, 600.0, 3600.0)
    assert mc.kill_first and mc.grace == 10.0
    nginx = cfg.units["nginx.service"]
    assert nginx.memory.relative and nginx.memory.value == 80.0
    assert nginx.keep_running and nginx.grace == 30.0  # the [sdwatch] default
    assert cfg.settings.interval == 5.0 and cfg.settings.failures == 2
    assert not cfg.zero_config


def test_probe_defaults_come_from_settings(tmp_path: pathlib.Path) -> None:
    f = tmp_path / "sdwatch.toml"
    f.write_text('[sdwatch]\ninterval = "7s"\ntimeout = "3s"\nfailures = 4\n'
                 '[unit."a.service"]\nprobe = [{ kind = "tcp", address = "127.0.0.1:1" }]\n')
    p = load(str(f)).units["a.service"].probes[0]
    assert (p.interval, p.timeout, p.failures, p.window) == (7.0, 3.0, 4, 4)


def test_conf_d_files_are_merged_in_order(tmp_path: pathlib.Path) -> None:
    (tmp_path / "sdwatch.toml").write_text('[sdwatch]\ninterval = "7s"\n')
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "20-b.toml").write_text('[unit."b.service"]\n')
    (tmp_path / "conf.d" / "10-a.toml").write_text('[unit."a.service"]\n[sdwatch]\nfailures = 5\n')
    cfg = load(str(tmp_path / "sdwatch.toml"))
    assert list(cfg.units) == ["a.service", "b.service"]
    assert cfg.settings.interval == 7.0 and cfg.settings.failures == 5
    assert cfg.files == (str(tmp_path / "sdwatch.toml"), str(tmp_path / "conf.d" / "10-a.toml"),
                         str(tmp_path / "conf.d" / "20-b.toml"))


def test_unit_defined_twice_names_both_files(tmp_path: pathlib.Path) -> None:
    (tmp_path / "sdwatch.toml").write_text('[unit."a.service"]\n')
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "x.toml").write_text('[unit."a.service"]\n')
    with pytest.raises(ConfigError) as info:
        load(str(tmp_path / "sdwatch.toml"))
    assert info.value.messages == [
        f'{tmp_path}/conf.d/x.toml: unit."a.service": already defined in {tmp_path}/sdwatch.toml']


def test_every_problem_is_reported_not_just_the_first(tmp_path: pathlib.Path) -> None:
    f = tmp_path / "sdwatch.toml"
    f.write_text('[unit."a.service"]\nbogus = 1\n[unit."b.service"]\ngrace = "soon"\n')
    with pytest.raises(ConfigError) as info:
        load(str(f))
    assert len(info.value.messages) == 2
    assert all(m.startswith(f"{f}: unit.") for m in info.value.messages)


def test_no_config_file_is_zero_config(tmp_path: pathlib.Path, monkeypatch) -> None:
    monkeypatch.setattr("sdwatch.config.DEFAULT_PATH", str(tmp_path / "missing.toml"))
    monkeypatch.delenv("SDWATCH_CONFIG", raising=False)
    cfg = load()
    assert cfg.zero_config and cfg.units == {}


def test_explicit_missing_file_is_an_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(str(tmp_path / "nope.toml"))
    assert info.value.messages == [f"{tmp_path}/nope.toml: no such file"]


def test_env_var_names_the_config(tmp_path: pathlib.Path, monkeypatch) -> None:
    f = tmp_path / "x.toml"
    f.write_text('[unit."env.service"]\n')
    monkeypatch.setenv("SDWATCH_CONFIG", str(f))
    assert config_paths() == [str(f)]
    assert list(load().units) == ["env.service"]


def test_inherited_timeout_shrinks_to_a_short_interval(tmp_path: pathlib.Path) -> None:
    f = tmp_path / "sdwatch.toml"
    f.write_text('[unit."a.service"]\nprobe = [{ kind = "tcp", address = "127.0.0.1:1", '
                 'interval = "200ms" }]\n')
    p = load(str(f)).units["a.service"].probes[0]
    assert (p.interval, p.timeout) == (0.2, 0.2)


def test_password_file_readable_by_others_is_refused_at_load(tmp_path: pathlib.Path) -> None:
    secret = tmp_path / "mysql.pass"
    secret.write_text("hunter2-do-not-show\n")
    secret.chmod(0o640)
    cfg = tmp_path / "sdwatch.toml"
    cfg.write_text('[unit."mariadb.service"]\nprobe = [{ kind = "mysql", socket = "/run/x.sock", '
                   f'user = "sdwatch", password_file = "{secret}" }}]\n')
    with pytest.raises(ConfigError) as info:
        load(str(cfg))
    assert info.value.messages == [
        f'{cfg}: unit."mariadb.service".probe[0].password_file: password file {secret} is '
        f'readable by group or others (mode 0640); chmod 600 {secret}']
    assert "hunter2" not in str(info.value)
    secret.chmod(0o600)
    spec = load(str(cfg)).units["mariadb.service"].probes[0].spec
    assert "hunter2" not in repr(spec)


def test_a_file_without_units_is_zero_config_too(tmp_path: pathlib.Path) -> None:
    f = tmp_path / "sdwatch.toml"
    f.write_text('# all comments, as the packaged example\n[sdwatch]\ninterval = "5s"\n')
    cfg = load(str(f))
    assert cfg.zero_config and cfg.files == (str(f),) and cfg.settings.interval == 5.0


def test_directory_holding_a_config_is_read(tmp_path: pathlib.Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "a.toml").write_text('[unit."a.service"]\n')
    assert list(load(str(tmp_path)).units) == ["a.service"]


def test_config_path_that_is_a_directory_without_config_is_an_error(
        tmp_path: pathlib.Path, monkeypatch) -> None:
    (tmp_path / "sdwatch.toml").mkdir()  # e.g. a mkdir -p too many
    with pytest.raises(ConfigError) as info:
        load(str(tmp_path / "sdwatch.toml"))
    assert info.value.messages == [
        f"{tmp_path}/sdwatch.toml: a directory without sdwatch.toml or conf.d/*.toml"]
    monkeypatch.setattr("sdwatch.config.DEFAULT_PATH", str(tmp_path / "sdwatch.toml"))
    monkeypatch.delenv("SDWATCH_CONFIG", raising=False)
    with pytest.raises(ConfigError):
        load()
