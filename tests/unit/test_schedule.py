"""Schedules on a real event loop: fixed rate, no bunching after an overrun, overdue jobs."""

from __future__ import annotations

import asyncio

from sdwatch.schedule import Schedules


def test_runs_at_a_fixed_rate_and_records_lateness() -> None:
    starts: list[float] = []

    async def main() -> Schedules:
        s = Schedules()
        loop = asyncio.get_running_loop()

        async def job() -> None:
            starts.append(loop.time())
            await asyncio.sleep(0.01)  # work shorter than the interval: no drift from it

        task = asyncio.create_task(s.every("a", 0.05, 0.0, job))
        while len(starts) < 6:
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert "a" not in s.due  # a cancelled job no longer counts as due
        return s

    s = asyncio.run(main())
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert all(0.0 < g < 0.2 for g in gaps), gaps  # loose: a busy machine delays a wake-up
    # fixed rate: a late start does not push later runs back, so the average holds
    assert abs(sum(gaps) / len(gaps) - 0.05) < 0.015, gaps
    stats = s.lateness()
    assert stats["runs"] >= 6 and stats["late_p99_ms"] < 30


def test_overrun_skips_missed_runs_instead_of_bunching() -> None:
    starts: list[float] = []

    async def main() -> None:
        s = Schedules()
        loop = asyncio.get_running_loop()

        async def job() -> None:
            starts.append(loop.time())
            if len(starts) == 2:
                await asyncio.sleep(0.25)  # five intervals long

        task = asyncio.create_task(s.every("a", 0.05, 0.0, job))
        while len(starts) < 4:
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    assert starts[3] - starts[2] > 0.03  # not fired back to back to catch up


def test_a_stuck_job_is_overdue() -> None:
    async def main() -> list[str]:
        s = Schedules()
        stuck = asyncio.Event()

        async def job() -> None:
            await stuck.wait()  # never returns

        task = asyncio.create_task(s.every("stuck", 0.02, 0.01, job))
        await asyncio.sleep(0.2)
        loop = asyncio.get_running_loop()
        late = s.overdue(loop.time(), 0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return late

    assert asyncio.run(main()) == ["stuck"]


def count_timers(loop: asyncio.AbstractEventLoop) -> list[int]:
    """From now on, count the loop's call_at timers in the list's one item."""
    timers = [0]
    call_at = loop.call_at

    def counting_call_at(*args, **kwargs):  # type: ignore[no-untyped-def]
        timers[0] += 1
        return call_at(*args, **kwargs)

    loop.call_at = counting_call_at  # type: ignore[method-assign]
    return timers


def test_jobs_due_together_share_one_timer() -> None:
    async def main() -> tuple[int, int, int]:
        s = Schedules()
        loop = asyncio.get_running_loop()
        timers = count_timers(loop)
        runs = [0] * 20
        done = asyncio.Event()  # (no sleep of the test's own: every timer is the jobs')

        def job(i: int):  # type: ignore[no-untyped-def]
            async def run() -> None:
                runs[i] += 1
                if min(runs) >= 5:
                    done.set()
            return run

        tasks = [asyncio.create_task(s.every(f"j{i}", 0.05, 0.0, job(i))) for i in range(20)]
        await done.wait()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return timers[0], sum(runs), len(s._waiting)

    timers, runs, waiting = asyncio.run(main())
    assert runs >= 100
    # the first runs of 20 jobs fall on one or two points of the grid: a timer per point,
    # not per run
    assert timers <= 2 * runs / 20 + 2, (timers, runs)
    assert waiting <= 2  # nothing is kept for times that passed


def test_a_cancelled_job_does_not_stop_those_due_with_it() -> None:
    async def main() -> int:
        s = Schedules()
        runs = {"a": 0, "b": 0}

        def job(name: str):  # type: ignore[no-untyped-def]
            async def run() -> None:
                runs[name] += 1
            return run

        a = asyncio.create_task(s.every("a", 0.05, 0.0, job("a")))
        b = asyncio.create_task(s.every("b", 0.05, 0.0, job("b")))
        while runs["a"] < 1 or runs["b"] < 1:
            await asyncio.sleep(0.005)
        a.cancel()
        await asyncio.gather(a, return_exceptions=True)
        before = runs["b"]
        while runs["b"] < before + 3:
            await asyncio.sleep(0.005)
        b.cancel()
        await asyncio.gather(b, return_exceptions=True)
        return runs["b"] - before

    assert asyncio.run(main()) >= 3


def test_until_shares_the_timer_of_jobs_due_then() -> None:
    async def main() -> tuple[int, int, float]:
        s = Schedules()
        loop = asyncio.get_running_loop()
        woken: list[float] = []
        at = loop.time() + 0.05
        waiter = asyncio.create_task(s.until(at, loop))  # a job's wait, as every() makes it
        await asyncio.sleep(0)
        timers = count_timers(loop)
        await s.until(at)
        woken.append(loop.time())
        await waiter
        shared = timers[0]
        await s.until(loop.time() + 0.01)  # due alone: a timer of its own
        return shared, timers[0], woken[0] - at

    shared, timers, late = asyncio.run(main())
    assert shared == 0 and timers == 1
    assert late >= 0
