"""Hostile servers for probe tests, run as a subprocess so the test process's fds and threads
count only the probing side.  Prints one JSON line {behaviour: port} once all listen on
127.0.0.1, then serves until stdin closes.

Behaviours: silence (accept, say nothing), garbage (random bytes), close (close at once),
drip (one byte per second of an HTTP reply), huge (HTTP 200 with an endless body),
headers (endless header lines), ssh (an SSH banner), mysql_error (a MySQL error packet),
mysql_mute (a MySQL greeting, then silence), reset (RST on accept), redis_drip (+PONG one
byte per second), redis_loading (-LOADING), pg_starting / pg_too_many / pg_no_role (a
PostgreSQL error 57P03 / 53300 / 28000 after the startup message), pg_drip (an
authentication request one byte per second).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import sys

HTTP_OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


async def silence(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()  # until the client goes away


async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"\x00\xfe" + os.urandom(254))
    await reader.read()


async def close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    pass  # closed by serve()


async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    for byte in HTTP_OK:
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.sleep(1.0)  # the behaviour under test, not synchronisation


async def huge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1099511627776\r\n\r\n")
    block = b"y" * 65536
    while True:
        writer.write(block)
        await writer.drain()


async def headers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\n")
    while True:
        writer.write(b"X-Filler: " + b"z" * 1000 + b"\r\n")
        await writer.drain()


async def ssh(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n")
    await reader.read()


async def mysql_error(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    payload = b"\xff" + struct.pack("<H", 1040) + b"Too many connections"
    writer.write(len(payload).to_bytes(3, "little") + b"\x00" + payload)
    await reader.read()


async def mysql_mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A valid SphinxQL-style greeting, then silence: a login blocks waiting for the answer."""
    payload = (b"\x0a" + b"2.2.11-id64-release\x00" + b"\x01\x00\x00\x00" + bytes(range(1, 9))
               + b"\x00" + b"\x08\x82" + b"\x21" + b"\x02\x00" + bytes(13)
               + bytes(range(1, 13)) + b"\x00")
    writer.write(len(payload).to_bytes(3, "little") + b"\x00" + payload)
    await reader.read()


async def _drip_bytes(writer: asyncio.StreamWriter, data: bytes) -> None:
    for byte in data:
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.sleep(1.0)  # the behaviour under test, not synchronisation


async def redis_drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(1)
    await _drip_bytes(writer, b"+PONG\r\n")


async def redis_loading(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(1)
    writer.write(b"-LOADING Redis is loading the dataset in memory\r\n")
    await reader.read()


def _pg_error(name: str, code: str, message: str):
    """A PostgreSQL server answering the startup message with an error."""
    body = b"SFATAL\0C" + code.encode() + b"\0M" + message.encode() + b"\0\0"

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.write(b"E" + struct.pack(">I", len(body) + 4) + body)
        await reader.read()
    handler.__name__ = name
    return handler


pg_starting = _pg_error("pg_starting", "57P03", "the database system is starting up")
pg_too_many = _pg_error("pg_too_many", "53300", "sorry, too many clients already")
pg_no_role = _pg_error("pg_no_role", "28000", 'role "sdwatch" does not exist')


async def pg_drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(1)
    await _drip_bytes(writer, b"R\x00\x00\x00\x08\x00\x00\x00\x0a")


async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


BEHAVIOURS = [silence, garbage, close, drip, huge, headers, ssh, mysql_error, mysql_mute, reset,
              redis_drip, redis_loading, pg_starting, pg_too_many, pg_no_role, pg_drip]


def serve(handler):
    async def wrapped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()
    return wrapped


async def main() -> None:
    servers = {}
    for handler in BEHAVIOURS:
        servers[handler.__name__] = await asyncio.start_server(
            serve(handler), "127.0.0.1", 0, backlog=1024)
    ports = {name: s.sockets[0].getsockname()[1] for name, s in servers.items()}
    print(json.dumps(ports), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # serve until the test closes stdin


if __name__ == "__main__":
    asyncio.run(main())
