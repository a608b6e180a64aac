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
