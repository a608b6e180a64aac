"""sdwatch.unitinfo: systemd's property values, as the bus gives them, into sdwatch's records."""

from __future__ import annotations

import pytest

from sdwatch.unitinfo import (
    Change,
    UnitSummary,
    brief_view,
    change_from_signal,
    info_from_props,
    props_to_read,
    states_only,
    summary_from_row,
)

UNSET = (1 << 64) - 1
UNIT = {"Id": b"web.service", "Description": b"Web", "LoadState": b"loaded",
        "ActiveState": b"active", "SubState": b"running", "UnitFileState": b"enabled",
        "ActiveEnterTimestamp": 1_700_000_000_000_000, "InvocationID": bytes(range(16)),
        "ActiveEnterTimestampMonotonic": 12_345}
SERVICE = {"MainPID": 42, "ControlGroup": b"/system.slice/web.service", "NRestarts": 2,
           "Result": b"success", "ExecMainStartTimestamp": 1_700_000_000_000_001,
           "MemoryCurrent": 1 << 20, "TasksCurrent": UNSET, "CPUUsageNSec": 7,
           "ExecMainCode": 0, "ExecMainStatus": 0, "Type": b"notify"}


def names(props: tuple[tuple[str, bytes], ...]) -> list[str]:
    return [p for p, _ in props]


def test_info_from_props_decodes_and_leaves_unset_accounting_none() -> None:
    info = info_from_props(UNIT, SERVICE)
    assert (info.id, info.description, info.active_state, info.unit_file_state) == (
        "web.service", "Web", "active", "enabled")
    assert (info.main_pid, info.control_group, info.n_restarts, info.result) == (
        42, "/system.slice/web.service", 2, "success")
    assert (info.memory_current, info.tasks_current, info.cpu_usage_nsec) == (1 << 20, None, 7)
    assert info.invocation_id == "000102030405060708090a0b0c0d0e0f"
    assert (info.active_enter_monotonic, info.service_type, info.type) == (
        12_345, "notify", "service")


def test_info_from_props_without_type_properties_gives_blanks() -> None:
    unit = {k: UNIT[k] for k in ("Id", "Description", "LoadState", "ActiveState", "SubState")}
    info = info_from_props({**unit, "Id": b"x.target"}, {})
    assert info == states_only(UnitSummary("x.target", "Web", "loaded", "active", "running"))
    assert info.memory_current is None and info.type == "target"


def test_summary_from_row_decodes_the_first_five_fields() -> None:
    row = (b"a.service", b"A", b"loaded", b"failed", b"failed", b"", b"/org/x", 0, b"", b"/")
    assert summary_from_row(row) == UnitSummary("a.service", "A", "loaded", "failed", "failed")


@pytest.mark.parametrize(("changed", "expected"), [
    ({}, Change("u.service")),
    ({b"ActiveState": b"failed", b"SubState": b"failed", b"Result": b"exit-code"},
     Change("u.service", active_state="failed", sub_state="failed", result="exit-code")),
    ({b"MainPID": 7, b"Job": (0, b"/")}, Change("u.service", main_pid=7, job=False)),
    ({b"Job": (31, b"/org/freedesktop/systemd1/job/31"),
      b"ActiveEnterTimestampMonotonic": 99}, Change("u.service", job=True,
                                                    active_enter_monotonic=99)),
])
def test_change_from_signal_sets_only_what_the_signal_carried(
        changed: dict[bytes, object], expected: Change) -> None:
    assert change_from_signal("u.service", changed) == expected


def test_props_to_read_full_read_of_a_service_reads_everything() -> None:
    unit, own = props_to_read("service", brief=False, started=False, summary_known=False)
    assert names(unit)[:5] == ["Id", "Description", "LoadState", "ActiveState", "SubState"]
    assert set(names(own)) == set(SERVICE)


def test_props_to_read_brief_skips_what_the_cgroup_tells() -> None:
    unit, own = props_to_read("service", brief=True, started=False, summary_known=True)
    assert names(unit) == ["ActiveEnterTimestamp"]
    assert set(names(own)) == {"MainPID", "ControlGroup", "NRestarts", "Result"}


def test_props_to_read_started_keeps_the_start_and_type_in_a_brief_read() -> None:
    unit, own = props_to_read("service", brief=True, started=True, summary_known=True)
    assert names(unit) == ["ActiveEnterTimestamp", "ActiveEnterTimestampMonotonic"]
    assert "Type" in names(own)


@pytest.mark.parametrize(("kind", "own"), [
    ("target", set()),
    ("slice", {"ControlGroup", "MemoryCurrent", "TasksCurrent", "CPUUsageNSec"}),
    ("mount", {"Result", "Type", "ControlGroup", "MemoryCurrent", "TasksCurrent",
               "CPUUsageNSec"}),
])
def test_props_to_read_asks_each_type_only_what_it_has(kind: str, own: set[str]) -> None:
    assert set(names(props_to_read(kind, False, False, False)[1])) == own


def test_brief_view_of_an_inactive_unit_is_its_states_only() -> None:
    info = info_from_props({**UNIT, "ActiveState": b"inactive", "SubState": b"dead"}, SERVICE)
    assert brief_view(info) == states_only(
        UnitSummary("web.service", "Web", "loaded", "inactive", "dead"))


def test_brief_view_of_a_running_unit_keeps_what_a_brief_read_reads() -> None:
    view = brief_view(info_from_props(UNIT, SERVICE))
    assert (view.main_pid, view.result, view.n_restarts, view.control_group) == (
        42, "success", 2, "/system.slice/web.service")
    assert (view.unit_file_state, view.memory_current, view.invocation_id,
            view.service_type, view.active_enter_monotonic) == ("", None, "", "", 0)
