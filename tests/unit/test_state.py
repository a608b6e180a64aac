"""Persistent state: atomic writes, round trip, corrupt files moved aside."""

from __future__ import annotations

import json
import os
import pathlib
import stat

import pytest

from sdwatch import state


def test_save_then_load_round_trips(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "state.json")
    units = {"memcached.service": {"restarts": [1.0, 2.0], "gave_up": False}}
    state.save(path, units)
    assert state.load(path) == units
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert json.loads(pathlib.Path(path).read_text())["schema"] == state.SCHEMA
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temp file left


def test_missing_file_is_empty_state(tmp_path: pathlib.Path) -> None:
    assert state.load(str(tmp_path / "none.json")) == {}


@pytest.mark.parametrize("content", ["{not json", "[]", '{"schema": "other/9", "units": {}}',
                                     '{"schema": "sdwatch.state/1", "units": []}', ""])
def test_corrupt_file_is_moved_aside_with_a_warning(tmp_path: pathlib.Path, content: str,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "state.json"
    path.write_text(content)
    assert state.load(str(path)) == {}
    assert not path.exists()
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("state.json.corrupt-")]
    assert len(aside) == 1 and aside[0].read_text() == content
    assert "moved aside" in caplog.text


def test_failed_write_keeps_the_old_file(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "state.json")
    state.save(path, {"a.service": {"n": 1}})
    with pytest.raises(TypeError):
        state.save(path, {"a.service": {"n": object()}})  # not JSON-serialisable
    assert state.load(path) == {"a.service": {"n": 1}}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]
