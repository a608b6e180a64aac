"""Reading a service's facts from /proc: psutil's connections to listeners, a process's own
sockets, a process gone meanwhile."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections import namedtuple

from sdwatch import machine
from sdwatch.machine import Listener

Conn = namedtuple("Conn", "fd family type laddr raddr status")  # psutil's pconn fields
INET, INET6, UNIX = socket.AF_INET, socket.AF_INET6, socket.AF_UNIX
STREAM, DGRAM = socket.SOCK_STREAM, socket.SOCK_DGRAM


def test_listeners_of_keeps_listening_tcp_and_bound_stream_unix_sockets() -> None:
    addr = namedtuple("addr", "ip port")
    connections = [
        Conn(3, INET, STREAM, addr("0.0.0.0", 2024), (), "LISTEN"),
        Conn(4, INET6, STREAM, addr("::ffff:127.0.0.1", 11211), (), "LISTEN"),
        Conn(5, INET6, STREAM, addr("::", 80), (), "LISTEN"),
        Conn(6, INET, STREAM, addr("127.0.0.1", 6379), addr("127.0.0.1", 40000),
             "ESTABLISHED"),
        Conn(7, UNIX, STREAM, "/run/mysqld/mysqld.sock", None, "NONE"),
        Conn(8, UNIX, STREAM, "/run/path with spaces.sock", None, "NONE"),
        Conn(9, UNIX, STREAM, "", None, "NONE"),  # a client
        Conn(10, UNIX, STREAM, "@abstract", None, "NONE"),
        Conn(11, UNIX, DGRAM, "/dev/log", None, "NONE"),
    ]
    assert machine.listeners_of(connections) == [
        Listener("tcp", "0.0.0.0", 2024), Listener("tcp", "127.0.0.1", 11211),
        Listener("tcp", "::", 80), Listener("unix", "/run/mysqld/mysqld.sock"),
        Listener("unix", "/run/path with spaces.sock")]


def test_read_process_sees_its_own_listeners(tmp_path) -> None:
    with socket.socket() as tcp, socket.socket(socket.AF_UNIX) as unix:
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        unix.bind(str(tmp_path / "s.sock"))
        unix.listen()
        port = tcp.getsockname()[1]
        process, listening = machine.read_process(os.getpid())
    assert process.pid == os.getpid() and process.exe == os.path.realpath(sys.executable)
    assert Listener("tcp", "127.0.0.1", port) in listening
    assert Listener("unix", str(tmp_path / "s.sock")) in listening


def test_read_process_of_a_gone_process_is_none() -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    assert machine.read_process(child.pid) is None


def test_tls_listeners_passes_over_what_no_address_can_name() -> None:
    unnamable = Listener("tcp", "127.0.0.1", 0)
    assert machine.tls_listeners([unnamable, Listener("unix", "/run/x.sock")]) == frozenset()


def _loopback_server(answer: bytes | None) -> tuple[socket.socket, int]:
    """A listener on 127.0.0.1 that answers any first bytes with ``answer`` (None: accepts,
    reads and never answers); closed by the caller."""
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def serve() -> None:
        kept = []
        while True:
            try:
                conn, _ = server.accept()
            except OSError:  # closed: the test is over
                break
            conn.recv(1 << 16)
            if answer is not None:
                conn.sendall(answer)
            kept.append(conn)
        for conn in kept:
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


def test_a_wildcard_ipv6_listener_is_also_asked_at_ipv4_loopback() -> None:
    server, port = _loopback_server(b"\x16\x03\x03\x00\x02")  # a TLS record's head
    try:  # nothing listens at [::1]:port: only a dual-stack socket's IPv4 side answers
        dual = Listener("tcp", "::", port)
        assert machine.tls_answers([dual], timeout=5.0) == {dual: True}
    finally:
        server.close()


def test_a_listener_silent_until_the_deadline_is_neither_tls_nor_plain() -> None:
    silent_server, silent_port = _loopback_server(None)
    plain_server, plain_port = _loopback_server(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    try:
        silent = Listener("tcp", "127.0.0.1", silent_port)
        plain = Listener("tcp", "127.0.0.1", plain_port)
        assert machine.tls_answers([silent, plain], timeout=0.5) == {plain: False}
        service = machine.Service("nginx.service", listeners=(silent, plain))
        assert machine.with_tls(service, [silent, plain]).listeners == (
            Listener("tcp", "127.0.0.1", silent_port, silent=True), plain)
    finally:
        silent_server.close()
        plain_server.close()
