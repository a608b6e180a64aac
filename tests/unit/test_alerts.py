"""Alerts: [alert] config, filters, payloads, backoff, and delivery to real local receivers."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pathlib
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from sdwatch.alerting.channels import DeliveryError, deliver, event_env, payload, render_text
from sdwatch.alerting.queue import Queue, backoff
from sdwatch.alerting.settings import EmailChannel, ExecChannel, WebhookChannel, read_secret
from sdwatch.alerts import Alerter, AlertEvent, AlertSettings
from sdwatch.config import ConfigError, load
from sdwatch.evidence import failure_details

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "systemd"))
from alertrx import HttpReceiver, SmtpReceiver, wait_until  # noqa: E402

SECRET = "s3cr3t-Pa55-do-not-leak"
JOURNAL = ("2024-01-01T00:00:00+0000 host app[1]: MARKER-LINE", "line two")


def event(unit: str = "app.service", kind: str = "failed", **details: object) -> AlertEvent:
    return AlertEvent(unit, kind, f"{unit} {kind}: result exit-code", 1700000000.0, "box",
                      {"result": "exit-code", "exit_code": 3, "journal": JOURNAL, **details})


def write_config(tmp_path: pathlib.Path, text: str, name: str = "sdwatch.toml") -> str:
    path = tmp_path / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return str(path)


def secret_file(tmp_path: pathlib.Path, value: str = SECRET, mode: int = 0o600) -> str:
    path = tmp_path / f"secret-{mode:o}"
    path.write_text(value + "\n")
    path.chmod(mode)
    return str(path)


def run(coro):  # noqa: ANN001, ANN201 - a test shorthand
    return asyncio.run(coro)


# -- config ------------------------------------------------------------------------------------

def test_load_alert_table_builds_channels(tmp_path: pathlib.Path) -> None:
    cfg = load(write_config(tmp_path, """
        [alert]
        reminder = "1h"
        retry = "5s"
        [[alert.email]]
        name = "ops"
        to = ["ops@example.com"]
        from = "sdwatch@example.com"
        smtp = "mail.example.com"
        user = "sdwatch"
        password_file = "credential:smtp"
        units = ["nginx*", "mariadb.service"]
        events = ["failed", "gave_up"]
        [[alert.webhook]]
        url = "https://hooks.example.com/T0/B0/xyz"
        format = "slack"
        [[alert.exec]]
        command = ["/usr/local/bin/page", "--team", "ops"]
        timeout = "5s"
        """))
    a = cfg.alert
    assert (a.reminder, a.retry, a.retry_max) == (3600.0, 5.0, 3600.0)
    (email,) = a.email
    assert email.key == "email:ops" and email.smtp_address() == ("mail.example.com", 587)
    assert email.sender == "sdwatch@example.com" and email.starttls
    assert a.webhook[0].key == "webhook:webhook0" and a.webhook[0].format == "slack"
    assert a.exec[0].command == ("/usr/local/bin/page", "--team", "ops")
    assert [c.key for c in a.channels] == ["email:ops", "webhook:webhook0", "exec:exec0"]
    assert "xyz" not in repr(a)  # a token URL stays out of reprs and logs


def test_load_without_alert_table_has_no_channels(tmp_path: pathlib.Path) -> None:
    cfg = load(write_config(tmp_path, '[sdwatch]\ninterval = "5s"\n'))
    assert cfg.alert == AlertSettings() and cfg.alert.channels == ()


@pytest.mark.parametrize("table, expected", [
    ('[[alert.email]]\nto = ["a@b.c"]\nsmtp = "h:25"\ntls = true\n',
     "alert.email[0].tls: unknown key (allowed here: ca_file, events, from, name, password_file, "
     "sendmail, smtp, starttls, timeout, to, units, user)"),
    ('[[alert.email]]\nsmtp = "h:25"\n', "alert.email[0].to: required key is missing"),
    ('[[alert.email]]\nto = ["a@b.c"]\nsmtp = "h:25"\nsendmail = "/usr/sbin/sendmail"\n',
     "alert.email[0].smtp: give exactly one of smtp"),
    ('[[alert.email]]\nto = ["a@b.c"]\nsmtp = "h:x"\n',
     "alert.email[0].smtp: expected \"host:port\", got 'h:x'"),
    ('[[alert.email]]\nto = ["a@b.c"]\nsmtp = "h"\nuser = "u"\n',
     "alert.email[0].password_file: user and password_file go together"),
    ('[[alert.email]]\nto = ["a@b.c\\nBcc: x@y.z"]\nsmtp = "h"\n',
     "alert.email[0].to: must not contain line breaks"),
    ('[[alert.webhook]]\nurl = "ftp://x"\n',
     "alert.webhook[0].url: must be an http:// or https:// URL"),
    ('[[alert.webhook]]\nurl = "http://x"\nformat = "teams"\n',
     "alert.webhook[0].format: expected one of 'json', 'slack', got 'teams'"),
    ('[[alert.webhook]]\nurl = "http://x"\nevents = ["exploded"]\n',
     "alert.webhook[0].events: unknown event 'exploded'"),
    ('[[alert.exec]]\ncommand = ["page"]\n',
     "alert.exec[0].command: 'page': must be an absolute path"),
    ('[alert]\nretry = "1m"\nretry_max = "10s"\n',
     "alert.retry_max: must be at least retry (60s)"),
    ('[[alert.exec]]\nname = "a"\ncommand = ["/bin/true"]\n'
     '[[alert.exec]]\nname = "a"\ncommand = ["/bin/true"]\n',
     "alert.exec: two exec channels are named 'a'"),
])
def test_load_bad_alert_table_names_file_and_key(tmp_path: pathlib.Path, table: str,
                                                 expected: str) -> None:
    path = write_config(tmp_path, table)
    with pytest.raises(ConfigError) as info:
        load(path)
    (message,) = info.value.messages
    assert message.startswith(f"{path}: {expected}"), message


def test_load_error_names_the_conf_d_file_of_the_channel(tmp_path: pathlib.Path) -> None:
    main = write_config(tmp_path, '[[alert.exec]]\ncommand = ["/bin/true"]\n')
    extra = write_config(tmp_path, '[[alert.exec]]\ncommand = ["true"]\n', "conf.d/page.toml")
    with pytest.raises(ConfigError) as info:
        load(main)
    assert info.value.messages[0].startswith(f"{extra}: alert.exec[1].command:")


def test_load_unknown_top_table_lists_alert(tmp_path: pathlib.Path) -> None:
    path = write_config(tmp_path, "[alerts]\n")
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.messages == [f"{path}: alerts: unknown table (allowed: alert, sdwatch, "
                                   "unit)"]


# -- filters, payloads, pure parts --------------------------------------------------------------

def test_channel_matches_unit_globs_and_events() -> None:
    ch = ExecChannel(command=("/bin/true",), units=("nginx*", "db-?.service"),
                     events=("failed", "gave_up"))
    assert ch.matches("nginx.service", "failed")
    assert ch.matches("db-1.service", "gave_up")
    assert not ch.matches("db-10.service", "failed")
    assert not ch.matches("nginx.service", "recovered")
    assert not ch.matches("NGINX.service", "failed")  # unit names are case-sensitive


def test_payload_json_carries_every_field_and_the_journal() -> None:
    data = payload(event(), "json", "id-1")
    assert data["id"] == "id-1" and data["unit"] == "app.service" and data["event"] == "failed"
    assert data["host"] == "box" and data["timestamp"] == 1700000000.0
    assert data["details"]["journal"] == list(JOURNAL)
    assert data["details"]["exit_code"] == 3
    json.dumps(data)  # serialisable as is


def test_payload_slack_is_one_text_with_the_journal_in_a_code_block() -> None:
    data = payload(event(), "slack", "id-1")
    assert list(data) == ["text"]
    assert data["text"].startswith("*[sdwatch] box: app.service failed*\n")
    assert "```\n" + "\n".join(JOURNAL) + "\n```" in data["text"]


def test_render_text_and_exec_environment() -> None:
    text = render_text(event())
    assert "result: exit-code" in text and "exit_code: 3" in text and JOURNAL[0] in text
    env = event_env(event(restarts_systemd=2), "id-9")
    assert env["SDWATCH_UNIT"] == "app.service" and env["SDWATCH_EVENT"] == "failed"
    assert env["SDWATCH_RESULT"] == "exit-code" and env["SDWATCH_EXIT_CODE"] == "3"
    assert env["SDWATCH_RESTARTS_SYSTEMD"] == "2" and env["SDWATCH_ALERT_ID"] == "id-9"
    assert env["SDWATCH_JOURNAL"] == "\n".join(JOURNAL)
    assert env["SDWATCH_HOST"] == "box" and env["SDWATCH_TIME"].startswith("2023-11-1")


def test_backoff_doubles_from_the_first_retry_up_to_the_cap() -> None:
    assert [backoff(n, 30, 3600) for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert backoff(8, 30, 3600) == 3600 and backoff(10_000, 30, 3600) == 3600
    assert backoff(0, 30, 3600) == 30


def test_failure_details_for_exit_signal_and_core() -> None:
    why, d = failure_details("exit-code", 1, 3, 2)
    assert why == "result exit-code, exit code 3, 2 restarts by systemd"
    assert d == {"result": "exit-code", "exit_code": 3, "restarts_systemd": 2}
    why, d = failure_details("signal", 2, 9, 0)
    assert d["signal"] == "SIGKILL" and "killed by SIGKILL" in why
    why, d = failure_details("core-dump", 3, 11, 0)
    assert why.endswith("killed by SIGSEGV (core dumped), 0 restarts by systemd")


def test_event_json_round_trip_keeps_tuples() -> None:
    ev = event()
    assert AlertEvent.from_json(json.loads(json.dumps(ev.to_json()))) == ev


# -- secrets ------------------------------------------------------------------------------------

def test_read_secret_refuses_a_file_others_can_read(tmp_path: pathlib.Path) -> None:
    path = secret_file(tmp_path, mode=0o644)
    with pytest.raises(ValueError) as info:
        read_secret(path)
    assert "readable by group or others" in str(info.value) and SECRET not in str(info.value)


def test_read_secret_from_systemd_credentials(tmp_path: pathlib.Path, monkeypatch) -> None:
    (tmp_path / "smtp").write_text(SECRET + "\n")
    (tmp_path / "smtp").chmod(0o400)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert read_secret("credential:smtp") == SECRET
    with pytest.raises(ValueError, match="not a credential name"):
        read_secret("credential:../etc/shadow")
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    with pytest.raises(ValueError, match="LoadCredential=smtp:"):
        read_secret("credential:smtp")


# -- delivery to real receivers ------------------------------------------------------------------

@pytest.fixture
def http() -> HttpReceiver:
    rx = HttpReceiver()
    yield rx
    rx.stop()


def test_webhook_posts_json_with_headers_and_idempotency_key(http: HttpReceiver,
                                                             tmp_path: pathlib.Path) -> None:
    ch = WebhookChannel(url=http.url(), headers={"X-Team": "ops"},
                        header_files={"Authorization": secret_file(tmp_path)})
    run(deliver(ch, event(), "id-1"))
    (req,) = http.requests
    assert req["path"] == "/hook" and req["json"]["details"]["journal"] == list(JOURNAL)
    assert req["headers"]["X-Team"] == "ops" and req["headers"]["Authorization"] == SECRET
    assert req["headers"]["Idempotency-Key"] == "id-1"
    assert req["headers"]["Content-Type"] == "application/json"


def test_webhook_error_status_fails_without_leaking_the_token_url(
        http: HttpReceiver, tmp_path: pathlib.Path) -> None:
    http.status = 500
    url_file = secret_file(tmp_path, http.url(f"/T/{SECRET}"))
    with pytest.raises(DeliveryError) as info:
        run(deliver(WebhookChannel(url_file=url_file), event(), "id-1"))
    assert str(info.value) == "HTTP 500 Internal Server Error"
    with pytest.raises(DeliveryError) as info:
        run(deliver(WebhookChannel(url=f"http://127.0.0.1:1/{SECRET}"), event(), "id-1"))
    assert SECRET not in str(info.value) and "refused" in str(info.value)


class DripReceiver:
    """Accepts one connection, reads until ``wait_for`` (b"" for nothing), then sends
    ``answer`` one byte every 50 ms; ``sent`` counts the bytes the client took."""

    def __init__(self, answer: bytes, wait_for: bytes = b"") -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.answer, self.wait_for, self.sent = answer, wait_for, 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            data = b""
            while self.wait_for and self.wait_for not in data and (chunk := conn.recv(4096)):
                data += chunk
            try:
                for byte in self.answer:
                    conn.sendall(bytes([byte]))
                    self.sent += 1
                    time.sleep(0.05)  # the behaviour under test, not synchronisation
            except OSError:
                pass  # the client hung up

    def stop(self) -> None:
        self.listener.close()
        self.thread.join(30)


@pytest.mark.parametrize("kind", ["webhook", "email"])
def test_drip_fed_answer_ends_at_the_channel_timeout(kind: str) -> None:
    if kind == "webhook":
        rx = DripReceiver(b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"." * 300 + b"\r\n\r\n",
                          wait_for=b"\r\n\r\n")
        ch: WebhookChannel | EmailChannel = WebhookChannel(
            url=f"http://127.0.0.1:{rx.port}/hook", timeout=0.5)
    else:
        rx = DripReceiver(b"220 " + b"." * 300 + b"\r\n")
        ch = EmailChannel(to=("ops@example.test",), smtp=f"127.0.0.1:{rx.port}",
                          starttls=False, timeout=0.5)
    try:
        with pytest.raises(DeliveryError, match="no answer within 0.5s"):
            run(deliver(ch, event(), "id-1"))
        # the delivery thread (in_thread's) has ended
        assert not [t for t in threading.enumerate() if t.name == "sdwatch-probe"]
    finally:
        rx.stop()
    # cut off by the deadline, not served to the end (300 bytes take 15 s)
    assert rx.sent < len(rx.answer)


@pytest.fixture
def smtp_login() -> SmtpReceiver:
    rx = SmtpReceiver(login=("sdwatch", SECRET))
    yield rx
    rx.stop()


def test_email_over_smtp_with_auth_carries_the_journal(smtp_login: SmtpReceiver,
                                                       tmp_path: pathlib.Path) -> None:
    ch = EmailChannel(to=("ops@example.com",), sender="sdw@example.com",
                      smtp=f"127.0.0.1:{smtp_login.port}", starttls=False, user="sdwatch",
                      password_file=secret_file(tmp_path))
    run(deliver(ch, event(), "id-7"))
    (msg,) = smtp_login.messages
    assert msg["Subject"] == "[sdwatch] box: app.service failed"
    assert msg["To"] == "ops@example.com" and msg["Message-ID"] == "<sdwatch.id-7@box>"
    assert JOURNAL[0] in msg.get_content()
    assert smtp_login.envelopes == [("sdw@example.com", ["ops@example.com"])]


def test_email_wrong_password_fails_and_never_shows_it(smtp_login: SmtpReceiver,
                                                       tmp_path: pathlib.Path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    ch = EmailChannel(to=("ops@example.com",), smtp=f"127.0.0.1:{smtp_login.port}",
                      starttls=False, user="sdwatch",
                      password_file=secret_file(tmp_path, SECRET + "-wrong"))
    alerter = Alerter(AlertSettings(email=(ch,)), str(tmp_path / "state"))
    outcome = run(alerter.dispatch(event()))
    assert outcome == {"email:email0": "queued"} and smtp_login.auth_failures >= 1
    (entry,) = alerter.queue.pending()
    assert "SMTPAuthenticationError" in entry.last_error
    everything = caplog.text + entry.last_error + (tmp_path / "state").joinpath(
        "alerts", os.path.basename(entry.path)).read_text()
    assert SECRET not in everything


def test_email_refuses_to_send_without_starttls_when_required(smtp_login: SmtpReceiver) -> None:
    ch = EmailChannel(to=("ops@example.com",), smtp=f"127.0.0.1:{smtp_login.port}")
    with pytest.raises(DeliveryError, match="does not offer STARTTLS"):
        run(deliver(ch, event(), "id-1"))
    assert smtp_login.messages == []


def test_email_starttls_with_a_private_ca(tmp_path: pathlib.Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    rx = SmtpReceiver(login=("sdwatch", SECRET), tls=tls)
    try:
        ch = EmailChannel(to=("ops@example.com",), smtp=f"127.0.0.1:{rx.port}",
                          ca_file=str(cert), user="sdwatch", password_file=secret_file(tmp_path))
        run(deliver(ch, event(), "id-1"))
        assert len(rx.messages) == 1
        with pytest.raises(DeliveryError, match="CERTIFICATE_VERIFY_FAILED"):
            run(deliver(EmailChannel(to=("a@b.c",), smtp=f"127.0.0.1:{rx.port}"), event(), "x"))
        assert len(rx.messages) == 1
    finally:
        rx.stop()


def test_email_via_a_sendmail_binary(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "mail.txt"
    sendmail = tmp_path / "sendmail"
    sendmail.write_text(f"#!/bin/sh\necho \"$@\" > {out}.args\ncat > {out}\n")
    sendmail.chmod(0o755)
    ch = EmailChannel(to=("ops@example.com",), sendmail=str(sendmail), sender="s@example.com")
    run(deliver(ch, event(), "id-1"))
    assert out.with_suffix(".txt.args").read_text() == "-i -f s@example.com -- ops@example.com\n"
    assert "Subject: [sdwatch] box: app.service failed" in out.read_text()


def test_exec_channel_gets_environment_and_json_and_no_shell(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "out"
    script = tmp_path / "page"
    script.write_text(f"#!/bin/sh\nenv > {out}.env\ncat > {out}.json\necho \"$1\" > {out}.arg\n")
    script.chmod(0o755)
    ch = ExecChannel(command=(str(script), "$(touch pwned); `id`"))
    run(deliver(ch, event(), "id-3"))
    env = dict(line.split("=", 1) for line in out.with_suffix(".env").read_text().splitlines()
               if "=" in line)
    assert env["SDWATCH_UNIT"] == "app.service" and env["SDWATCH_EVENT"] == "failed"
    assert env["SDWATCH_MESSAGE"] == "app.service failed: result exit-code"
    assert json.loads(out.with_suffix(".json").read_text())["id"] == "id-3"
    assert out.with_suffix(".arg").read_text() == "$(touch pwned); `id`\n"
    assert not (tmp_path / "pwned").exists()


def test_exec_channel_timeout_kills_the_whole_group(tmp_path: pathlib.Path) -> None:
    pidfile = tmp_path / "child.pid"
    script = tmp_path / "slow"
    script.write_text(f"#!/bin/sh\nsleep 60 &\necho $! > {pidfile}\nwait\n")
    script.chmod(0o755)
    start = time.monotonic()
    with pytest.raises(DeliveryError, match="still running after 0.5s, killed"):
        run(deliver(ExecChannel(command=(str(script),), timeout=0.5), event(), "id-1"))
    assert time.monotonic() - start < 5
    child = int(pidfile.read_text())
    wait_until(lambda: not os.path.exists(f"/proc/{child}") or
               "Z" in open(f"/proc/{child}/stat").read().split()[2], 5, "child killed")


def test_exec_channel_failure_status_is_a_delivery_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(DeliveryError, match="exited with status 3: nope"):
        run(deliver(ExecChannel(command=("/bin/sh", "-c", "echo nope >&2; exit 3")), event(),
                    "id"))


# -- the queue and the Alerter -------------------------------------------------------------------

def hook_settings(rx: HttpReceiver, **kw: object) -> AlertSettings:
    return AlertSettings(webhook=(WebhookChannel(url=rx.url(), timeout=5),), **kw)


def test_undelivered_alert_survives_a_restart_and_is_sent_exactly_once(
        http: HttpReceiver, tmp_path: pathlib.Path) -> None:
    state = str(tmp_path / "state")
    http.status = 503
    assert run(Alerter(hook_settings(http), state).dispatch(event())) == {
        "webhook:webhook0": "queued"}
    (entry,) = Queue(os.path.join(state, "alerts")).pending()
    assert entry.attempts == 1 and entry.last_error == "HTTP 503 Service Unavailable"
    http.status = 200

    async def restarted() -> Alerter:
        alerter = Alerter(hook_settings(http, retry=0.05, retry_max=0.1), state)
        task = asyncio.create_task(alerter.run())
        while alerter.queue.pending():
            await asyncio.sleep(0.02)
        await alerter._drain(alerter.settings.webhook[0], [entry], due_only=False)
        alerter.close()
        await asyncio.wait_for(task, 5)
        return alerter

    run(asyncio.wait_for(restarted(), 10))
    (req,) = http.requests
    assert req["headers"]["Idempotency-Key"] == entry.id
    assert req["json"]["message"] == event().message
    assert os.listdir(os.path.join(state, "alerts")) == []


def test_a_claim_is_exclusive_and_a_delivered_entry_cannot_be_claimed_again(
        tmp_path: pathlib.Path) -> None:
    q = Queue(str(tmp_path / "alerts"))
    entry = q.add("webhook:x", event().to_json())
    first = q.claim(entry)
    assert first is not None and not first.maybe_sent
    assert q.claim(entry) is None  # held
    first.done()
    assert q.claim(entry) is None and q.pending() == []
    assert os.listdir(q.directory) == []


def test_an_interrupted_send_is_resent_marked_as_a_possible_repeat(
        http: HttpReceiver, tmp_path: pathlib.Path) -> None:
    alerter = Alerter(hook_settings(http), str(tmp_path / "state"))
    entry = alerter.queue.add("webhook:webhook0", event().to_json())
    alerter.queue.claim(entry).abandon()  # as if sdwatch died while sending
    run(alerter._drain(alerter.settings.webhook[0], alerter.queue.pending(), due_only=True))
    (req,) = http.requests
    assert req["json"]["message"].startswith("(possibly a repeat: sdwatch stopped while ")
    assert req["headers"]["Idempotency-Key"] == entry.id and alerter.queue.pending() == []


def test_a_new_alert_goes_out_after_the_older_ones_of_its_channel(
        http: HttpReceiver, tmp_path: pathlib.Path) -> None:
    alerter = Alerter(hook_settings(http), str(tmp_path / "state"))
    http.status = 500
    for kind in ("failing", "restarted"):
        assert run(alerter.dispatch(event(kind=kind))) == {"webhook:webhook0": "queued"}
    http.status = 200
    assert run(alerter.dispatch(event(kind="recovered"))) == {"webhook:webhook0": "sent"}
    assert [r["json"]["event"] for r in http.requests] == ["failing", "restarted", "recovered"]


def test_channels_filter_by_unit_and_event(http: HttpReceiver, tmp_path: pathlib.Path) -> None:
    settings = AlertSettings(webhook=(
        WebhookChannel(name="db", url=http.url("/db"), units=("mariadb.service",)),
        WebhookChannel(name="fail", url=http.url("/fail"), events=("failed",))))
    alerter = Alerter(settings, str(tmp_path / "state"))
    assert run(alerter.dispatch(event("mariadb.service", "recovered"))) == {
        "webhook:db": "sent"}
    assert run(alerter.dispatch(event("nginx.service", "failed"))) == {"webhook:fail": "sent"}
    assert run(alerter.dispatch(event("nginx.service", "failing"))) == {}
    assert [r["path"] for r in http.requests] == ["/db", "/fail"]


def test_reminders_repeat_at_the_interval_until_recovered(http: HttpReceiver,
                                                         tmp_path: pathlib.Path) -> None:
    alerter = Alerter(hook_settings(http, reminder=600), str(tmp_path / "state"))
    t0 = time.time()
    failing = AlertEvent("app.service", "failing", "probe http: HTTP 502", t0, "box")

    async def scenario() -> None:
        await alerter.send(failing)
        await alerter._remind(t0 + 599)
        assert len(http.requests) == 1
        await alerter._remind(t0 + 600)
        await alerter._remind(t0 + 601)
        assert len(http.requests) == 2
        await alerter._remind(t0 + 1200)
        await alerter.send(AlertEvent("app.service", "recovered", "healthy again", t0 + 1300))
        await alerter._remind(t0 + 9999)

    run(scenario())
    assert [r["json"]["event"] for r in http.requests] == ["failing", "failing", "failing",
                                                          "recovered"]
    second = http.requests[1]["json"]
    assert second["message"].startswith("still failing since ")
    assert second["message"].endswith(": probe http: HTTP 502")
    assert second["details"]["reminder"] == 1 and http.requests[2]["json"]["details"][
        "reminder"] == 2


def test_send_never_raises_and_says_lost_when_it_can_neither_queue_nor_deliver(
        http: HttpReceiver, tmp_path: pathlib.Path, caplog) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    alerter = Alerter(hook_settings(http), str(not_a_dir))
    assert run(alerter.dispatch(event())) == {"webhook:webhook0": "sent"}
    http.status = 500
    assert run(alerter.dispatch(event())) == {"webhook:webhook0": "lost"}
    run(alerter.send(event()))  # the daemon's entry point: logs, never raises
    assert "LOST: HTTP 500" in caplog.text
