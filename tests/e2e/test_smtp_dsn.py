"""DSN (RFC 3461 parameters, RFC 3464 reports) end to end: submission -> queue -> aiosmtpd.

aiosmtpd does not advertise DSN, so NOTIFY=SUCCESS for a remote recipient earns a "relayed"
report from us (RFC 3461 §5.2.2)."""

from __future__ import annotations

import smtplib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.outbound.worker_support import free_port, start_remote
from tests.support.dns_server import DNSTestServer
from tests.support.server import RunningServer
from tests.support.smtp import RawSmtp, messages

PASSWORD = "password-1"


class Env:
    def __init__(self, srv: RunningServer, remote: Any) -> None:
        self.srv = srv
        self.remote = remote


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    dns = DNSTestServer().start()
    port = free_port("127.0.0.1")
    dns.add("remote.test", "MX", (10, "mx.remote.test"))
    dns.add("mx.remote.test", "A", "127.0.0.1")
    controller, handler = start_remote("127.0.0.1", port)
    handler.rules["gone"] = "550 5.1.1 <gone@remote.test>: no such user"
    data = tmp_path_factory.mktemp("dsn") / "data"
    try:
        with RunningServer(data, outbound={"enabled": True, "dns": dns.nameserver, "smtp_port": port,
                                           "retry_interval": 1, "mta_sts": False}) as srv:
            for name in ("alice", "carol", "dave", "erin", "fred"):
                srv.add_account(f"{name}@local.test", PASSWORD)
            yield Env(srv, handler)
    finally:
        controller.stop()
        dns.stop()


def wait_for(check: Callable[[], Any], timeout: float = 6.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def message(subject: str, to: str = "bob@remote.test") -> bytes:
    return (f"From: {{sender}}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{subject}@local.test>\r\n"
            "Date: Mon, 02 Mar 2026 10:00:00 +0100\r\n\r\nBODY-MARKER of " + subject + "\r\n").encode()


def submit(env: Env, sender: str, rcpts: list[tuple[str, list[str]]], subject: str,
           mail_options: list[str] = ()) -> None:  # type: ignore[assignment]
    with smtplib.SMTP("127.0.0.1", env.srv.port("submission"), timeout=10) as c:
        c.starttls(context=env.srv.client_tls())
        c.login(sender, PASSWORD)
        c.ehlo()
        assert c.has_extn("dsn")
        code, _ = c.mail(sender, list(mail_options))
        assert code == 250
        for rcpt, opts in rcpts:
            assert c.rcpt(rcpt, opts)[0] == 250
        data = message(subject).replace(b"{sender}", sender.encode())
        assert c.data(data)[0] == 250


def queue_empty(env: Env) -> bool:
    return env.srv.call(env.srv.store.queue_entries()) == []


def test_ehlo_lists_dsn_on_every_port(env: Env) -> None:
    srv = env.srv
    with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=10) as c:
        c.ehlo("client.example")
        assert c.has_extn("dsn")
    with smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=10) as c:
        c.ehlo("client.example")
        assert c.has_extn("dsn")
    with smtplib.SMTP_SSL("127.0.0.1", srv.port("submissions"), timeout=10, context=srv.client_tls()) as c:
        c.ehlo("client.example")
        assert c.has_extn("dsn")


def test_bad_dsn_parameters_get_501(env: Env) -> None:
    with RawSmtp(env.srv.port("smtp")) as c:
        c.cmd("EHLO client.example")
        assert c.cmd("MAIL FROM:<x@outside.example> ENVID=a+zz") == (501, "5.5.4 Syntax error in parameters or arguments")
        assert c.cmd("MAIL FROM:<x@outside.example> ENVID=a+0Db")[0] == 501  # CR is not printable
        assert c.cmd("MAIL FROM:<x@outside.example> ENVID=" + "e" * 101)[0] == 501
        assert c.cmd("MAIL FROM:<x@outside.example> RET=SOME")[0] == 501
        assert c.cmd("MAIL FROM:<x@outside.example> RET=FULL ENVID=" + "e" * 100)[0] == 250
        assert c.cmd("RCPT TO:<carol@local.test> ORCPT=rfc822;a+zz@x.example")[0] == 501
        assert c.cmd("RCPT TO:<carol@local.test> ORCPT=rfc822;" + "a" * 495 + "@x.example")[0] == 501
        assert c.cmd("RCPT TO:<carol@local.test> NOTIFY=NEVER,SUCCESS")[0] == 501
        assert c.cmd("RCPT TO:<carol@local.test> NOTIFY=FAILURE ORCPT=rfc822;carol+2Bx@local.test")[0] == 250


def test_notify_success_remote_gives_relayed_report(env: Env) -> None:
    submit(env, "alice@local.test", [("bob@remote.test", ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;Bob+2Bold@remote.test"])],
           "relay1", ["ENVID=QQ314159", "RET=HDRS"])
    wait_for(lambda: queue_empty(env))
    [report] = wait_for(lambda: messages(env.srv, "alice@local.test"))
    assert b"report-type=delivery-status" in report
    assert b"Action: relayed" in report and b"Status: 2." in report
    assert b"Original-Envelope-Id: QQ314159" in report
    assert b"Original-Recipient: rfc822; Bob+old@remote.test" in report
    assert b"Final-Recipient: rfc822; bob@remote.test" in report
    assert b"Message-ID: <relay1@local.test>" in report and b"BODY-MARKER" not in report
    assert any(rcpts == ["bob@remote.test"] and b"relay1" in body for _, rcpts, body in env.remote.messages)


def test_notify_never_suppresses_the_bounce(env: Env) -> None:
    submit(env, "carol@local.test", [("gone@remote.test", ["NOTIFY=NEVER"])], "never1")
    wait_for(lambda: queue_empty(env))
    time.sleep(0.3)
    assert messages(env.srv, "carol@local.test") == []


def test_ret_hdrs_and_full_bounce_content(env: Env) -> None:
    submit(env, "dave@local.test", [("gone@remote.test", [])], "hdrs1", ["RET=HDRS", "ENVID=env-hdrs"])
    [hdrs] = wait_for(lambda: messages(env.srv, "dave@local.test"))
    assert b"Action: failed" in hdrs and b"Original-Envelope-Id: env-hdrs" in hdrs
    assert b"Content-Type: text/rfc822-headers" in hdrs
    assert b"Message-ID: <hdrs1@local.test>" in hdrs and b"BODY-MARKER" not in hdrs

    submit(env, "dave@local.test", [("gone@remote.test", ["NOTIFY=FAILURE"])], "full1", ["RET=FULL"])
    reports = wait_for(lambda: (m := messages(env.srv, "dave@local.test")) and len(m) == 2 and m)
    full = reports[1]
    assert b"Action: failed" in full and b"Content-Type: message/rfc822" in full
    assert b"BODY-MARKER of full1" in full


def test_notify_success_local_gives_delivered_report(env: Env) -> None:
    submit(env, "erin@local.test", [("fred@local.test", ["NOTIFY=SUCCESS", "ORCPT=rfc822;fred@local.test"]),
                                    ("carol@local.test", [])], "local1", ["ENVID=local-env"])
    [report] = wait_for(lambda: messages(env.srv, "erin@local.test"))
    assert b"Action: delivered" in report and b"Status: 2.0.0" in report
    assert b"Final-Recipient: rfc822; fred@local.test" in report
    assert b"Original-Recipient: rfc822; fred@local.test" in report
    assert b"Original-Envelope-Id: local-env" in report
    assert b"carol@local.test" not in report.split(b"message/delivery-status", 1)[1].split(b"--=_", 1)[0]
    assert any(b"local1" in m for m in messages(env.srv, "fred@local.test"))
