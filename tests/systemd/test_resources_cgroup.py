"""resources.py over a real cgroup: a unit of a thousand processes is read whole."""

from __future__ import annotations

from sdcheck import show, wait_for

from sdwatch import resources

PROCESSES = 1000
SPAWNER = ("TasksMax=infinity\n"
           f"ExecStart=/bin/sh -c 'for i in $(seq {PROCESSES}); do sleep infinity & done; wait'")


def test_cgroup_pids_of_a_unit_whose_cgroup_procs_spans_many_pages(make_unit) -> None:
    unit = make_unit(SPAWNER)
    group = show(unit, "ControlGroup")
    procs = f"{resources._hierarchy()[0]}/{group.lstrip('/')}/cgroup.procs"

    def listed() -> list[int]:
        with open(procs, "rb") as f:  # a Python file object reads to the end
            return [int(p) for p in f.read().split()]

    wait_for(lambda: len(listed()) == PROCESSES + 1, timeout=60, what="every sleep started")
    assert len(open(procs, "rb").read()) > 4096  # more than the page one read returns
    assert sorted(resources.cgroup_pids(group)) == sorted(listed())
    sample = resources.sample_unit(group, int(show(unit, "MainPID")), count_fds=False)
    assert sample.children == PROCESSES
