"""Blocking work in a thread of its own, for probes and alert channels: cancellable, and no
thread outlives the attempt."""

from __future__ import annotations

import threading
from typing import Callable, TypeVar

T = TypeVar("T")


async def in_thread(fn: Callable[[], T], interrupt: Callable[[], None]) -> T:
    """Given a blocking ``fn``, run it in a thread of its own and return its result.

    On cancellation call ``interrupt`` (e.g. shut the socket ``fn`` blocks on), then wait
    for the thread to end before re-raising, so no thread outlives the attempt.  A thread
    of its own, not the loop's executor, because pool threads would linger after the probe.
    """
    import asyncio
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(value: T | None, error: BaseException | None) -> None:
        if done.done():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(value)  # type: ignore[arg-type]

    def target() -> None:
        try:
            value = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
            loop.call_soon_threadsafe(settle, None, exc)
        else:
            loop.call_soon_threadsafe(settle, value, None)

    thread = threading.Thread(target=target, name="sdwatch-probe", daemon=True)
    thread.start()
    try:
        return await asyncio.shield(done)
    except asyncio.CancelledError:
        interrupt()
        try:
            await done
        except BaseException:  # noqa: BLE001 - the attempt is over; only its end matters
            pass
        raise
    finally:
        # The thread has posted its result and is returning; join so callers see it gone.
        if not thread.is_alive() or done.done():
            thread.join(timeout=1.0)
