"""The daemon's parts without a systemd: reloads run one at a time, the ticker keeps the grid."""

from __future__ import annotations

import asyncio
import pathlib

from sdwatch.config import load
from sdwatch.daemon import Supervisor
from sdwatch.systemd import SystemdUnavailable

UNIT = "sdwatch-test-nothing.service"


def write_config(path: pathlib.Path, interval: str) -> None:
    path.write_text(f'[sdwatch]\nstate_dir = "{path.parent}/state"\n'
                    f'runtime_dir = "{path.parent}/run"\n'
                    f'[unit."{UNIT}"]\nprobe = [{{ kind = "exec", name = "p", '
                    f'command = ["/bin/true"], interval = "{interval}" }}]\n')


def test_two_reloads_run_one_after_the_other(tmp_path: pathlib.Path) -> None:
    conf = tmp_path / "sdwatch.toml"
    write_config(conf, "60s")
    cfg = load(str(conf))

    async def scenario() -> tuple[list[bool], int, int]:
        sup = Supervisor(cfg, str(conf))
        sup.actor.use(cfg)
        await sup.watcher.add([cfg.units[UNIT]], cfg.settings.interval, {})
        write_config(conf, "30s")  # the unit changed: a reload removes it and adds it again
        # two SIGHUPs in a row: the second reload must not see the first one half done
        results = await asyncio.gather(sup.reload(), sup.reload())
        live = [t for t in asyncio.all_tasks() if t.get_name() == f"{UNIT}/p" and not t.done()]
        watched = len(sup.watches[UNIT].tasks)
        await sup.watcher.stop()
        for task in (*live, *sup.background):
            task.cancel()
        await asyncio.gather(*live, *sup.background, return_exceptions=True)
        sup.actor.close()
        try:
            await sup.watcher.bus.close()
        except SystemdUnavailable:
            pass  # no systemd here: nothing to close
        return results, len(live), watched

    results, live, watched = asyncio.run(scenario())
    assert results == [True, True]
    assert (live, watched) == (1, 1)  # one schedule for the unit's one probe, none orphaned


def test_the_ticker_wakes_on_the_schedules_grid(tmp_path: pathlib.Path) -> None:
    """Whole seconds of loop time, where jobs due then wake the loop anyway."""
    conf = tmp_path / "sdwatch.toml"
    write_config(conf, "60s")
    cfg = load(str(conf))

    async def scenario() -> list[float]:
        sup = Supervisor(cfg, str(conf))
        waits: list[float] = []

        async def until(at: float) -> None:
            waits.append(at)
            if len(waits) == 3:
                raise asyncio.CancelledError
            await asyncio.sleep(0)

        sup.schedules.until = until  # type: ignore[method-assign]
        try:
            await sup._ticker()
        except asyncio.CancelledError:
            pass
        return waits

    waits = asyncio.run(scenario())
    assert all(at == int(at) for at in waits), waits
    assert waits[1] - waits[0] == waits[2] - waits[1] == 1.0
