"""The API's HTTP server against real clients, polite and hostile, on a real unix socket and a
loopback TCP port: every bad client is refused or cut off, nothing leaks, the loop keeps going."""

from __future__ import annotations

import asyncio
import os
import pathlib
import socket

import pytest
from leaks import open_fds

from sdwatch.serve import httpd
from sdwatch.serve.httpd import Request, Response, Server


def handler(req: Request) -> Response:
    who = f"uid={req.peer.uid}" if not req.peer.tcp else "tcp"
    return Response(200, f"{req.method} {req.path} {who} {req.query}".encode(), "text/plain")


async def serving(tmp: pathlib.Path) -> tuple[Server, str, int]:
    server = Server(handler)
    path = str(tmp / "api.sock")
    await server.listen_unix(path)
    _, port = await server.listen_tcp("127.0.0.1", 0)
    return server, path, port


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   data: bytes) -> bytes:
    writer.write(data)
    await writer.drain()
    return await asyncio.wait_for(reader.read(65536), 5)


def run(coro) -> None:
    asyncio.run(coro)


def test_get_over_unix_socket_knows_the_peer_and_keeps_alive(tmp_path: pathlib.Path) -> None:
    async def main() -> None:
        server, path, _ = await serving(tmp_path)
        assert oct(os.stat(path).st_mode & 0o777) == "0o660"
        reader, writer = await asyncio.open_unix_connection(path)
        first = await exchange(reader, writer, b"GET /a%20b?x=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert first.startswith(b"HTTP/1.1 200 ")
        assert f"GET /a b uid={os.getuid()} {{'x': '1'}}".encode() in first
        second = await exchange(reader, writer, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert second.startswith(b"HTTP/1.1 200 ") and second.endswith(b"\r\n\r\n")
        writer.close()
        await server.close()

    run(main())


def test_tcp_refuses_a_non_loopback_host(tmp_path: pathlib.Path) -> None:
    async def main() -> None:
        server, _, port = await serving(tmp_path)
        for host, code in ((b"evil.example.com", b"421"), (b"127.0.0.1:1", b"200"),
                           (b"localhost", b"200"), (b"[::1]:9", b"200"), (b"10.0.0.1", b"421"),
                           (b"127.0.0.1.evil.com", b"421")):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            answer = await exchange(reader, writer, b"GET / HTTP/1.1\r\nHost: " + host +
                                    b"\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 " + code), (host, answer)
            writer.close()
        await server.close()

    run(main())


@pytest.mark.parametrize(("data", "code"), [
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(200), b"400"),  # a TLS hello
    (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 40000 + b"\r\n\r\n", b"431"),
    (b"GET /" + b"a" * 40000 + b" HTTP/1.1\r\n\r\n", b"431"),
    (b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 999999\r\n\r\n", b"413"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", b"400"),
    (b"GET / HTTP/1.1\r\n\r\n", b"400"),  # HTTP/1.1 without Host
    (b"\r\n\r\n\r\n", b"400"),
])
def test_garbage_gets_an_error_and_the_door(tmp_path: pathlib.Path, data: bytes,
                                           code: bytes) -> None:
    async def main() -> None:
        server, path, _ = await serving(tmp_path)
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(data)
        answer = await asyncio.wait_for(reader.read(65536), 5)
        assert answer.startswith(b"HTTP/1.1 " + code), answer[:80]
        assert b"connection: close" in answer.lower()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed
        writer.close()
        await server.close()

    run(main())


def test_slow_headers_are_cut_off(tmp_path: pathlib.Path, monkeypatch) -> None:
    monkeypatch.setattr(httpd, "REQUEST_TIMEOUT", 0.5)

    async def main() -> None:
        server, path, _ = await serving(tmp_path)
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(b"GET / HTTP/1.1\r\n")
        loop = asyncio.get_running_loop()
        start = loop.time()
        # a trickle of header bytes does not buy more time: the deadline is per request
        for _ in range(40):
            if reader.at_eof():
                break
            writer.write(b"X")
            await asyncio.sleep(0.05)
            try:
                if await asyncio.wait_for(reader.read(1), 0.01) == b"":
                    break
            except TimeoutError:
                pass
        assert await asyncio.wait_for(reader.read(), 5) == b""
        assert loop.time() - start < 3  # cut off at the deadline, not after the trickle
        writer.close()
        await server.close()

    run(main())


def test_thousands_of_idle_connections_leak_nothing(tmp_path: pathlib.Path,
                                                    monkeypatch) -> None:
    monkeypatch.setattr(httpd, "REQUEST_TIMEOUT", 1.0)

    async def main() -> None:
        server, path, port = await serving(tmp_path)
        before = open_fds()
        ticks = 0

        async def ticker() -> None:  # stands for the daemon's schedule
            nonlocal ticks
            while True:
                await asyncio.sleep(0.05)
                ticks += 1

        tick_task = asyncio.get_running_loop().create_task(ticker())
        clients = []
        for i in range(2000):
            sock = socket.socket(socket.AF_UNIX if i % 2 else socket.AF_INET)
            sock.setblocking(False)
            try:
                await asyncio.get_running_loop().sock_connect(
                    sock, path if i % 2 else ("127.0.0.1", port))
            except OSError:
                sock.close()  # the backlog is full: refused, fine
                continue
            clients.append(sock)
        await asyncio.sleep(0.2)
        assert len(server.connections) <= httpd.MAX_CONNECTIONS
        assert server.refused > 0
        # idle clients cannot lock others out: a new request takes an idle one's place
        await asyncio.sleep(httpd.EVICT_AFTER)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert (await exchange(reader, writer, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                ).startswith(b"HTTP/1.1 200 ")
        writer.close()
        # every idle connection is closed by the server within the request deadline
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while server.connections and loop.time() < deadline:
            await asyncio.sleep(0.1)
        assert not server.connections
        for sock in clients:
            sock.close()
        await asyncio.sleep(0.1)
        # the server answers again, and holds no descriptor it did not hold before
        reader, writer = await asyncio.open_unix_connection(path)
        assert (await exchange(reader, writer, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                ).startswith(b"HTTP/1.1 200 ")
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(0.1)
        assert open_fds() <= before
        assert ticks > 10  # the loop kept running its other work meanwhile
        tick_task.cancel()
        await server.close()

    run(main())


def test_listen_unix_replaces_a_stale_socket_but_not_a_file(tmp_path: pathlib.Path) -> None:
    async def main() -> None:
        path = tmp_path / "api.sock"
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(str(path))
        stale.close()
        server = Server(handler)
        await server.listen_unix(str(path))
        await server.close()
        other = tmp_path / "file"
        other.write_text("mine")
        with pytest.raises(OSError, match="not a socket"):
            await Server(handler).listen_unix(str(other))
        assert other.read_text() == "mine"

    run(main())
