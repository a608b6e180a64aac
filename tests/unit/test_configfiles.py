"""Which files make up the configuration, their identity, and runtime_dir read without the
config's machinery: each answer checked against config.load's own."""

from __future__ import annotations

import glob
import os
import pathlib

import pytest

from sdwatch import configfiles
from sdwatch.config import load


def test_config_paths_are_globs_files_in_order(tmp_path: pathlib.Path) -> None:
    (tmp_path / "sdwatch.toml").write_text("")
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()
    for name in ("b.toml", "a.toml", ".hidden.toml", "c.toml.bak", "d.conf"):
        (conf_d / name).write_text("")
    expected = [str(tmp_path / "sdwatch.toml"),
                *sorted(glob.glob(os.path.join(str(conf_d), "*.toml")))]
    assert configfiles.config_paths(str(tmp_path)) == expected
    assert configfiles.config_paths(str(tmp_path / "sdwatch.toml")) == expected
    assert [os.path.basename(p) for p in expected] == ["sdwatch.toml", "a.toml", "b.toml"]


def test_main_path_explicit_or_default(monkeypatch) -> None:
    monkeypatch.delenv("SDWATCH_CONFIG", raising=False)
    assert configfiles.main_path() == ("/etc/sdwatch/sdwatch.toml", False)
    monkeypatch.setenv("SDWATCH_CONFIG", "/x/s.toml")
    assert configfiles.main_path() == ("/x/s.toml", True)
    assert configfiles.main_path("/y.toml") == ("/y.toml", True)


def test_identity_is_what_load_read_and_changes_with_the_files(tmp_path: pathlib.Path) -> None:
    cfg = tmp_path / "sdwatch.toml"
    cfg.write_text('[unit."a.service"]\n')
    files = configfiles.config_paths(str(cfg))
    loaded = load(str(cfg)).identity
    assert loaded == configfiles.identity_on_disk(files) != ""
    cfg.write_text('[unit."b.service"]\n')  # edited in place
    assert configfiles.identity_on_disk(files) != loaded
    again = load(str(cfg)).identity
    new = tmp_path / "new.toml"
    new.write_text('[unit."b.service"]\n')
    new.replace(cfg)  # replaced by a rename, same size
    assert configfiles.identity_on_disk(files) != again
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "x.toml").write_text("")  # a file more
    now = configfiles.identity_on_disk(configfiles.config_paths(str(cfg)))
    assert now != again and now == load(str(cfg)).identity and now.count(",") == 1


@pytest.mark.parametrize("text", [
    "",
    '[unit."a.service"]\n',
    '[sdwatch]\nruntime_dir = "/run/elsewhere"\n',
    "[sdwatch]\nruntime_dir='/run/lit' # a comment\ninterval = \"1s\"\n",
    '[ sdwatch ]\n  runtime_dir  =  "/run/spaced"\n',
    'sdwatch.runtime_dir = "/run/dotted"\n',
    'sdwatch = { runtime_dir = "/run/inline" }\n',
    '[sdwatch]\nruntime_dir = "/run/esc\\u0061ped"\n',
    '[sdwatch]\n"runtime_dir" = "/run/quoted"\n',
    '[sdwatch]\ninterval = "1s"\n[unit."a.service"]\nprobe = [{ kind = "file", '
    'path = "/var/runtime_dir/beat" }]\n',
    '[unit."a.service"]\nprobe = [\n  { kind = "file", path = "/x" },\n]\n[sdwatch]\n'
    'runtime_dir = "/run/after"\n',
    '[sdwatch]\nruntime_dir = """/run/multi"""\n',
    '# runtime_dir = "/run/commented"\n[sdwatch]\n',
])
def test_runtime_dir_is_what_load_reads(tmp_path: pathlib.Path, text: str) -> None:
    cfg = tmp_path / "sdwatch.toml"
    cfg.write_text(text)
    assert configfiles.runtime_dir([str(cfg)]) == load(str(cfg)).settings.runtime_dir


def test_runtime_dir_of_a_later_file_wins_and_unreadable_is_none(tmp_path: pathlib.Path) -> None:
    main, extra = tmp_path / "sdwatch.toml", tmp_path / "conf.d" / "z.toml"
    extra.parent.mkdir()
    main.write_text('[sdwatch]\nruntime_dir = "/run/first"\n')
    extra.write_text('[sdwatch]\nruntime_dir = "/run/second"\n')
    files = configfiles.config_paths(str(main))
    assert configfiles.runtime_dir(files) == load(str(main)).settings.runtime_dir == "/run/second"
    # not TOML: no answer (config.load names the problem); a wrong answer would only cost
    # time, as no daemon answers for files it did not load (test_serve, test_report)
    extra.write_text('[sdwatch]\nruntime_dir = "/run/x\n')
    assert configfiles.runtime_dir(files) is None
    extra.unlink()
    assert configfiles.runtime_dir(files) is None
