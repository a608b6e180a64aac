"""The stack suite: six real services, each Restart=no, watched by `sdwatch run` with the plain
config (tests/systemd/stack.py), faults one after another; every one must be recovered by
sdwatch alone, an admin's stop respected and nothing restarted while all is well."""

from __future__ import annotations

import os
import pathlib

import pytest
import stack


@pytest.fixture
def the_stack():
    stack.remove()  # leftovers of an interrupted run
    try:
        stack.install()
        stack.start_sdwatch()
        yield
    finally:
        keep = os.environ.get("SDWATCH_STACK_JOURNAL")  # where to keep sdwatch's journal
        if keep:
            pathlib.Path(keep).write_text(stack.journal())
        stack.remove()


def test_stack_recovers_every_fault_with_the_plain_config(the_stack, capsys) -> None:
    with capsys.disabled():
        print()
        done = stack.run_faults(lambda r: print(f"  {r.fault}: {r.unit} answering again "
                                                f"after {r.seconds:.2f}s ({r.path})"))
        print(stack.table(done))
    assert len(done) == 12
