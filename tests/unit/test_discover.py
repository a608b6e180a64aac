"""sdwatch init's recognition and rendering, on facts recorded from real hosts."""

from __future__ import annotations

import tomllib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sdwatch import discover
from sdwatch.discover import Login
from sdwatch.machine import Listener, Process, Service

MiB = 1024 * 1024

# Recorded on Debian 12 hosts (cmdlines as the programs rewrite them).
MARIADB = Service("mariadb.service", "MariaDB 10.11.6 database server", (
    Process(812, "/usr/sbin/mariadbd", ("/usr/sbin/mariadbd",), "mariadbd"),),
    (Listener("tcp", "127.0.0.1", 3306), Listener("unix", "/run/mysqld/mysqld.sock")),
    412 * MiB)
POSTGRES = Service("postgresql@15-main.service", "PostgreSQL Cluster 15-main", (
    Process(901, "/usr/lib/postgresql/15/bin/postgres",
            ("/usr/lib/postgresql/15/bin/postgres", "-D", "/var/lib/postgresql/15/main"),
            "postgres"),
    Process(903, "/usr/lib/postgresql/15/bin/postgres", ("postgres: 15/main: checkpointer",),
            "postgres")),
    (Listener("tcp", "127.0.0.1", 5432), Listener("tcp", "::1", 5432),
     Listener("unix", "/var/run/postgresql/.s.PGSQL.5432")), 30 * MiB)
REDIS = Service("redis-server.service", "Advanced key-value store", (
    Process(700, "/usr/bin/redis-check-rdb", ("/usr/bin/redis-server 127.0.0.1:6379",),
            "redis-server"),),
    (Listener("tcp", "127.0.0.1", 6379), Listener("tcp", "::1", 6379)), 9 * MiB)
MEMCACHED = Service("memcached.service", "memcached daemon", (
    Process(650, "/usr/bin/memcached", ("/usr/bin/memcached", "-m", "64", "-p", "11211", "-u",
                                        "memcache", "-l", "127.0.0.1", "-P",
                                        "/var/run/memcached/memcached.pid"), "memcached"),),
    (Listener("tcp", "127.0.0.1", 11211),), 3 * MiB)
NGINX = Service("nginx.service", "A high performance web server", (
    Process(1001, "/usr/sbin/nginx", ("nginx: master process /usr/sbin/nginx -g daemon on; "
                                      "master_process on;",), "nginx"),
    Process(1002, "/usr/sbin/nginx", ("nginx: worker process",), "nginx")),
    (Listener("tcp", "0.0.0.0", 80), Listener("tcp", "::", 80),
     Listener("tcp", "0.0.0.0", 443, tls=True)), 6 * MiB)
PUMA = Service("puma.service", "Puma HTTP Server", (
    Process(1200, "/usr/bin/ruby3.1", ("puma 6.4.0 (unix:///run/puma/puma.sock) [app]",),
            "ruby"),),
    (Listener("unix", "/run/puma/puma.sock"),), 180 * MiB)
GUNICORN = Service("gunicorn.service", "gunicorn daemon", (
    Process(1300, "/usr/bin/python3.11", ("/srv/venv/bin/python3", "/srv/venv/bin/gunicorn",
                                          "--bind", "unix:/run/gunicorn.sock", "app.wsgi"),
            "gunicorn"),),
    (Listener("unix", "/run/gunicorn.sock"),), 90 * MiB)
UWSGI = Service("uwsgi.service", "uWSGI", (
    Process(1400, "/usr/bin/uwsgi-core", ("/usr/bin/uwsgi", "--socket", "/run/uwsgi/app.sock"),
            "uwsgi"),), (Listener("unix", "/run/uwsgi/app.sock"),), 50 * MiB)
MANTICORE = Service("manticore.service", "Manticore Search", (
    Process(1500, "/usr/bin/searchd", ("/usr/bin/searchd", "--config",
                                       "/etc/manticoresearch/manticore.conf"), "searchd"),),
    (Listener("tcp", "127.0.0.1", 9312), Listener("tcp", "127.0.0.1", 9306),
     Listener("tcp", "127.0.0.1", 9308)), 40 * MiB)
SSHD = Service("ssh.service", "OpenBSD Secure Shell server", (
    Process(500, "/usr/sbin/sshd", ("sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups",),
            "sshd"),), (Listener("tcp", "0.0.0.0", 22),), 5 * MiB)
CRON = Service("cron.service", "Regular background program processing daemon", (
    Process(480, "/usr/sbin/cron", ("/usr/sbin/cron", "-f"), "cron"),), (), 1 * MiB)

STACK = (MARIADB, POSTGRES, REDIS, MEMCACHED, NGINX, PUMA, GUNICORN, UWSGI, MANTICORE, SSHD, CRON)


def probes(service: Service, logins=None) -> list[dict]:
    proposal = discover.recognise(service, logins)
    assert proposal is not None
    return [dict(p) for p in proposal.probes]


def test_recognise_databases_by_their_sockets() -> None:
    assert probes(MARIADB) == [{"kind": "mysql", "socket": "/run/mysqld/mysqld.sock"}]
    assert probes(POSTGRES) == [{"kind": "postgresql", "socket": "/var/run/postgresql"}]
    assert probes(REDIS) == [{"kind": "redis", "address": "127.0.0.1:6379"}]
    assert probes(MEMCACHED) == [{"kind": "memcached", "address": "127.0.0.1:11211"}]
    assert probes(MANTICORE) == [{"kind": "mysql", "address": "127.0.0.1:9306"}]


def test_recognise_web_and_app_servers() -> None:
    assert probes(NGINX) == [{"kind": "http", "url": "http://127.0.0.1:80/"},
                             {"kind": "tls", "address": "127.0.0.1:443", "verify": False}]
    assert probes(PUMA) == [{"kind": "http", "url": "http+unix://%2Frun%2Fpuma%2Fpuma.sock/"}]
    assert probes(GUNICORN) == [{"kind": "http", "url": "http+unix://%2Frun%2Fgunicorn.sock/"}]
    # the uwsgi protocol is not HTTP: only a connect
    assert probes(UWSGI) == [{"kind": "tcp", "address": "unix:/run/uwsgi/app.sock"}]


def test_tls_is_told_by_what_a_port_answered_not_its_number() -> None:
    odd = Service("nginx.service", processes=NGINX.processes, listeners=(
        Listener("tcp", "127.0.0.1", 443), Listener("tcp", "127.0.0.1", 8444, tls=True)))
    assert probes(odd) == [{"kind": "http", "url": "http://127.0.0.1:443/"},
                           {"kind": "tls", "address": "127.0.0.1:8444", "verify": False}]
    only_tls = Service("nginx.service", processes=NGINX.processes,
                       listeners=(Listener("tcp", "::", 8443, tls=True),))
    assert probes(only_tls) == [{"kind": "tls", "address": "[::1]:8443", "verify": False}]


def test_a_listener_that_answered_nothing_is_not_proposed_as_plain_http() -> None:
    silent = Service("nginx.service", processes=NGINX.processes, listeners=(
        Listener("tcp", "127.0.0.1", 443, silent=True), Listener("unix", "/run/nginx.sock")))
    assert probes(silent) == [{"kind": "http", "url": "http+unix://%2Frun%2Fnginx.sock/"}]


def test_only_web_servers_tcp_listeners_are_asked_about_tls() -> None:
    assert discover.tls_questions(NGINX) == tuple(
        ln for ln in NGINX.listeners if ln.kind == "tcp")
    assert all(discover.tls_questions(s) == () for s in STACK if s is not NGINX)


def test_unrecognised_services_get_no_proposal() -> None:
    assert discover.recognise(SSHD) is None and discover.recognise(CRON) is None


def test_postgresql_on_another_port_names_it() -> None:
    other = Service("pg.service", processes=POSTGRES.processes,
                    listeners=(Listener("unix", "/run/postgresql/.s.PGSQL.5433"),))
    assert probes(other) == [{"kind": "postgresql", "socket": "/run/postgresql", "port": 5433}]


@pytest.mark.parametrize("service, listeners, probe", [
    (MARIADB, (Listener("tcp", "0.0.0.0", 3306),), {"kind": "mysql", "address": "127.0.0.1:3306"}),
    (REDIS, (Listener("unix", "/run/redis/redis.sock"), Listener("tcp", "127.0.0.1", 6379)),
     {"kind": "redis", "socket": "/run/redis/redis.sock"}),
    (MEMCACHED, (Listener("unix", "/run/memcached.sock"), Listener("tcp", "127.0.0.1", 11211)),
     {"kind": "memcached", "address": "127.0.0.1:11211"}),
    (MEMCACHED, (Listener("unix", "/run/memcached.sock"),),
     {"kind": "memcached", "socket": "/run/memcached.sock"}),
])
def test_servers_prefer_their_usual_socket(service, listeners, probe) -> None:
    # the databases' unix socket before TCP; memcached's TCP port before a socket
    assert probes(Service(service.unit, processes=service.processes, listeners=listeners)) == [
        probe]


def test_logins_only_when_given() -> None:
    logins = {"mysql": Login("sdwatch", "/etc/sdwatch/mysql.pass"),
              "redis": Login("", "/etc/sdwatch/redis.pass")}
    assert probes(MARIADB, logins) == [{"kind": "mysql", "socket": "/run/mysqld/mysqld.sock",
                                        "user": "sdwatch",
                                        "password_file": "/etc/sdwatch/mysql.pass"}]
    assert probes(REDIS, logins) == [{"kind": "redis", "address": "127.0.0.1:6379",
                                      "password_file": "/etc/sdwatch/redis.pass"}]
    assert "password_file" not in probes(POSTGRES, logins)[0]
    text = discover.plan(STACK).text
    config = [line for line in text.splitlines() if not line.startswith("#")]
    assert not any("password_file" in line for line in config)  # only comments explain how


def test_wildcard_and_v6_listeners_become_loopback() -> None:
    assert Listener("tcp", "0.0.0.0", 80).local == "127.0.0.1:80"
    assert Listener("tcp", "::", 80).local == "[::1]:80"
    assert Listener("tcp", "10.0.0.5", 6379).local == "10.0.0.5:6379"
    v6only = Service("redis-server.service", processes=REDIS.processes,
                     listeners=(Listener("tcp", "::", 6379),))
    assert probes(v6only) == [{"kind": "redis", "address": "[::1]:6379"}]


def test_recognised_without_socket_says_so() -> None:
    quiet = Service("redis-server.service", processes=REDIS.processes)
    proposal = discover.recognise(quiet)
    assert proposal is not None and proposal.probes == ()
    assert "no listening socket" in proposal.notes[0]


@pytest.mark.parametrize("current, proposed", [
    (9 * MiB, "192M"), (412 * MiB, "832M"), (1, "192M"), (2048 * MiB, "4096M"),
    (None, None), (0, None)])
def test_memory_proposal_has_headroom(current, proposed) -> None:
    assert discover.memory_proposal(current) == proposed


@given(st.integers(1, 2**44))
def test_memory_proposal_is_above_twice_the_use(current: int) -> None:
    proposed = discover.memory_proposal(current)
    assert proposed is not None and int(proposed[:-1]) * MiB >= 2 * current


def test_plan_renders_valid_toml_with_comments() -> None:
    plan = discover.plan(STACK, skipped={"sdwatch.service": "sdwatch itself"})
    data = tomllib.loads(plan.text)
    assert set(data["unit"]) == {s.unit for s in STACK[:9]}
    assert plan.units == 9 and plan.probes == 10
    assert data["unit"]["redis-server.service"]["memory"] == {"above": "192M", "for": 3,
                                                               "then": "alert"}
    assert "#   ssh.service: 1 process; /usr/sbin/sshd; listening on tcp 0.0.0.0:22" in plan.text
    assert "#   cron.service: 1 process; /usr/sbin/cron" in plan.text
    assert "#   sdwatch.service: sdwatch itself" in plan.text
    assert "# TODO: / may redirect" in plan.text
    assert "# memory: 9M now; the limit is twice that, at least 128M more;" in plan.text
    assert discover.check_text(plan.text) == []


def test_plan_with_nothing_running_is_valid_and_configures_nothing() -> None:
    plan = discover.plan([])
    assert plan.units == 0 and discover.check_text(plan.text) == []
    assert all(line.startswith("#") for line in plan.text.splitlines())


NASTY = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30)


@given(NASTY, NASTY)
def test_odd_unit_names_and_paths_still_render_valid_toml(unit: str, path: str) -> None:
    service = Service(unit + ".service", processes=REDIS.processes,
                      listeners=(Listener("unix", "/run/" + path + ".sock"),))
    other = Service(unit + "x.service", processes=(Process(1, "/usr/bin/" + path),))
    text = discover.plan([service, other]).text
    data = tomllib.loads(text)
    assert data["unit"][unit + ".service"]["probe"][0]["socket"] == "/run/" + path + ".sock"


def test_check_text_reports_problems() -> None:
    assert discover.check_text('[unit."x.service"]\nprobe = [{ kind = "nope" }]\n')[0].startswith(
        "<proposed>: unit.\"x.service\".probe[0].kind: unknown probe kind 'nope'")


def test_write_new_refuses_to_overwrite(tmp_path) -> None:
    path = tmp_path / "local.toml"
    discover.write_new(str(path), "# one\n")
    with pytest.raises(FileExistsError):
        discover.write_new(str(path), "# two\n")
    assert path.read_text() == "# one\n" and path.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("text, kind, login", [
    ("mysql=sdwatch:/etc/sdwatch/mysql.pass", "mysql", Login("sdwatch", "/etc/sdwatch/mysql.pass")),
    ("redis=:/etc/sdwatch/redis.pass", "redis", Login("", "/etc/sdwatch/redis.pass")),
])
def test_parse_login(text: str, kind: str, login: Login) -> None:
    assert discover.parse_login(text) == (kind, login)


@pytest.mark.parametrize("text", ["mysql=/etc/x", "http=u:/etc/x", "mysql=u:rel", "mysql=:/x"])
def test_parse_login_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="KIND=USER:/path"):
        discover.parse_login(text)
