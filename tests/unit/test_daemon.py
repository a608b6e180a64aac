"""The daemon's parts without a systemd: reloads run one at a time."""

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
