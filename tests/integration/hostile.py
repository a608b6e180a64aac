"""Hostile servers for probe tests, run as a subprocess so the test process's fds and threads
count only the probing side.  Prints one JSON line {behaviour: port} once all listen on
127.0.0.1 and on DIR/<behaviour>.sock, then serves until stdin closes.  Usage: hostile.py DIR

The mysql_auth_* servers greet, read the client's handshake response, answer it with an
authentication request that a careful client refuses, then answer every further packet with
OK; DIR/<behaviour>.<n>.in receives all the bytes a connection got from its client in plain
text, and DIR/<behaviour>.<n>.tls what it got inside TLS (mysql_auth_tls_cleartext, which
upgrades to TLS with DIR/cert.pem, for 127.0.0.1, when the client asks).

Behaviours: silence (accept, say nothing), garbage (random bytes), close (close at once),
drip (one byte per second of an HTTP reply), huge (HTTP 200 with an endless body),
headers (endless header lines), ssh (an SSH banner), mysql_error (a MySQL error packet),
mysql_mute (a MySQL greeting, then silence), reset (RST on accept), redis_drip (+PONG one
byte per second), redis_loading (-LOADING), pg_starting / pg_too_many / pg_no_role (a
PostgreSQL error 57P03 / 53300 / 28000 after the startup message), pg_drip (an
authentication request one byte per second), mysql_split (a MySQL greeting written in
pieces), mysql_auth_* (see above).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import socket
import ssl
import struct
import sys
import threading
import time
from pathlib import Path

from servers import make_cert  # this directory: run as a script

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


SSL, PLUGIN_AUTH = 0x800, 0x80000
MYSQL_OK = b"\x00\x00\x00\x02\x00\x00\x00"
SALT = bytes(range(65, 85))
# behaviour: (greeting plugin, capabilities beyond the basic ones, answer to the handshake)
MYSQL_AUTH = {
    "mysql_auth_cleartext": ("mysql_native_password", PLUGIN_AUTH,
                             b"\xfemysql_clear_password\x00"),
    "mysql_auth_old_password": ("mysql_native_password", PLUGIN_AUTH,
                                b"\xfemysql_old_password\x00" + SALT[:8] + b"\x00"),
    "mysql_auth_pre41": ("", 0, b"\xfe"),
    "mysql_auth_dialog": ("mysql_native_password", PLUGIN_AUTH, b"\xfedialog\x00\x04Password: "),
    "mysql_auth_sha256": ("mysql_native_password", PLUGIN_AUTH,
                          b"\xfesha256_password\x00" + SALT + b"\x00"),
    "mysql_auth_sha2_full": ("caching_sha2_password", PLUGIN_AUTH, b"\x01\x04"),
    # claims TLS, but asks for the password before any TLS was set up
    "mysql_auth_tls_claim": ("mysql_native_password", PLUGIN_AUTH | SSL,
                             b"\xfemysql_clear_password\x00"),
    # offers no TLS (stripped from the greeting) and asks for the password
    "mysql_auth_no_tls": ("mysql_native_password", PLUGIN_AUTH, b"\xfemysql_clear_password\x00"),
    # TLS when the client asks, then asks for the password inside it
    "mysql_auth_tls_cleartext": ("mysql_native_password", PLUGIN_AUTH | SSL,
                                 b"\xfemysql_clear_password\x00"),
}


def mysql_greeting(plugin: str, extra_caps: int) -> bytes:
    """A protocol-10 greeting: protocol 4.1, secure connection, and ``extra_caps``."""
    caps = 0x0200 | 0x8000 | 0x0001 | 0x2000 | extra_caps
    return (b"\x0a" + b"8.0.99-hostile\x00" + struct.pack("<I", 7) + SALT[:8] + b"\x00"
            + struct.pack("<HBHHB", caps & 0xFFFF, 0x21, 2, caps >> 16, 21) + bytes(10)
            + SALT[8:] + b"\x00" + plugin.encode() + b"\x00")


def mysql_packet(seq: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "little") + bytes([seq & 0xFF]) + payload


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError(data)
        data += chunk
    return data


def read_mysql_packet(sock: socket.socket, received: bytearray) -> int:
    """Read one client packet into ``received``; return its sequence id."""
    header = recv_exactly(sock, 4)
    received += header
    received += recv_exactly(sock, int.from_bytes(header[:3], "little"))
    return header[3]


def answer_with_ok(sock: socket.socket, received: bytearray) -> None:
    """Answer every client packet with OK until the client goes away."""
    while True:
        seq = read_mysql_packet(sock, received)
        sock.sendall(mysql_packet(seq + 1, MYSQL_OK))


def mysql_split(sock: socket.socket) -> None:
    """A greeting in three writes: two header bytes, two more, then the payload."""
    greeting = mysql_packet(0, mysql_greeting("mysql_native_password", PLUGIN_AUTH))
    for piece in (greeting[:2], greeting[2:4], greeting[4:]):
        sock.sendall(piece)
        time.sleep(0.05)  # the behaviour under test, not synchronisation
    answer_with_ok(sock, bytearray())


def mysql_auth(name: str):
    """Blocking sockets in a thread, not asyncio streams: a stream reads ahead, and would
    swallow the TLS ClientHello that follows the SSL request."""
    plugin, caps, answer = MYSQL_AUTH[name]

    def handler(sock: socket.socket) -> None:
        plain, inside = bytearray(), bytearray()
        received = plain
        try:
            sock.sendall(mysql_packet(0, mysql_greeting(plugin, caps)))
            seq = read_mysql_packet(sock, received)  # the handshake response
            if len(plain) == 4 + 32 and caps & SSL:  # an SSL request: upgrade, read again
                sock = TLS.wrap_socket(sock, server_side=True)
                received = inside
                seq = read_mysql_packet(sock, received)
            sock.sendall(mysql_packet(seq + 1, answer))
            answer_with_ok(sock, received)
        except EOFError as exc:
            received += exc.args[0]
        finally:
            record(name, bytes(plain), bytes(inside))
    handler.__name__ = name
    return handler


def serve_threaded(listener: socket.socket, handler) -> None:
    """Accept forever; each connection in a thread of its own, closed after the handler."""
    def one(conn: socket.socket) -> None:
        with conn:
            try:
                handler(conn)
            except OSError:
                pass
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=one, args=(conn,), daemon=True).start()


RECORDS = Path()
TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
_serial = itertools.count()


def record(name: str, plain: bytes, inside: bytes) -> None:
    """Write what a connection received, the .in file last (the tests wait for it)."""
    base = f"{name}.{next(_serial)}"
    (RECORDS / f"{base}.tls").write_bytes(inside)
    (RECORDS / f"{base}.tmp").write_bytes(plain)
    (RECORDS / f"{base}.tmp").rename(RECORDS / f"{base}.in")


async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


BEHAVIOURS = [silence, garbage, close, drip, huge, headers, ssh, mysql_error, mysql_mute, reset,
              redis_drip, redis_loading, pg_starting, pg_too_many, pg_no_role, pg_drip]
THREADED = [mysql_split, *map(mysql_auth, MYSQL_AUTH)]


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
    global RECORDS
    RECORDS = Path(sys.argv[1])
    TLS.load_cert_chain(*make_cert(RECORDS))
    servers = {}
    for handler in BEHAVIOURS:
        servers[handler.__name__] = await asyncio.start_server(
            serve(handler), "127.0.0.1", 0, backlog=1024)
        await asyncio.start_unix_server(serve(handler), RECORDS / f"{handler.__name__}.sock")
    ports = {name: s.sockets[0].getsockname()[1] for name, s in servers.items()}
    for handler in THREADED:
        tcp = socket.create_server(("127.0.0.1", 0), backlog=128)
        unix = socket.create_server(str(RECORDS / f"{handler.__name__}.sock"),
                                    family=socket.AF_UNIX, backlog=128)
        for listener in (tcp, unix):
            threading.Thread(target=serve_threaded, args=(listener, handler),
                             daemon=True).start()
        ports[handler.__name__] = tcp.getsockname()[1]
    print(json.dumps(ports), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # serve until the test closes stdin


if __name__ == "__main__":
    asyncio.run(main())
