"""SocketStream over a socket pair: reads that wait, the end of the stream, and a kept
("watched") socket that stays in the loop's selector between reads and leaves it on abort."""

from __future__ import annotations

import asyncio
import socket

import pytest

from sdwatch.probes.net import SocketStream


@pytest.mark.parametrize("watch", [False, True])
def test_reads_wait_for_data_then_see_the_end(watch: bool) -> None:
    async def exchange() -> tuple[bytes, bytes, bytes]:
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        stream = SocketStream(ours, 1024, watch=watch)
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, theirs.send, b"hello\nwor")
        loop.call_later(0.1, theirs.send, b"ld\n")
        first = await stream.readuntil(b"\n")
        second = await stream.readexactly(6)
        theirs.close()
        rest = await stream.read()
        stream.abort()
        return first, second, rest

    assert asyncio.run(exchange()) == (b"hello\n", b"world\n", b"")


def test_a_watched_stream_stays_in_the_selector_between_reads_and_leaves_on_abort() -> None:
    async def kept() -> None:
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        stream = SocketStream(ours, 1024, watch=True)
        loop = asyncio.get_running_loop()
        fd = ours.fileno()
        for _ in range(3):
            loop.call_later(0.02, theirs.send, b"x" * 4)
            assert await stream.readexactly(4) == b"xxxx"
            assert fd in loop._selector.get_map()  # (asyncio's own: no public view of it)
        theirs.send(b"late")  # while nobody reads: left in the kernel, not read into memory
        await asyncio.sleep(0.05)
        assert fd not in loop._selector.get_map()
        loop.call_later(0.02, theirs.send, b"!")
        assert await stream.readexactly(5) == b"late!"  # watched again for the wait
        assert fd in loop._selector.get_map()
        theirs.close()  # the peer goes away while nobody reads: noticed, no busy loop
        await asyncio.sleep(0.05)
        assert fd not in loop._selector.get_map()
        with pytest.raises(asyncio.IncompleteReadError):
            await stream.readexactly(4)
        stream.abort()

    asyncio.run(kept())


def test_a_watched_stream_kept_across_loops_reads_in_the_new_one() -> None:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    stream = SocketStream(ours, 1024, watch=True)

    async def once() -> bytes:
        asyncio.get_running_loop().call_later(0.02, theirs.send, b"ping")
        return await stream.readexactly(4)

    assert asyncio.run(once()) == b"ping"
    assert asyncio.run(once()) == b"ping"  # the first loop is closed by now
    stream.abort()
    theirs.close()
    assert ours.fileno() == -1
